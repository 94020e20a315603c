#!/usr/bin/env bash
# One-time setup on a Debian machine (as root): the Docker engine, an image registry on
# 127.0.0.1:5050, the locally built base image, Virtuoso (for one test), then the npm packages
# and the TypeScript build. Safe to run again; it says what it does as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/infra.sh up
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages (better-sqlite3 compiles from source: 1-2 min)"
  npm ci
else
  echo "setup: npm packages already installed; building"
  npm run build
fi
echo "setup: done. Demo: npm start    Tests: npm test"
