#!/usr/bin/env bash
# Runs the local-checkout build of xcaddy.md (the block between the
# check-xcaddy markers) and checks that the binary has the plugin.
set -euo pipefail
cd "$(dirname "$0")/.."

XCADDY_VERSION=v0.4.5
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v xcaddy >/dev/null 2>&1 || ! xcaddy version 2>/dev/null | grep -q "$XCADDY_VERSION"; then
	go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
fi

block=$(awk '/<!-- check-xcaddy: begin -->/{on=1; next} /<!-- check-xcaddy: end -->/{on=0} on && !/^```/' xcaddy.md)
[ -n "$block" ] || { echo "no check-xcaddy block in xcaddy.md"; exit 1; }

trap 'rm -f ./caddy' EXIT
echo "$block"
bash -euo pipefail -c "$block"

./caddy list-modules | grep -qx 'http.handlers.token_auth' || { echo "http.handlers.token_auth missing from list-modules"; exit 1; }
./caddy list-modules --versions | grep -q '^http.handlers.token_auth v0.0.0' || { echo "plugin not built from the checkout"; exit 1; }
./caddy help token-auth-users >/dev/null
echo "xcaddy build OK: $(./caddy version)"
