#!/usr/bin/env bash
# Renders deploy/asyncapi.yaml: the example functions' `asyncapi` document, run with a clean
# environment (no JETFN_* override, no jetfn.toml). A test (functions/tests/asyncapi.rs) fails
# when the file and the command's output differ: run this after changing a function's subject or
# payload type, or the renderer, and commit the result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --quiet --locked -p functions --bin functions
bin="${CARGO_TARGET_DIR:-$root/target}/debug/functions"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && env -i "$bin" asyncapi) >"$work/asyncapi.yaml"
mv "$work/asyncapi.yaml" deploy/asyncapi.yaml
echo "rendered deploy/asyncapi.yaml"
