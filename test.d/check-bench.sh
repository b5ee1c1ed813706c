#!/usr/bin/env bash
# Smoke run of the benchmarks (bench_test.go): each runs once, so that they
# keep compiling and working. The figures come from BENCHMARKS.md's
# commands, never from here.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchtime=1x -count=1 .
bash -n bench/load.sh
go vet ./bench/...
