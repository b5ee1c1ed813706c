#!/usr/bin/env bash
# Runs each Go fuzz target for a short time (FUZZTIME, default 15s). The
# seed corpora also run with every plain `go test`; failing inputs are
# written to testdata/fuzz/<Target>/ and then replayed by `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-15s}
for target in FuzzVerifyToken FuzzFastPathAgreesWithFullPath FuzzDecodeAuthRequest FuzzUnmarshalCaddyfile FuzzParseUsersFile FuzzSanitizeRedirect; do
	echo "-- $target ($fuzztime)"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 .
done
