#!/usr/bin/env bash
# The AsyncAPI documents, checked with the official parser (@asyncapi/parser, pinned in
# scripts/install-asyncapi.sh, installed into .tools/asyncapi on first use): deploy/asyncapi.yaml
# as checked in and a fresh render of the example functions must have no diagnostic of error
# severity; a broken copy must be rejected (so a validator that passes everything fails here).
#   JETFN_BIN=PATH      the functions binary to render with (default: built here with cargo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

parser="$(./scripts/install-asyncapi.sh | tail -n 1)"
bin="${JETFN_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet --locked -p functions --bin functions
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/functions"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && env -i "$bin" asyncapi) >"$work/rendered.yaml"

echo "==> asyncapi: @asyncapi/parser on deploy/asyncapi.yaml and a fresh render"
node scripts/validate-asyncapi.mjs "$parser" deploy/asyncapi.yaml "$work/rendered.yaml"

sed 's/action: receive/action: consume/' deploy/asyncapi.yaml >"$work/broken.yaml"
if node scripts/validate-asyncapi.mjs "$parser" "$work/broken.yaml" >/dev/null; then
  echo "validate-asyncapi: a document with an invalid operation action passed the parser" >&2
  exit 1
fi
