#!/usr/bin/env bash
# Load test of the guard against plain Caddy, and a refresh storm.
#
#   bench/load.sh [repeat|varying|refresh|dpop|all]     (default: all)
#
# Builds cmd/caddy, starts it from a temp dir on 127.0.0.1 with one site:
#   /open*     respond "ok"                       (A: plain Caddy)
#   /guarded*  token_auth (hs256, bolt), respond "ok" (B: the same route, guarded)
# Caddy is pinned to one core and wrk to another (taskset); rounds are
# interleaved A/B/A/B..., each printed with its throughput and Caddy's CPU
# time per request (from /proc: robust when other processes share the
# machine), then the medians of the per-pair ratios: throughput B/A and
# CPU cost A/B (both 1.0 when the guard costs nothing).
#   repeat   every request carries the same valid token
#   varying  every request carries a different valid token (pre-minted,
#            more tokens than requests in a round, far more than token_cache)
#   refresh  POST /authentication refresh storm: CLIENTS connections rotating
#            their own sessions' refresh tokens; prints rotations/s per round
#   dpop     rounds of three, interleaved: A plain, B guarded with one bearer
#            token, C guarded with a DPoP-bound token and a fresh ES256 proof
#            every request (PROOFS proofs signed before each C round, each
#            used once); ratios C/A and C/B
#
# Knobs (environment): PAIRS=3 rounds of A and B, DURATION=8 seconds a round,
# CONNS=32 wrk connections, TOKENS=200000 minted tokens, CLIENTS=32 refresh
# clients, PROOFS=60000 DPoP proofs a round, TOKEN_CACHE (token_cache option;
# unset: the default), STORE=bolt
# (or redis: the store is then REDIS_URL, a server you started), SERVER_CPU=0,
# CLIENT_CPU=1. Everything is bounded: at most
# (2*PAIRS+1)*DURATION seconds of load per mode, plus builds.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
PAIRS=${PAIRS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
TOKENS=${TOKENS:-200000}
CLIENTS=${CLIENTS:-32}
PROOFS=${PROOFS:-60000}
TOKEN_CACHE=${TOKEN_CACHE:-}
STORE=${STORE:-bolt}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
case $MODE in repeat | varying | refresh | dpop | all) ;; *)
	echo "usage: $0 [repeat|varying|refresh|dpop|all]" >&2
	exit 2
	;;
esac

if ! command -v wrk >/dev/null; then
	echo "== installing wrk (Debian package)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
case $STORE in
bolt) ;;
redis) [ -n "${REDIS_URL:-}" ] || { echo "STORE=redis needs REDIS_URL" >&2; exit 2; } ;;
*) echo "STORE is bolt or redis" >&2; exit 2 ;;
esac
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

work=$(mktemp -d -t token-auth-load-XXXXXX)
caddy_pid=
cleanup() {
	if [ -n "$caddy_pid" ]; then kill "$caddy_pid" 2>/dev/null && wait "$caddy_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building caddy and the helper"
go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/helper" ./bench/loadhelper

port=$("$work/helper" port)
base="http://127.0.0.1:$port"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
password=bench-password
hash=$("$work/helper" hash "$password")

cat >"$work/Caddyfile" <<EOF
{
	admin off
	persist_config off
	auto_https off
	storage file_system $work/storage
}

http://127.0.0.1:$port {
	token_auth /guarded* {
		signing_key hs256 {env.BENCH_SECRET}
		store $(if [ "$STORE" = redis ]; then echo "redis $REDIS_URL"; else echo "bolt $work/sessions.db"; fi)
		user bench $hash
		${TOKEN_CACHE:+token_cache $TOKEN_CACHE}
	}
	respond "ok"
}
EOF

echo "== starting caddy on $base (cpu $SERVER_CPU); wrk on cpu $CLIENT_CPU"
BENCH_SECRET=$secret HOME=$work XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config \
	taskset -c "$SERVER_CPU" "$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile \
	>"$work/caddy.log" 2>&1 &
caddy_pid=$!
"$work/helper" wait "$base/open"

