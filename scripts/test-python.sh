#!/usr/bin/env bash
# Python bindings: build them into .venv (maturin develop --release), build the Rust peer of the
# cross-language tests, run pytest. Called by scripts/test.sh after setup.sh and cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "test-python: no .venv; run scripts/setup.sh first" >&2
  exit 1
fi
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

echo "-- building the bindings (maturin develop --release)"
(cd bindings/python && maturin develop --release --locked --quiet)

echo "-- building the Rust peer (examples/py_peer.rs)"
cargo build --locked --quiet --example py_peer
export SHMPOOL_PY_PEER="$PWD/target/debug/examples/py_peer"

echo "-- pytest bindings/python/tests"
python -m pytest -q -p no:cacheprovider bindings/python/tests
