# Sourced by test.sh: Node.js and the pinned FeathersJS client for
# TestFeathersClient (tests/feathers, versions locked in package-lock.json).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi
# install when missing, or when the lock file changed since the last install
if [ ! -e tests/feathers/node_modules/.package-lock.json ] ||
	[ tests/feathers/package-lock.json -nt tests/feathers/node_modules/.package-lock.json ]; then
	(cd tests/feathers && npm ci --no-audit --no-fund --loglevel=error)
fi
