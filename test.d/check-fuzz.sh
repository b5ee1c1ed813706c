#!/usr/bin/env bash
# Runs each Go fuzz target for a fixed number of executions (FUZZTIME,
# default 5000x; a duration such as 30s works too, for a longer local run).
# A count, not a duration, by default: with a duration, Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure when the
# deadline falls while a worker is busy (golang/go#75804, fixed in 1.27),
# which a loaded 2-core CI machine hits now and then with no failing input.
# The seed corpora also run with every plain `go test`; failing inputs are
# written to testdata/fuzz/<Target>/ and then replayed by `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5000x}
for target in FuzzVerifyToken FuzzFastPathAgreesWithFullPath FuzzRefreshFastPathAgreesWithFullPath FuzzDecodeAuthRequest FuzzUnmarshalCaddyfile FuzzParseUsersFile FuzzSanitizeRedirect; do
	echo "-- $target ($fuzztime)"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 .
done
