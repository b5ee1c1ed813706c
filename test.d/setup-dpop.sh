# Sourced by test.sh: the pinned `dpop` npm package (panva's RFC 9449
# client) and the FeathersJS v5 client for TestDPoPInterop and
# TestDPoPFeathersHook (tests/dpop, versions locked in package-lock.json).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi
# install when missing, or when the lock file changed since the last install
if [ ! -e tests/dpop/node_modules/.package-lock.json ] ||
	[ tests/dpop/package-lock.json -nt tests/dpop/node_modules/.package-lock.json ]; then
	(cd tests/dpop && npm ci --no-audit --no-fund --loglevel=error)
fi
