# Sourced by test.sh: headless Chromium and playwright-core for
# TestBrowserLoginFlow (e2e/chromium_test.go), which fails under
# CI=true when either is missing.
apt_install chromium fonts-dejavu-core
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi
# npm ci when node_modules is missing or older than the lock file
if [ ! -f tests/browser/node_modules/playwright-core/package.json ] ||
	[ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
	(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
export CHROMIUM=/usr/bin/chromium
echo "chromium: $("$CHROMIUM" --version 2>/dev/null); node: $(node --version)"
