#!/usr/bin/env bash
# Load script (not a test): floods the login with wrong passwords while
# measuring guarded requests, and prints guarded throughput during the
# flood as a ratio of unloaded throughput, both measured in this run.
#
#   bench/login-flood.sh
#   DURATION=10 FLOOD_CONNS=64 MAX_HASHES=2 HASH_ALGORITHM=argon2id bench/login-flood.sh
#
# Loopback only; every phase is bounded in time. Needs wrk (Debian package
# `wrk`, installed when missing if run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}             # seconds of each measurement
FLOOD_CONNS=${FLOOD_CONNS:-64}       # concurrent login connections in the flood
GUARD_CONNS=${GUARD_CONNS:-8}        # concurrent guarded connections
MAX_HASHES=${MAX_HASHES:-}           # max_concurrent_hashes; empty: the default (CPUs)
HASH_ALGORITHM=${HASH_ALGORITHM:-bcrypt} # as `caddy hash-password` makes it (bcrypt cost 14)

if ! command -v wrk >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
	else
		echo "wrk is missing: apt-get install wrk" >&2
		exit 1
	fi
fi

work=$(mktemp -d)
caddy_pid=
flood_pid=
cleanup() {
	if [ -n "$flood_pid" ]; then kill "$flood_pid" 2>/dev/null || true; fi
	if [ -n "$caddy_pid" ]; then kill "$caddy_pid" 2>/dev/null || true; wait "$caddy_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/caddy" ./cmd/caddy
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
base="http://127.0.0.1:$port"
secret=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)
hash=$("$work/caddy" hash-password --algorithm "$HASH_ALGORITHM" --plaintext 'bench-password')
hashes_line=""
[ -n "$MAX_HASHES" ] && hashes_line="max_concurrent_hashes $MAX_HASHES"

cat >"$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin
	storage file_system $work/storage
	log {
		output file $work/caddy.log
		format json
		level INFO
	}
}

http://127.0.0.1:$port {
	token_auth /private/* {
		signing_key hs256 {env.BENCH_SECRET}
		store memory
		throttle off
		$hashes_line
		user alice $hash
	}
	respond "ok"
}
CADDY

(cd "$work" && BENCH_SECRET=$secret HOME=$work XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config \
	exec "$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/stdout.log" 2>&1) &
caddy_pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "$base/private/x" -H 'Authorization: Bearer x' 2>/dev/null && break
	curl -s -o /dev/null -w '%{http_code}' "$base/private/x" 2>/dev/null | grep -q 401 && break
	sleep 0.1
done

token=$(curl -fsS "$base/authentication" -H 'Content-Type: application/json' \
	-d '{"strategy":"local","username":"alice","password":"bench-password"}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')

cat >"$work/flood.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, "/authentication", nil,
		'{"strategy":"local","username":"alice","password":"wrong-' .. n .. '"}')
end
local counts = {}
response = function(status) counts[status] = (counts[status] or 0) + 1 end
done = function() end
LUA

rps() { awk '/^Requests\/sec:/ {print $2}'; }
guarded() {
	wrk -t1 -c"$GUARD_CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $token" "$base/private/x"
}

echo "== unloaded: wrk -t1 -c$GUARD_CONNS -d${DURATION}s guarded GET"
guarded | tee "$work/unloaded.txt"
unloaded=$(rps <"$work/unloaded.txt")

flood_secs=$((DURATION + 6))
echo "== flood: wrk -t1 -c$FLOOD_CONNS -d${flood_secs}s POST /authentication, wrong passwords"
wrk -t1 -c"$FLOOD_CONNS" -d"${flood_secs}s" --timeout 10s -s "$work/flood.lua" "$base/authentication" >"$work/flood.txt" 2>&1 &
flood_pid=$!
sleep 3
echo "== during the flood: the same guarded GET"
guarded | tee "$work/loaded.txt"
loaded=$(rps <"$work/loaded.txt")
wait "$flood_pid" || true
flood_pid=
echo "== the flood"
cat "$work/flood.txt"
failed=$(grep -c '"msg":"login failed"' "$work/caddy.log" || true)
busy=$(grep -c 'too many password verifications' "$work/caddy.log" || true)
echo "logins verified (failed): $failed; answered 503 (no free hashing slot): $busy"

python3 - "$unloaded" "$loaded" <<'PY'
import sys
u, l = float(sys.argv[1]), float(sys.argv[2])
print(f"guarded req/s unloaded {u:.0f}, during the flood {l:.0f}: ratio {l/u:.2f} (target >= 0.5)")
PY
