#!/usr/bin/env bash
# Starts and stops the private Redis high-availability topologies the tests
# use, on random free loopback ports with their own data directory (never
# the system's Redis). One implementation for both users: test.d/setup-redis-ha.sh
# (the shared topologies of a test run) and the Go tests that fail a master
# over (redis_ha_helpers_test.go), which start topologies of their own.
#
#   redis-ha.sh sentinel DIR   master + replica + 3 sentinels; prints
#                              REDIS_SENTINEL_MASTER=<name>
#                              REDIS_SENTINEL_ADDRS=<host:port,...>  (the sentinels)
#                              REDIS_SENTINEL_DATA=<host:port,...>   (master, replica)
#   redis-ha.sh cluster DIR    3 masters with one replica each; prints
#                              REDIS_CLUSTER_ADDRS=<host:port,...>
#   redis-ha.sh stop DIR       stops every server started under DIR
#
# Needs redis-server and redis-cli (Debian's redis-server package; a
# sentinel is `redis-server <conf> --sentinel`, so redis-sentinel is not
# needed). Everything but the KEY=value lines goes to stderr.
set -euo pipefail

cmd=${1:?usage: redis-ha.sh sentinel|cluster|stop DIR}
dir=${2:?usage: redis-ha.sh sentinel|cluster|stop DIR}
mkdir -p "$dir"

# ours PORT NODEDIR: the server on PORT is the one started in NODEDIR (a
# port we tried may belong to someone else's Redis).
ours() { redis-cli -p "$1" config get dir 2>/dev/null | grep -qxF "$2"; }

# start_server NAME ARGS...: starts a redis-server daemon on a random free
# port with its own directory under $dir, trying other ports when the one
# picked is taken (its cluster bus port too: port + 10000). Prints the port.
start_server() {
	local name=$1 port node
	shift
	node="$dir/$name"
	mkdir -p "$node"
	for _ in $(seq 1 20); do
		port=$((20000 + RANDOM % 30000))
		rm -f "$node/redis.pid"
		# a replica syncs at once (the diskless sync's default wait is 5 s)
		if redis-server "$@" --bind 127.0.0.1 --port "$port" --dir "$node" --save '' --appendonly no \
			--repl-diskless-sync-delay 0 --daemonize yes --pidfile "$node/redis.pid" --logfile "$node/redis.log" >&2; then
			for _ in $(seq 1 50); do
				ours "$port" "$node" && break
				sleep 0.1
			done
			if ours "$port" "$node"; then
				echo "$port"
				return 0
			fi
		fi
		stop_pidfile "$node/redis.pid"
	done
	echo "could not start redis-server $name; log:" >&2
	cat "$node/redis.log" >&2 || true
	return 1
}

# start_sentinel NAME MASTER MASTERPORT: a sentinel watching MASTER.
start_sentinel() {
	local name=$1 master=$2 mport=$3 port node
	node="$dir/$name"
	mkdir -p "$node"
	for _ in $(seq 1 20); do
		port=$((20000 + RANDOM % 30000))
		rm -f "$node/redis.pid"
		# a sentinel rewrites its config file: each gets its own
		cat >"$node/sentinel.conf" <<-EOF
			bind 127.0.0.1
			port $port
			dir $node
			daemonize yes
			pidfile $node/redis.pid
			logfile $node/redis.log
			sentinel resolve-hostnames no
			sentinel monitor $master 127.0.0.1 $mport 2
			sentinel down-after-milliseconds $master 1000
			sentinel failover-timeout $master 4000
			sentinel parallel-syncs $master 1
		EOF
		if redis-server "$node/sentinel.conf" --sentinel >&2; then
			for _ in $(seq 1 50); do
				redis-cli -p "$port" sentinel master "$master" >/dev/null 2>&1 && break
				sleep 0.1
			done
			if redis-cli -p "$port" sentinel master "$master" 2>/dev/null | grep -qx "$master"; then
				echo "$port"
				return 0
			fi
		fi
		stop_pidfile "$node/redis.pid"
	done
	echo "could not start sentinel $name; log:" >&2
	cat "$node/redis.log" >&2 || true
	return 1
}

