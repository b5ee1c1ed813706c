#!/usr/bin/env bash
# Load test of the guard against plain Caddy, and a refresh storm.
#
#   bench/load.sh [repeat|varying|files|refresh|dpop|all]     (default: all)
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
#   files    file_server instead of respond (a second site, same guard):
#            a 4 KiB and a 64 KiB file, one token, A/B as above
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
# unset: the default), PLAIN_CACHE_CONTROL=1 (the plain routes answer with
# the guard's "Cache-Control: private, no-cache" too, set by Caddy's header
# handler: tells the header's cost from the private-answer writer's), STORE=bolt
# (or redis: the store is then REDIS_URL, a server you started), SERVER_CPU=0,
# CLIENT_CPU=1, CORES=1 (2: Caddy runs with GOMAXPROCS=2 on both cores and
# wrk is not pinned: the two-core mode).
# SIDE_BY_SIDE=1: A and B run at the same time instead of one after the
# other, each against its own Caddy (two processes of the same binary and
# config, both pinned to SERVER_CPU, so the kernel's scheduler gives each
# half of that core; the two wrk share CLIENT_CPU); the next pair swaps
# which process serves A. Whatever slows the machine down slows both
# rounds of a pair alike, so the pairs spread far less than interleaved
# ones; each pair's ratios are taken as above, from each process's own
# requests and CPU time (modes repeat, varying, files; CORES=1 only).
# With PROFILE, the profiled pair is side by side too: both processes are
# profiled over the same seconds.
# SECOND_BIN=<caddy binary> (with SIDE_BY_SIDE=1): the second process runs
# that build, and every pair is A = /guarded on the first build, B =
# /guarded on the second (no swapping): a comparison of two builds of the
# guard under the same conditions, B/A as above.
# PROFILE=<dir>: after the A/B pairs of each mode, one more A and B round,
# each with a CPU profile of Caddy over it (the admin endpoint's
# /debug/pprof/profile, so Caddy then runs with its admin endpoint on a free
# loopback port); the profiles are saved in dir and the script prints where
# the guarded round spends more CPU per request than the plain one (µs per
# request, by function, cumulative and flat).
# Everything is bounded: at most (2*PAIRS+1)*DURATION seconds of load per
# mode (plus 2*DURATION with PROFILE), plus builds.
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
CORES=${CORES:-1}
PROFILE=${PROFILE:-}
PLAIN_CACHE_CONTROL=${PLAIN_CACHE_CONTROL:-}
SIDE_BY_SIDE=${SIDE_BY_SIDE:-}
SECOND_BIN=${SECOND_BIN:-}
case $MODE in repeat | varying | files | refresh | dpop | all) ;; *)
	echo "usage: $0 [repeat|varying|files|refresh|dpop|all]" >&2
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
case $CORES in
1) server_pin=(taskset -c "$SERVER_CPU") client_pin=(taskset -c "$CLIENT_CPU") ;;
2) server_pin=(env GOMAXPROCS=2) client_pin=() ;;
*) echo "CORES is 1 or 2" >&2; exit 2 ;;
esac
if [ -n "$SECOND_BIN" ] && [ -z "$SIDE_BY_SIDE" ]; then
	echo "SECOND_BIN needs SIDE_BY_SIDE=1" >&2
	exit 2
fi
if [ -n "$SIDE_BY_SIDE" ] && [ "$CORES" != 1 ]; then
	echo "SIDE_BY_SIDE=1 runs with CORES=1" >&2
	exit 2
fi
if [ -n "$PROFILE" ]; then
	mkdir -p "$PROFILE"
	PROFILE=$(cd "$PROFILE" && pwd)
fi

