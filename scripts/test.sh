#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints (warnings denied), unit, UI (trybuild),
# doc and integration tests against a real nats-server and a real Prometheus (both installed
# into .tools/ when missing), the offline checks of deploy/ (scripts/validate-deploy.sh) and of
# the AsyncAPI documents (scripts/validate-asyncapi.sh; needs Node.js with npm).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
  NATS_SERVER_BIN="$(./scripts/install-nats-server.sh | tail -n 1)"
  export NATS_SERVER_BIN
fi
echo "==> nats-server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

# prometheus and promtool (Debian's package, unpacked into .tools/) and Python's
# prometheus-client, for the monitoring tests; the tests find them under .tools/.
tools="$(./scripts/install-prometheus.sh | tail -n 1)"
echo "==> prometheus: $("$tools/prometheus" --version 2>&1 | head -n 1)"

# The multi-host partition tests (functions/tests/partitions.rs) make network namespaces and
# iptables DROP rules: as root, install iptables when it is missing (they fail in one line
# saying what they need otherwise).
if [[ "$(id -u)" == 0 ]] && ! command -v iptables >/dev/null; then
  echo "==> installing iptables (apt) for the partition tests"
  (apt-get install -y -qq iptables >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq iptables >/dev/null; })
fi

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> no import cycles between the runtime's top-level modules"
# A copy of the workplace's shared/tools/module_cycles.py, so a clone alone can run it.
python3 scripts/module_cycles.py runtime/src

echo "==> cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# What a user's crate compiles: jetfn on its default features, warnings denied too.
cargo clippy -p jetfn --locked -- -D warnings

echo "==> deploy/: Dockerfile, manifests and compose stack, checked offline"
# The same build of the binary that the tests use, so nothing is compiled twice.
cargo build --workspace --all-features --locked --bin functions
JETFN_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/functions" ./scripts/validate-deploy.sh

echo "==> deploy/asyncapi.yaml and a fresh render, checked with the official AsyncAPI parser"
JETFN_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/functions" ./scripts/validate-asyncapi.sh

echo "==> cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-features --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary (unit, integration, UI, doc).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
