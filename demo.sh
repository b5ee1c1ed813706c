#!/usr/bin/env bash
# Runs the demo: Caddy with token_auth on http://localhost:8080 serving
# examples/site/, whose /private/ area needs a login (user "demo",
# password "demo-password"). Needs only Go. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")"

echo "building bin/caddy (Caddy with the token_auth plugin) ..."
go build -o bin/caddy ./cmd/caddy

# The demo's state (the bolt session database, Caddy's autosaved config)
# stays under bin/demo-data rather than in your home directory.
export XDG_DATA_HOME="$PWD/bin/demo-data" XDG_CONFIG_HOME="$PWD/bin/demo-data/config"
mkdir -p "$XDG_DATA_HOME"

# The example signs tokens with signing_key hs256 {env.TOKEN_AUTH_SECRET}.
# Without one set, the demo makes a random secret once and keeps it, so
# that sessions survive restarts of the demo.
if [ -z "${TOKEN_AUTH_SECRET:-}" ]; then
	secret_file="$XDG_DATA_HOME/token-auth-secret"
	if [ ! -s "$secret_file" ]; then
		(umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$secret_file")
	fi
	TOKEN_AUTH_SECRET=$(cat "$secret_file")
	export TOKEN_AUTH_SECRET
fi

echo "demo on http://localhost:8080 (user demo, password demo-password); Ctrl-C stops it"
exec bin/caddy run --config examples/Caddyfile --adapter caddyfile