work=$(mktemp -d -t token-auth-load-XXXXXX)
caddy_pid= caddy2_pid=
cleanup() {
	for pid in $caddy_pid $caddy2_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${CADDY_BIN:-}" ]; then
	echo "== using $CADDY_BIN; building the helper"
	cp "$CADDY_BIN" "$work/caddy"
else
	echo "== building caddy and the helper"
	go build -o "$work/caddy" ./cmd/caddy
fi
go build -o "$work/helper" ./bench/loadhelper

port=$("$work/helper" port)
base="http://127.0.0.1:$port"
fport=$("$work/helper" port) # the file_server site
admin=off
[ -n "$PROFILE" ] && admin=127.0.0.1:$("$work/helper" port)
mkdir -p "$work/www/open" "$work/www/guarded"
for f in 4k:4 64k:64; do
	head -c $((${f#*:} * 1024)) /dev/urandom >"$work/www/open/${f%:*}.bin"
	cp "$work/www/open/${f%:*}.bin" "$work/www/guarded/"
done
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
password=bench-password
hash=$("$work/helper" hash "$password")

# caddyfile <dir> <port> <file_server port>: the config, with its store
# and storage in dir; the same guard on both sites (one realm, one store)
caddyfile() {
	local dir=$1 p=$2 fp=$3 adm=${4:-$admin} guard
	guard="token_auth /guarded* {
		signing_key hs256 {env.BENCH_SECRET}
		store $(if [ "$STORE" = redis ]; then echo "redis $REDIS_URL"; else echo "bolt $dir/sessions.db"; fi)
		user bench $hash
		${TOKEN_CACHE:+token_cache $TOKEN_CACHE}
	}"
	if [ -n "$PLAIN_CACHE_CONTROL" ]; then
		guard="$guard
	header /open* Cache-Control \"private, no-cache\""
	fi
	cat <<EOF
{
	admin $adm
	persist_config off
	auto_https off
	storage file_system $dir/storage
}

http://127.0.0.1:$p {
	$guard
	respond "ok"
}

http://127.0.0.1:$fp {
	$guard
	root * $work/www
	file_server
}
EOF
}

# start_caddy <dir> [<binary>]: starts Caddy (or binary) on dir/Caddyfile,
# logging to dir/caddy.log
start_caddy() {
	BENCH_SECRET=$secret HOME=$1 XDG_DATA_HOME=$1/data XDG_CONFIG_HOME=$1/config \
		"${server_pin[@]}" "${2:-$work/caddy}" run --config "$1/Caddyfile" --adapter caddyfile \
		>"$1/caddy.log" 2>&1 &
}

caddyfile "$work" "$port" "$fport" >"$work/Caddyfile"
if [ "$CORES" = 1 ]; then
	echo "== starting caddy on $base (cpu $SERVER_CPU); wrk on cpu $CLIENT_CPU"
else
	echo "== starting caddy on $base (GOMAXPROCS=2, both cores); wrk unpinned"
fi
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_caddy "$work"
caddy_pid=$!
"$work/helper" wait "$base/open"
if [ -n "$SIDE_BY_SIDE" ]; then
	# the second process: same binary, same config but its ports and its
	# store (tokens verify at both: one signing key)
	port2=$("$work/helper" port) fport2=$("$work/helper" port) admin2=off
	[ -n "$PROFILE" ] && admin2=127.0.0.1:$("$work/helper" port)
	mkdir -p "$work/second"
	caddyfile "$work/second" "$port2" "$fport2" "$admin2" >"$work/second/Caddyfile"
	echo "== side by side: a second caddy on http://127.0.0.1:$port2 (cpu $SERVER_CPU too)"
	[ -z "$SECOND_BIN" ] || cp "$SECOND_BIN" "$work/caddy2"
	start_caddy "$work/second" "${SECOND_BIN:+$work/caddy2}"
	caddy2_pid=$!
	"$work/helper" wait "http://127.0.0.1:$port2/open"
fi

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

# cpu_ticks [pid]: user+system CPU time Caddy (or pid) has used, in clock
# ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/${1:-$caddy_pid}/stat"; }
hz=$(getconf CLK_TCK)

# wrk_round <label> <path> [<wrk option>... [-- <script arg>...]]: one
# round; prints it to stderr, echoes "<requests/s> <caddy CPU µs/request>
# <requests>". The round goes to $base, or $url_base when set; with
# $profile_to set, Caddy's CPU profile over the round is saved there.
wrk_round() {
	local label=$1 path=$2
	shift 2
	local opts=() out rps reqs non2xx t0 t1 cpu prof_pid=
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -gt 0 ] && shift # the --: script arguments follow the URL
	if [ -n "${profile_to:-}" ]; then
		curl -sf -o "$profile_to" "http://$admin/debug/pprof/profile?seconds=$DURATION" &
		prof_pid=$!
	fi
	t0=$(cpu_ticks)
	out=$("${client_pin[@]}" timeout $((DURATION + 30)) wrk -t$CORES -c"$CONNS" -d"${DURATION}s" "${opts[@]}" "${url_base:-$base}$path" "$@")
	t1=$(cpu_ticks)
	[ -z "$prof_pid" ] || wait "$prof_pid"
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	printf '   %-22s %8.0f req/s %7.1f µs CPU/req%s\n' "$label" "$rps" "$cpu" "${non2xx:+   ($non2xx non-2xx answers)}" >&2
	echo "$rps $cpu $reqs"
}

