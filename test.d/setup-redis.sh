# Sourced by test.sh: installs redis-server when missing and starts a
# private one (its own port and data directory, never the system service)
# for the tests, which find it through REDIS_URL. Tests that stop and
# restart Redis start their own server from the same binary.
apt_install redis-server

# redis_ours PORT: the server on PORT is the one started here (another
# developer's or the system's Redis may hold a port we tried).
redis_ours() { redis-cli -p "$1" config get dir 2>/dev/null | grep -qxF "$redis_dir"; }

redis_dir=$(mktemp -d /tmp/token-auth-redis.XXXXXX)
redis_port=""
for _ in $(seq 1 20); do
	port=$((20000 + RANDOM % 20000))
	if redis-server --bind 127.0.0.1 --port "$port" --dir "$redis_dir" --save '' --appendonly no \
		--daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" \
		&& for _ in $(seq 1 50); do
			redis_ours "$port" && break
			sleep 0.1
		done && redis_ours "$port"; then
		redis_port=$port
		break
	fi
	# the port was taken: our server did not start; try another
done
if [ -z "$redis_port" ]; then
	echo "could not start redis-server; log:" >&2
	cat "$redis_dir/redis.log" >&2 || true
	exit 1
fi
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
echo "redis-server on $REDIS_URL (data in $redis_dir)"
cleanups+=("redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1; rm -rf $redis_dir")
