#!/usr/bin/env bash
# The JavaScript package's tests (js/, part of what CI runs): npm ci from the lockfile,
# Debian's chromium for the browser test where it is missing, fixtures made with the Python
# command line (small models, images, the Python runtime's results), then node:test.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
[ -x .venv/bin/vision-tasks ] || bash scripts/setup.sh
apt_install() {  # as root (CI): Debian's packages; otherwise say what is missing
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (apt-get install $*)" >&2
    return 1
  fi
}
command -v node >/dev/null || apt_install nodejs npm
[ -x /usr/bin/chromium ] || apt_install chromium || echo "no chromium: the browser test will be skipped" >&2
# onnxruntime-node's install script would download CUDA libraries from outside the registry;
# the CPU build ships inside the package, so no install script is needed.
(cd js && ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# The package as users get it: built (types/, dist/), packed, and the tarball installed into
# fresh consumer projects (js/test/consumers/*: their locks pin what they take from the
# registry), each built: TypeScript (strict tsc), Vite, esbuild; test/consumers.test.js runs them.
(cd js && node scripts/build.js && rm -rf test/consumers/.pack && mkdir test/consumers/.pack &&
  npm pack --ignore-scripts --silent --pack-destination test/consumers/.pack >/dev/null)
tarball="$PWD/$(ls js/test/consumers/.pack/vision-tasks-*.tgz)"
for consumer in node ts vite esbuild importmap; do
  (cd "js/test/consumers/$consumer" &&
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit --no-fund --loglevel=error &&
    npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error "$tarball")
done
echo "JavaScript tests: installs took $((SECONDS - start)) s"
(cd js/test/consumers/ts && node node_modules/typescript/bin/tsc -p .)
(cd js/test/consumers/vite && node node_modules/vite/bin/vite.js build)
(cd js/test/consumers/esbuild && node build.js)
rm -rf js/.fixtures
.venv/bin/python js/test/make_fixtures.py js/.fixtures
echo "JavaScript tests: installs, consumer builds and fixtures took $((SECONDS - start)) s"
cd js && VT_JS_FIXTURES="$PWD/.fixtures" VT_JS_CONSUMERS="$PWD/test/consumers" node --test test/*.test.js
