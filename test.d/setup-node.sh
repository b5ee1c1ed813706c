# Sourced by test.sh: Node.js and the pinned FeathersJS client for
# TestFeathersClient (tests/feathers, versions locked in package-lock.json).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi
if [ ! -d tests/feathers/node_modules ]; then
	(cd tests/feathers && npm ci --no-audit --no-fund --loglevel=error)
fi
