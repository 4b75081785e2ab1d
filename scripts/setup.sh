#!/usr/bin/env bash
# Installs everything the tests and examples need on a fresh Debian 12 machine (idempotent).
# apt packages, a pinned cbindgen, and a Python virtual environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential pkg-config valgrind util-linux python3-venv cmake iproute2 libglib2.0-dev
  podman runc  # a real container engine for the host/worker protocol's Podman backend test
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad  # shmsink/shmsrc and fpsdisplaysink: benches/run.sh
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# C ABI: the pinned cbindgen CLI that generates include/shmpool.h (checked by scripts/test-c.sh).
CBINDGEN_VERSION=0.29.4
if ! "$HOME/.cargo/bin/cbindgen" --version 2>/dev/null | grep -x "cbindgen $CBINDGEN_VERSION" >/dev/null; then
  echo "setup: installing cbindgen $CBINDGEN_VERSION"
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet
fi

# Python: a local virtual environment with the test tools.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r bindings/python/requirements-dev.txt
