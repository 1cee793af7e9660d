#!/usr/bin/env bash
# Renders deploy/k8s/functions.yaml: the example functions' `manifests`, run with a clean
# environment (no JETFN_* override, no jetfn.toml). A test (functions/tests/deploy.rs) fails when
# the file and the command's output differ: run this after changing a function's attributes or
# the renderer, and commit the result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --quiet --locked -p functions --bin functions
bin="${CARGO_TARGET_DIR:-$root/target}/debug/functions"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && env -i "$bin" manifests --image ghcr.io/jetfn/functions:0.1.0 --app shop) \
  >"$work/functions.yaml"
mkdir -p deploy/k8s
mv "$work/functions.yaml" deploy/k8s/functions.yaml
echo "rendered deploy/k8s/functions.yaml"
