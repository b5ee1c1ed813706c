#!/usr/bin/env bash
# Runs the whole test suite: the services the tests need are installed when
# missing and started here (test.d/setup-*.sh), then the Go tests run with
# the race detector, then the extra checks (test.d/check-*.sh).
set -euo pipefail
cd "$(dirname "$0")"

# shellcheck source=test.d/progress.sh
source test.d/progress.sh

# step NAME: announces a step, with the time since the start.
step() { printf '== [%02d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

cleanups=()
cleanup() { for c in "${cleanups[@]:-}"; do [ -n "$c" ] && eval "$c" || true; done; }
trap cleanup EXIT

# apt_install PKG...: installs Debian packages that are missing.
apt_updated=0
apt_install() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

for setup in test.d/setup-*.sh; do
	[ -e "$setup" ] || continue
	step "$setup"
	# shellcheck source=/dev/null
	source "$setup"
done

# go vet compiles everything it checks: on a cold build cache that is
# minutes, so compile first, showing the packages as they go.
step "compiling (the first time: several minutes)"
go build -v ./... 2>&1 | build_progress

step "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...

# the race detector compiles everything once more
step "compiling with -race (the first time: several minutes)"
go build -race -v ./... 2>&1 | build_progress

# -v only to show each test as it starts (test_progress keeps failures
# whole and go test's closing lines); the whole log goes to bin/go-test.log.
step "go test -race -count=1 ./... (each top-level test as it starts; full log: bin/go-test.log)"
mkdir -p bin
go test -race -count=1 -timeout 40m -v ./... 2>&1 | tee bin/go-test.log | test_progress

for check in test.d/check-*.sh; do
	[ -e "$check" ] || continue
	step "$check"
	bash "$check"
done
step "all tests passed"
