#!/usr/bin/env bash
# The demo: starts the example shop functions with a local nats-server (`functions dev`),
# places sample orders, and shows them flowing through every function.
#   DEMO_ORDERS=N      how many orders to place (default 12)
#   DEMO_EXIT=1        stop after showing the results instead of running until Ctrl-C
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

orders="${DEMO_ORDERS:-12}"
http="${JETFN_HTTP_ADDR:-127.0.0.1:8080}"
export JETFN_HTTP_ADDR="$http"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
  NATS_SERVER_BIN="$(./scripts/install-nats-server.sh | tail -n 1)"
  export NATS_SERVER_BIN
fi

echo "==> building the example functions"
cargo build --quiet -p functions --bins
# Where cargo put them: CARGO_TARGET_DIR when set, as scripts/test.sh honours it too.
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

echo "==> starting the functions (jetfn dev starts nats-server with data under .jetfn/)"
"$bin/functions" list
"$bin/functions" dev &
runtime=$!
trap 'kill -TERM $runtime 2>/dev/null; wait $runtime 2>/dev/null || true' EXIT

get() { python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://" + sys.argv[1], timeout=2) as r:
        print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode()); sys.exit(1)
except Exception as e:
    sys.exit(2)
PY
}
for _ in $(seq 1 300); do
  if get "$http/ready" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
get "$http/ready" >/dev/null || { echo "the runtime did not get ready"; exit 1; }

echo "==> asking the request function check_stock (core NATS request/reply on inventory.check)"
"$bin/check-stock" teapot
"$bin/check-stock" samovar || true

echo "==> placing $orders orders"
"$bin/place-orders" "$orders" 250

echo "==> waiting for every order to be notified"
for _ in $(seq 1 600); do
  done_count=$(get "$http/metrics" | awk '/^jetfn_messages_total\{function="send_notification",outcome="ack"\}/ {print $2}')
  if [[ "${done_count:-0}" -ge "$orders" ]]; then break; fi
  sleep 0.1
done

echo "==> http://$http/metrics (messages by function and outcome)"
get "$http/metrics" | grep -E '^jetfn_messages_total' | sort
echo
echo "Every order went shop.orders.created -> reserve_inventory -> charge_payment (gateway fails"
echo "one time in five: see the retries) -> send_notification, and audit_log recorded each event."
echo "Look around: curl http://$http/metrics | curl http://$http/functions | curl http://$http/ready"
if [[ "${DEMO_EXIT:-0}" == "1" ]]; then
  exit 0
fi
echo "The functions keep running; place more orders with $bin/place-orders. Ctrl-C stops."
wait $runtime