# stop_pidfile PIDFILE: kills the server at once (SIGKILL: its data is
# thrown away, and a master asked to stop politely waits up to 10 s for its
# replicas).
stop_pidfile() {
	local pid
	[ -f "$1" ] || return 0
	pid=$(cat "$1" 2>/dev/null) || true
	[ -n "$pid" ] || return 0
	kill -9 "$pid" 2>/dev/null || true
	# until it is gone or a zombie (whoever reaps it may take its time),
	# so that its directory can be removed
	for _ in $(seq 1 50); do
		case $(ps -o stat= -p "$pid" 2>/dev/null) in "" | Z*) break ;; esac
		sleep 0.1
	done
	rm -f "$1"
}

# wait_for WHAT CMD...: polls CMD until it succeeds, for up to 20 s.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 1 200); do
		"$@" && return 0
		sleep 0.1
	done
	echo "redis-ha.sh: $what: not within 20 s" >&2
	return 1
}

sentinel_topology() {
	local master replica s1 s2 s3 name
	name="tokenauth-$RANDOM"
	master=$(start_server master)
	replica=$(start_server replica --replicaof 127.0.0.1 "$master")
	wait_for "replica in sync" sh -c "redis-cli -p $replica info replication | grep -q 'master_link_status:up'"
	s1=$(start_sentinel sentinel1 "$name" "$master")
	s2=$(start_sentinel sentinel2 "$name" "$master")
	s3=$(start_sentinel sentinel3 "$name" "$master")
	# ready once every sentinel knows the replica and the other sentinels,
	# so that a failover can be agreed on at once
	for s in $s1 $s2 $s3; do
		wait_for "sentinel $s sees its peers" sh -c \
			"redis-cli -p $s sentinel master $name | grep -A1 -x num-other-sentinels | tail -1 | grep -qx 2 &&
			 redis-cli -p $s sentinel master $name | grep -A1 -x num-slaves | tail -1 | grep -qx 1"
	done
	echo "REDIS_SENTINEL_MASTER=$name"
	echo "REDIS_SENTINEL_ADDRS=127.0.0.1:$s1,127.0.0.1:$s2,127.0.0.1:$s3"
	echo "REDIS_SENTINEL_DATA=127.0.0.1:$master,127.0.0.1:$replica"
}

cluster_ok() {
	local p
	for p in "$@"; do
		redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
	done
}

# replicas_synced PORT...: the three replicas among the nodes are in sync.
replicas_synced() {
	local p n=0
	for p in "$@"; do
		redis-cli -p "$p" info replication 2>/dev/null | grep -q 'master_link_status:up' && n=$((n + 1))
	done
	[ "$n" -eq 3 ]
}

cluster_topology() {
	local ports=() addrs=() p i
	for i in 1 2 3 4 5 6; do
		p=$(start_server "node$i" --cluster-enabled yes --cluster-config-file nodes.conf \
			--cluster-node-timeout 1000 --cluster-replica-validity-factor 0)
		ports+=("$p")
		addrs+=("127.0.0.1:$p")
	done
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
		cat "$dir/create.log" >&2
		return 1
	fi
	wait_for "cluster state ok" cluster_ok "${ports[@]}"
	# ready once every replica is in sync, so that a master can fail over
	wait_for "replicas in sync" replicas_synced "${ports[@]}"
	(IFS=,; echo "REDIS_CLUSTER_ADDRS=${addrs[*]}")
}

case $cmd in
sentinel) sentinel_topology ;;
cluster) cluster_topology ;;
stop)
	# sentinels first, so that stopping the master starts no failover
	for f in "$dir"/sentinel*/redis.pid "$dir"/*/redis.pid; do
		if [ -e "$f" ]; then stop_pidfile "$f"; fi
	done
	;;
*)
	echo "usage: redis-ha.sh sentinel|cluster|stop DIR" >&2
	exit 2
	;;
esac
