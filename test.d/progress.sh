# Sourced by demo.sh and test.sh (not a setup or check step): filters that
# turn the Go tools' output into step-by-step progress.

# build_progress: reads `go build -v` output (stdin, stderr merged) and
# shows each package as it is compiled: on a terminal on one line that is
# rewritten, elsewhere (CI logs) one line every 25 packages. Anything that
# is not a package path (compiler errors) is printed as it is. Nothing is
# compiled, nothing is shown: a warm build cache stays quiet.
build_progress() {
	awk -v tty="$([ -t 1 ] && echo 1 || echo 0)" '
		/^[A-Za-z0-9._~\/-]+$/ {
			n++
			if (tty) { printf "\r\033[K  compiled %d packages: %s", n, $0; fflush() }
			else if (n % 25 == 0) { printf "  compiled %d packages (%s)\n", n, $0; fflush() }
			next
		}
		{ if (tty && n) printf "\n"; print; fflush() }
		END { if (n) printf "%s  compiled %d packages\n", (tty ? "\r\033[K" : ""), n }
	'
}

# test_progress: reads `go test -v` output and shows each top-level test as
# it starts, the whole output of a test that fails (buffered per test until
# its result), panics and build errors as they come, and go test's own
# closing lines per package (ok, FAIL, ?), which CI reads. Passing tests'
# output is dropped here; test.sh keeps the whole log in bin/go-test.log.
test_progress() {
	awk '
		function top(name) { sub(/\/.*/, "", name); return name }
		function flush_all() { for (t in buf) if (buf[t] != "") printf "%s", buf[t]; delete buf }
		panicking { print; fflush(); next }
		/^panic: / || /^fatal error: / { flush_all(); panicking = 1; print; fflush(); next }
		/^=== RUN / {
			cur = top($3)
			if ($3 == cur) { printf "  %s\n", cur; fflush() }
			buf[cur] = buf[cur] $0 "\n"
			next
		}
		/^=== (PAUSE|CONT|NAME) / { cur = top($3); buf[cur] = buf[cur] $0 "\n"; next }
		/^--- FAIL: / { t = top($3); printf "%s%s\n", buf[t], $0; buf[t] = ""; cur = t; shown[t] = 1; fflush(); next }
		/^--- (PASS|SKIP): / { t = top($3); delete buf[t]; cur = ""; next }
		/^ +--- (PASS|SKIP|FAIL): / { t = top($3); if (t in shown) print; else if ($2 == "FAIL:") buf[t] = buf[t] $0 "\n"; next }
		/^(ok|FAIL|\?) *\t/ || /^FAIL$/ || /^PASS$/ { flush_all(); cur = ""; delete shown; if ($0 != "PASS") print; fflush(); next }
		{ if (cur != "") buf[cur] = buf[cur] $0 "\n"; else { print; fflush() } }
	'
}
