#!/usr/bin/env bash
# Runs the demo: Caddy with token_auth on http://localhost:8080 serving
# examples/site/, whose /private/ area needs a login (user "demo",
# password "demo-password"). Needs only Go. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")"

# shellcheck source=test.d/progress.sh
source test.d/progress.sh

echo "building bin/caddy (Caddy with the token_auth plugin): the first build compiles"
echo "Caddy and its dependencies and takes a few minutes; later ones take seconds"
go build -v -o bin/caddy ./cmd/caddy 2>&1 | build_progress

# The demo's state (the bolt session database, Caddy's autosaved config)
# stays under bin/demo-data rather than in your home directory.
export XDG_DATA_HOME="$PWD/bin/demo-data" XDG_CONFIG_HOME="$PWD/bin/demo-data/config"
mkdir -p "$XDG_DATA_HOME"

# No secret to set: the example has no signing_key, so an Ed25519 key is
# generated on first start and kept in Caddy's storage (under bin/demo-data).

echo "demo on http://localhost:8080 (user demo, password demo-password); Ctrl-C stops it"
echo "(five wrong passwords lock you out for ten minutes; restarting the demo lifts that)"
exec bin/caddy run --config examples/Caddyfile --adapter caddyfile
