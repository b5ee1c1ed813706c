#!/usr/bin/env bash
# Runs the whole test suite: the services the tests need are installed when
# missing and started here (test.d/setup-*.sh), then the Go tests run with
# the race detector, then the extra checks (test.d/check-*.sh).
set -euo pipefail
cd "$(dirname "$0")"

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
	echo "== $setup"
	# shellcheck source=/dev/null
	source "$setup"
done

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; exit 1; fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 40m ./...

for check in test.d/check-*.sh; do
	[ -e "$check" ] || continue
	echo "== $check"
	bash "$check"
done
echo "== all tests passed"
