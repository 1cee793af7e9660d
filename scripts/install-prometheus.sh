#!/usr/bin/env bash
# Installs what the monitoring tests need into .tools/ (ignored by git), when it is not there yet:
#   - prometheus and promtool, pinned to Debian's package (unpacked with `apt-get download` and
#     `dpkg -x` into .tools/prometheus: no system service is installed or started), linked from
#     .tools/bin;
#   - a venv .tools/venv-prometheus with the pinned PyPI `prometheus-client`, whose parser reads
#     /metrics as Prometheus's own Python client does.
# Needs Debian's apt (root, or package lists already fetched) and Python with pip. Idempotent and
# quick once installed. Prints the directory holding prometheus and promtool on its last line.
set -euo pipefail

VERSION="2.42.0+ds-5+b6"           # Debian bookworm's prometheus (apt-cache policy prometheus)
PYTHON_REQUIREMENTS=(prometheus-client==0.21.1)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
dest="$tools/prometheus"
bin="$tools/bin"

if [[ "$(cat "$dest/.installed" 2>/dev/null)" != "$VERSION" ]]; then
  command -v apt-get >/dev/null 2>&1 || {
    echo "install-prometheus: apt-get is required (Debian's prometheus package $VERSION)" >&2
    exit 1
  }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download "prometheus=$VERSION" >&2 2>"$work/err"); then
    # No package lists yet (a fresh machine): fetch them once, then try again.
    echo "install-prometheus: apt-get update" >&2
    if [[ "$(id -u)" == 0 ]]; then apt-get update -qq >&2; else sudo apt-get update -qq >&2; fi
    (cd "$work" && apt-get download "prometheus=$VERSION" >&2) || {
      cat "$work/err" >&2
      echo "install-prometheus: cannot download Debian's prometheus=$VERSION" \
        "(apt-cache policy prometheus lists what apt offers)" >&2
      exit 1
    }
  fi
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg -x "$work"/prometheus_*.deb "$dest"
  echo "$VERSION" >"$dest/.installed"
fi
mkdir -p "$bin"
for tool in prometheus promtool; do
  ln -sf "$dest/usr/bin/$tool" "$bin/$tool"
done

venv="$tools/venv-prometheus"
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "${PYTHON_REQUIREMENTS[*]}" ]]; then
  python="$(command -v python3 || command -v python || true)"
  [[ -n "$python" ]] || { echo "install-prometheus: python3 is required" >&2; exit 1; }
  echo "install-prometheus: installing ${PYTHON_REQUIREMENTS[*]} into .tools/venv-prometheus" >&2
  "$python" -m venv --clear "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}" >&2
  echo "${PYTHON_REQUIREMENTS[*]}" >"$venv/.installed"
fi
"$bin/promtool" --version 2>&1 | head -n 1 >&2
echo "$bin"
