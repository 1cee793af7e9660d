#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints (warnings denied), unit, UI (trybuild),
# doc and integration tests against a real nats-server (installed into .tools/ when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
  NATS_SERVER_BIN="$(./scripts/install-nats-server.sh | tail -n 1)"
  export NATS_SERVER_BIN
fi
echo "==> nats-server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --all-features --locked