# side_pair <label> <A url> <A pid> <B url> <B pid> [<wrk option>... [--
# <script arg>...]]: one round of A and B at the same time, each against
# its own Caddy; prints both to stderr, echoes "<A requests/s> <A CPU
# µs/request> <B requests/s> <B CPU µs/request>".
side_pair() {
	local label=$1 ua=$2 pa=$3 ub=$4 pb=$5
	shift 5
	local opts=() args=() a0 b0 a1 b1 wa wb out ra rb na nb ca cb
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	args=("$@")
	local prof=()
	if [ -n "${profile_to:-}" ]; then # profile_to: "<A file> <B file>"
		local adm_a=$admin adm_b=$admin2 fa fb
		[ "$pa" = "$caddy_pid" ] || { adm_a=$admin2 adm_b=$admin; }
		read -r fa fb <<<"$profile_to"
		curl -sf -o "$fa" "http://$adm_a/debug/pprof/profile?seconds=$DURATION" &
		prof+=($!)
		curl -sf -o "$fb" "http://$adm_b/debug/pprof/profile?seconds=$DURATION" &
		prof+=($!)
	fi
	a0=$(cpu_ticks "$pa") b0=$(cpu_ticks "$pb")
	"${client_pin[@]}" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" "${opts[@]}" "$ua" "${args[@]}" >"$work/side-A.out" &
	wa=$!
	"${client_pin[@]}" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" "${opts[@]}" "$ub" "${args[@]}" >"$work/side-B.out" &
	wb=$!
	wait "$wa" "$wb"
	a1=$(cpu_ticks "$pa") b1=$(cpu_ticks "$pb")
	[ ${#prof[@]} -eq 0 ] || wait "${prof[@]}"
	for x in A B; do
		out=$(cat "$work/side-$x.out")
		if [ $x = A ]; then
			ra=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") na=$(awk '/requests in/ {print $1}' <<<"$out")
		else
			rb=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") nb=$(awk '/requests in/ {print $1}' <<<"$out")
		fi
		if grep -q 'Non-2xx' <<<"$out"; then echo "   $label $x: $(grep 'Non-2xx' <<<"$out")" >&2; fi
	done
	ca=$(awk -v d=$((a1 - a0)) -v hz="$hz" -v n="$na" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	cb=$(awk -v d=$((b1 - b0)) -v hz="$hz" -v n="$nb" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	printf '   %-22s A %8.0f req/s %7.1f µs CPU/req | B %8.0f req/s %7.1f µs CPU/req\n' "$label" "$ra" "$ca" "$rb" "$cb" >&2
	echo "$ra $ca $rb $cb $na $nb"
}

# profile_summary <A.pprof> <A requests> <B.pprof> <B requests>: where B
# spends more CPU per request than A, by function (go tool pprof -top of
# each, divided by the round's requests). Cumulative: the function and
# what it calls; flat: the function itself.
profile_summary() {
	local a=$1 na=$2 b=$3 nb=$4
	pprof_top() {
		go tool pprof -top -nodecount=100000 -nodefraction=0 -edgefraction=0 -unit=us "$1" 2>/dev/null |
			awk '$5 ~ /%$/ && $1 ~ /us$|^0$/ {n = $0; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", n); f = $1; c = $4; sub(/us/, "", f); sub(/us/, "", c); print f "\t" c "\t" n}'
	}
	{ pprof_top "$a" | sed 's/^/A\t/'; pprof_top "$b" | sed 's/^/B\t/'; } | awk -F'\t' -v na="$na" -v nb="$nb" '
		{ if ($1 == "A") { fa[$4] += $2 / na; ca[$4] += $3 / na } else { fb[$4] += $2 / nb; cb[$4] += $3 / nb }; names[$4] = 1 }
		END { for (n in names) {
			printf "flat\t%.3f\t%.3f\t%.3f\t%s\n", fb[n] - fa[n], fa[n], fb[n], n
			printf "cum\t%.3f\t%.3f\t%.3f\t%s\n", cb[n] - ca[n], ca[n], cb[n], n } }' >"$b.diff"
	local top=net/http.\(\*conn\).serve
	echo "   profiled: A $(awk -F'\t' -v n="$top" '$1 == "cum" && $5 == n {print $3}' "$b.diff") µs, B $(awk -F'\t' -v n="$top" '$1 == "cum" && $5 == n {print $4}' "$b.diff") µs of CPU per request in net/http's conn.serve (GC and other goroutines aside)"
	for kind in cum flat; do
		echo "   B - A, µs per request ($kind), then A and B:"
		awk -F'\t' -v k=$kind '$1 == k' "$b.diff" | sort -t$'\t' -k2,2gr | head -"${PROFILE_TOP:-20}" |
			awk -F'\t' '{printf "   %+7.2f %7.2f %7.2f  %s\n", $2, $3, $4, $5}'
	done
	echo "   the guard's own functions in B (cum), µs per request:"
	awk -F'\t' '$1 == "cum" && $5 ~ /caddy-token-auth/' "$b.diff" | sort -t$'\t' -k4,4gr | head -"${PROFILE_TOP:-20}" |
		awk -F'\t' '{printf "   %7.2f  %s\n", $4, $5}'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

rss() { awk '/^VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$caddy_pid/status"; }

spread() { sort -g | awk '{a[NR]=$1} END {printf "%s-%s", a[1], a[NR]}'; }

# profile_top <file.pprof> <requests>: the top of a profile (cumulative),
# in µs per request.
profile_top() {
	go tool pprof -top -cum -nodecount="${PROFILE_TOP:-30}" -unit=us "$1" 2>/dev/null |
		awk -v n="$2" '$5 ~ /%$/ && $1 ~ /us$|^0$/ {name = $0; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", name); c = $4; f = $1; sub(/us/, "", c); sub(/us/, "", f); printf "   %8.2f %8.2f  %s\n", c / n, f / n, name}' |
		sed '1i\   µs per request: cumulative, flat, function'
}

# ab_rounds <name> <wrk args...>: warm-up, then PAIRS interleaved A/B
# pairs: A = /open$suffix, B = /guarded$suffix (suffix: "" unless set)
ab_rounds() {
	local name=$1
	shift
	local sfx=${suffix:-}
	local apath=/open$sfx
	if [ -n "$SECOND_BIN" ]; then
		apath=/guarded$sfx
		echo "== $name: A = /guarded$sfx on $(basename "${CADDY_BIN:-caddy (this tree)}"), B = /guarded$sfx on $(basename "$SECOND_BIN"); $PAIRS pairs of ${DURATION}s rounds, $CONNS connections"
	else
		echo "== $name: A = /open$sfx (plain), B = /guarded$sfx (token_auth); $PAIRS pairs of ${DURATION}s rounds, $CONNS connections"
	fi
	local log_before ratios=() cpuratios=() a b ra rb
	DURATION=2 wrk_round "warm-up B" "/guarded$sfx" "$@" >/dev/null
	if [ -n "$SIDE_BY_SIDE" ]; then
		local second="http://127.0.0.1:$port2"
		[ -n "${url_base:-}" ] && second="http://127.0.0.1:$fport2"
		echo "   side by side: each pair runs A and B at the same time, on two processes sharing cpu $SERVER_CPU"
		DURATION=2 url_base=$second wrk_round "warm-up B, 2nd" "/guarded$sfx" "$@" >/dev/null
	fi
	log_before=$(wc -l <"$work/caddy.log")
	for ((p = 1; p <= PAIRS; p++)); do
		if [ -n "$SIDE_BY_SIDE" ]; then
			# odd pairs: A on the first process, B on the second; even: swapped
			local first=${url_base:-$base} second="http://127.0.0.1:$port2"
			[ -n "${url_base:-}" ] && second="http://127.0.0.1:$fport2"
			if ((p % 2)) || [ -n "$SECOND_BIN" ]; then
				read -r ra ca rb cb _ < <(side_pair "pair $p (A 1st, B 2nd)" "$first$apath" "$caddy_pid" "$second/guarded$sfx" "$caddy2_pid" "$@")
			else
				read -r ra ca rb cb _ < <(side_pair "pair $p (A 2nd, B 1st)" "$second/open$sfx" "$caddy2_pid" "$first/guarded$sfx" "$caddy_pid" "$@")
			fi
		else
			a=$(wrk_round "round $p A (plain)" "/open$sfx" "$@")
			b=$(wrk_round "round $p B (guarded)" "/guarded$sfx" "$@")
			read -r ra ca _ <<<"$a"
			read -r rb cb _ <<<"$b"
		fi
		ratios+=("$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", b/a}')")
		cpuratios+=("$(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.3f", a/b}')")
		echo "   pair $p: throughput B/A = ${ratios[-1]}, CPU per request A/B = ${cpuratios[-1]}   (caddy RSS $(rss))"
	done
	local tr="guarded/plain" cr="plain/guarded  "
	[ -z "$SECOND_BIN" ] || tr="second/first " cr="first/second   "
	echo "   $name: median throughput ratio $tr = $(printf '%s\n' "${ratios[@]}" | median) (pairs $(printf '%s\n' "${ratios[@]}" | spread))"
	echo "   $name: median CPU-cost ratio $cr = $(printf '%s\n' "${cpuratios[@]}" | median) (pairs $(printf '%s\n' "${cpuratios[@]}" | spread))"
	echo "   log lines written during the rounds: $(($(wc -l <"$work/caddy.log") - log_before))"
	if [ -n "$PROFILE" ]; then
		local tag
		tag=$(tr -c 'a-zA-Z0-9' _ <<<"$name$sfx" | tr -s _ | sed 's/_$//')
		echo "   profiling one more pair (CPU profiles in $PROFILE/$tag-{A,B}.pprof)"
		if [ -n "$SIDE_BY_SIDE" ]; then
			local second="http://127.0.0.1:$port2" na nb
			[ -n "${url_base:-}" ] && second="http://127.0.0.1:$fport2"
			read -r _ _ _ _ na nb < <(profile_to="$PROFILE/$tag-A.pprof $PROFILE/$tag-B.pprof" side_pair "profiled pair" "${url_base:-$base}$apath" "$caddy_pid" "$second/guarded$sfx" "$caddy2_pid" "$@")
			profile_summary "$PROFILE/$tag-A.pprof" "$na" "$PROFILE/$tag-B.pprof" "$nb"
		else
			a=$(profile_to="$PROFILE/$tag-A.pprof" wrk_round "profiled A (plain)" "/open$sfx" "$@")
			b=$(profile_to="$PROFILE/$tag-B.pprof" wrk_round "profiled B (guarded)" "/guarded$sfx" "$@")
			profile_summary "$PROFILE/$tag-A.pprof" "${a##* }" "$PROFILE/$tag-B.pprof" "${b##* }"
		fi
	fi
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

if [ "$MODE" = files ] || [ "$MODE" = all ]; then
	for f in 4k 64k; do
		url_base="http://127.0.0.1:$fport" suffix="/$f.bin" ab_rounds "files ($f, one token)" -H "Authorization: Bearer $access"
	done
fi

if [ "$MODE" = refresh ] || [ "$MODE" = all ]; then
	echo "== refresh storm: $CLIENTS connections, $STORE store, $PAIRS rounds of ${DURATION}s"
	rates=()
	for ((p = 1; p <= PAIRS; p++)); do
		# two sessions per connection, fresh each round (a rotated-away token is spent)
		"$work/helper" login "$base/authentication" bench "$password" $((2 * CLIENTS)) | awk '{print $2}' >"$work/refresh.txt"
		r=$(CONNS=$CLIENTS wrk_round "round $p refresh" /authentication -s "$work/refresh.lua" -- "$work/refresh.txt")
		rates+=("${r%% *}")
	done
	echo "   refresh: median $(printf '%s\n' "${rates[@]}" | median) rotations/s (rounds $(printf '%s\n' "${rates[@]}" | spread))"
	if [ -n "$PROFILE" ]; then
		echo "   profiling one more round (CPU profile in $PROFILE/refresh-$STORE.pprof)"
		"$work/helper" login "$base/authentication" bench "$password" $((2 * CLIENTS)) | awk '{print $2}' >"$work/refresh.txt"
		r=$(CONNS=$CLIENTS profile_to="$PROFILE/refresh-$STORE.pprof" wrk_round "profiled refresh" /authentication -s "$work/refresh.lua" -- "$work/refresh.txt")
		profile_top "$PROFILE/refresh-$STORE.pprof" "${r##* }"
	fi
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
		read -r ra ua _ <<<"$a"
		read -r rb ub _ <<<"$b"
		read -r rc uc _ <<<"$c"
		ta+=("$(awk -v a="$ra" -v c="$rc" 'BEGIN {printf "%.3f", c/a}')")
		tb+=("$(awk -v b="$rb" -v c="$rc" 'BEGIN {printf "%.3f", c/b}')")
		ca+=("$(awk -v a="$ua" -v c="$uc" 'BEGIN {printf "%.3f", c/a}')")
		cb+=("$(awk -v b="$ub" -v c="$uc" 'BEGIN {printf "%.3f", c/b}')")
		echo "   round $p: throughput C/A = ${ta[-1]}, C/B = ${tb[-1]}; CPU per request C/A = ${ca[-1]}, C/B = ${cb[-1]}   (caddy RSS $(rss))"
	done
	echo "   dpop: median throughput ratio DPoP/plain = $(printf '%s\n' "${ta[@]}" | median), DPoP/bearer = $(printf '%s\n' "${tb[@]}" | median)"
	echo "   dpop: median CPU-per-request ratio DPoP/plain = $(printf '%s\n' "${ca[@]}" | median), DPoP/bearer = $(printf '%s\n' "${cb[@]}" | median)"
fi

echo "== machine: $(nproc) cores, CORES=$CORES, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