# one login gives the token for repeat mode and the template for varying
read -r access _ < <("$work/helper" login "$base/authentication" bench "$password" 1)

cat >"$work/varying.lua" <<'EOF'
local tokens, i = {}, 0
function init(args)
	for line in io.lines(args[1]) do tokens[#tokens + 1] = "Bearer " .. line end
end
function request()
	i = i + 1
	if i > #tokens then i = 1 end
	return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end
EOF

cat >"$work/refresh.lua" <<'EOF'
-- a queue of refresh tokens: each request takes one, each answer gives
-- the next one of that session back
local queue, head, tail = {}, 1, 0
function init(args)
	for line in io.lines(args[1]) do tail = tail + 1; queue[tail] = line end
end
function request()
	if head > tail then return wrk.format("GET", "/open") end -- starved (should not happen)
	local tok = queue[head]; queue[head] = nil; head = head + 1
	return wrk.format("POST", "/authentication", { ["Content-Type"] = "application/json" },
		'{"action":"refresh","refresh_token":"' .. tok .. '"}')
end
function response(status, headers, body)
	local tok = body:match('"refreshToken":"([^"]+)"')
	if tok then tail = tail + 1; queue[tail] = tok end
end
EOF

# cpu_ticks: user+system CPU time Caddy has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$caddy_pid/stat"; }
hz=$(getconf CLK_TCK)

# wrk_round <label> <path> [<wrk option>... [-- <script arg>...]]: one
# round; prints it to stderr, echoes "<requests/s> <caddy CPU µs/request>".
wrk_round() {
	local label=$1 path=$2
	shift 2
	local opts=() out rps reqs non2xx t0 t1 cpu
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -gt 0 ] && shift # the --: script arguments follow the URL
	t0=$(cpu_ticks)
	out=$(taskset -c "$CLIENT_CPU" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" "${opts[@]}" "$base$path" "$@")
	t1=$(cpu_ticks)
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	printf '   %-22s %8.0f req/s %7.1f µs CPU/req%s\n' "$label" "$rps" "$cpu" "${non2xx:+   ($non2xx non-2xx answers)}" >&2
	echo "$rps $cpu"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

rss() { awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$caddy_pid/status"; }

# ab_rounds <name> <wrk args...>: warm-up, then PAIRS interleaved A/B pairs
ab_rounds() {
	local name=$1
	shift
	echo "== $name: A = /open (plain), B = /guarded (token_auth); $PAIRS pairs of ${DURATION}s rounds, $CONNS connections"
	local log_before ratios=() cpuratios=() a b
	DURATION=2 wrk_round "warm-up B" /guarded "$@" >/dev/null
	log_before=$(wc -l <"$work/caddy.log")
	for ((p = 1; p <= PAIRS; p++)); do
		a=$(wrk_round "round $p A (plain)" /open "$@")
		b=$(wrk_round "round $p B (guarded)" /guarded "$@")
		ratios+=("$(awk -v a="${a% *}" -v b="${b% *}" 'BEGIN {printf "%.3f", b/a}')")
		cpuratios+=("$(awk -v a="${a#* }" -v b="${b#* }" 'BEGIN {printf "%.3f", a/b}')")
		echo "   pair $p: throughput B/A = ${ratios[-1]}, CPU per request A/B = ${cpuratios[-1]}   (caddy RSS $(rss))"
	done
	echo "   $name: median throughput ratio guarded/plain = $(printf '%s\n' "${ratios[@]}" | median)"
	echo "   $name: median CPU-cost ratio plain/guarded   = $(printf '%s\n' "${cpuratios[@]}" | median)"
	echo "   log lines written during the rounds: $(($(wc -l <"$work/caddy.log") - log_before))"
}

if [ "$MODE" = repeat ] || [ "$MODE" = all ]; then
	ab_rounds "repeat (one token)" -H "Authorization: Bearer $access"
fi

if [ "$MODE" = varying ] || [ "$MODE" = all ]; then
	echo "== minting $TOKENS access tokens"
	"$work/helper" mint "$secret" "$access" "$TOKENS" >"$work/tokens.txt"
	ab_rounds "varying (a new token every request)" -s "$work/varying.lua" -- "$work/tokens.txt"
	echo "   (a round that answers more than $TOKENS requests reuses tokens, long evicted from the 10000-entry cache)"
fi

if [ "$MODE" = refresh ] || [ "$MODE" = all ]; then
	echo "== refresh storm: $CLIENTS connections, $STORE store, $PAIRS rounds of ${DURATION}s"
	rates=()
	for ((p = 1; p <= PAIRS; p++)); do
		# two sessions per connection, fresh each round (a rotated-away token is spent)
		"$work/helper" login "$base/authentication" bench "$password" $((2 * CLIENTS)) | awk '{print $2}' >"$work/refresh.txt"
		r=$(CONNS=$CLIENTS wrk_round "round $p refresh" /authentication -s "$work/refresh.lua" -- "$work/refresh.txt")
		rates+=("${r% *}")
	done
	echo "   refresh: median $(printf '%s\n' "${rates[@]}" | median) rotations/s"
fi

if [ "$MODE" = dpop ] || [ "$MODE" = all ]; then
	cat >"$work/dpop.lua" <<'EOF'
local proofs, i, auth = {}, 0, nil
function init(args)
	for line in io.lines(args[1]) do proofs[#proofs + 1] = line end
	auth = "DPoP " .. args[2]
end
function request()
	i = i + 1
	if i > #proofs then i = 1 end -- a replay from here on: answered 401, counted as non-2xx
	return wrk.format(nil, nil, { ["Authorization"] = auth, ["DPoP"] = proofs[i] })
end
EOF
	echo "== dpop: A = /open (plain), B = /guarded (bearer token), C = /guarded (DPoP: bound token + a fresh ES256 proof per request); $PAIRS rounds of ${DURATION}s, $CONNS connections"
	dpop_token=$("$work/helper" dpop-login "$base/authentication" bench "$password" "$work/dpop.key")
	# proofs are single-use and live 60 s: fresh ones right before each C round
	proofs_for_round() { "$work/helper" dpop-proofs "$work/dpop.key" "$base/guarded" "$dpop_token" "$PROOFS" >"$work/proofs.txt"; }
	proofs_for_round
	DURATION=2 wrk_round "warm-up C" /guarded -s "$work/dpop.lua" -- "$work/proofs.txt" "$dpop_token" >/dev/null
	ta=() tb=() ca=() cb=()
	for ((p = 1; p <= PAIRS; p++)); do
		a=$(wrk_round "round $p A (plain)" /open)
		b=$(wrk_round "round $p B (bearer)" /guarded -H "Authorization: Bearer $access")
		proofs_for_round
		c=$(wrk_round "round $p C (DPoP)" /guarded -s "$work/dpop.lua" -- "$work/proofs.txt" "$dpop_token")
		ta+=("$(awk -v a="${a% *}" -v c="${c% *}" 'BEGIN {printf "%.3f", c/a}')")
		tb+=("$(awk -v b="${b% *}" -v c="${c% *}" 'BEGIN {printf "%.3f", c/b}')")
		ca+=("$(awk -v a="${a#* }" -v c="${c#* }" 'BEGIN {printf "%.3f", c/a}')")
		cb+=("$(awk -v b="${b#* }" -v c="${c#* }" 'BEGIN {printf "%.3f", c/b}')")
		echo "   round $p: throughput C/A = ${ta[-1]}, C/B = ${tb[-1]}; CPU per request C/A = ${ca[-1]}, C/B = ${cb[-1]}   (caddy RSS $(rss))"
	done
	echo "   dpop: median throughput ratio DPoP/plain = $(printf '%s\n' "${ta[@]}" | median), DPoP/bearer = $(printf '%s\n' "${tb[@]}" | median)"
	echo "   dpop: median CPU-per-request ratio DPoP/plain = $(printf '%s\n' "${ca[@]}" | median), DPoP/bearer = $(printf '%s\n' "${cb[@]}" | median)"
fi

echo "== machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
