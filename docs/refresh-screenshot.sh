#!/usr/bin/env bash
# Refreshes docs/login-page.png, the picture of the built-in login page in
# docs/static-sites.md: runs the browser test (TestBrowserLoginFlow) with
# LOGIN_PAGE_SCREENSHOT set to that file (the Go test passes it on). ./test.sh never writes it; run this after
# changing the login page, and commit the picture if it changed.
# Needs what test.d/setup-chromium.sh installs (Chromium, node, npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

# the package that holds the test (e2e/ in the current layout)
pkg=$(grep -l 'func TestBrowserLoginFlow' --include='*_test.go' -r . | head -n 1 | xargs dirname)
[ -n "$pkg" ] || { echo "TestBrowserLoginFlow not found" >&2; exit 1; }

# absolute: the browser script runs in tests/browser
export LOGIN_PAGE_SCREENSHOT="$PWD/docs/login-page.png"
echo "running TestBrowserLoginFlow in $pkg, saving $LOGIN_PAGE_SCREENSHOT"
go test -count=1 -run '^TestBrowserLoginFlow$' "$pkg"
git status --short docs/login-page.png
