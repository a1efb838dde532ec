#!/usr/bin/env bash
# Builds the browser pages' third-party assets: installs the npm packages pinned in
# server/web/package-lock.json and copies what the pages load into server/web/static/vendor/.
# Nothing minified from third parties is committed; this step makes it.
set -euo pipefail
cd "$(dirname "$0")/../server/web"
npm ci --no-audit --no-fund --loglevel=error
mkdir -p static/vendor
cp node_modules/socket.io-client/dist/socket.io.esm.min.js static/vendor/
cp node_modules/socket.io-client/dist/socket.io.esm.min.js.map static/vendor/
echo "web assets built in server/web/static/vendor"
