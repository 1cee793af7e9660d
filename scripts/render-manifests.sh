#!/usr/bin/env bash
# Renders what deploy/ holds of the binary's own output, each with a clean environment (no
# JETFN_* override, no jetfn.toml):
#   deploy/k8s/functions.yaml            the example functions' `manifests --monitoring`
#   deploy/prometheus/jetfn-rules.yaml   `manifests --emit prometheus-rules` (the alerts)
#   deploy/grafana/jetfn.json            `manifests --emit grafana-dashboard`
# Tests (functions/tests/deploy.rs) fail when a file and the command's output differ: run this
# after changing a function's attributes or the renderer, and commit the result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --quiet --locked -p functions --bin functions
bin="${CARGO_TARGET_DIR:-$root/target}/debug/functions"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
render() {
  local out="$1"
  shift
  (cd "$work" && env -i "$bin" manifests "$@") >"$work/out"
  mkdir -p "$(dirname "$out")"
  mv "$work/out" "$out"
  echo "rendered $out"
}
render deploy/k8s/functions.yaml --image ghcr.io/jetfn/functions:0.1.0 --app shop --monitoring
render deploy/prometheus/jetfn-rules.yaml --emit prometheus-rules
render deploy/grafana/jetfn.json --emit grafana-dashboard
