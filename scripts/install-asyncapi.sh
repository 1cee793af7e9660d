#!/usr/bin/env bash
# Installs the pinned official AsyncAPI parser (npm @asyncapi/parser) into .tools/asyncapi
# (ignored by git) when it is not there yet. Needs Node.js 18+ with npm.
# Prints the directory of the install (its node_modules) on its last line.
set -euo pipefail

VERSION="3.6.6"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/asyncapi"

if [[ "$(cat "$dest/.installed" 2>/dev/null)" == "@asyncapi/parser@$VERSION" ]]; then
  echo "$dest"
  exit 0
fi
command -v npm >/dev/null 2>&1 || {
  echo "install-asyncapi: npm (Node.js 18+) is required to install @asyncapi/parser@$VERSION" >&2
  exit 1
}
echo "install-asyncapi: installing @asyncapi/parser@$VERSION into .tools/asyncapi" >&2
mkdir -p "$dest"
npm install --prefix "$dest" --no-save --no-audit --no-fund --loglevel=error \
  "@asyncapi/parser@$VERSION" >&2
echo "@asyncapi/parser@$VERSION" >"$dest/.installed"
echo "$dest"
