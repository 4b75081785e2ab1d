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

# One build: the wheel a user would install (manylinux tag checked by maturin's own audit),
# installed into .venv for the tests and into a fresh environment with no Rust toolchain.
WHEELS=$(mktemp -d /tmp/shmpool-wheels.XXXXXX)
trap 'rm -rf "$WHEELS"' EXIT
echo "-- building the wheel (maturin build --release)"
maturin build --release --locked --quiet -m bindings/python/Cargo.toml -o "$WHEELS"
wheel=$(ls "$WHEELS"/shmpool-*.whl)
echo "   $(basename "$wheel")"
case "$(basename "$wheel")" in
  *manylinux_*) ;;
  *) echo "test-python: the wheel has no manylinux tag" >&2; exit 1 ;;
esac
python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"

echo "-- the wheel in a fresh virtual environment, no Rust toolchain on PATH"
python -m venv "$WHEELS/venv"
"$WHEELS/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
env -i PATH="$WHEELS/venv/bin:/usr/bin:/bin" HOME="$WHEELS" bash -c '
  set -euo pipefail
  ! command -v cargo && ! command -v rustc || { echo "a Rust toolchain is on PATH"; exit 1; }
  dir=$(mktemp -d) && trap "rm -rf $dir" EXIT
  python - "$dir" <<PY
import sys, shmpool
with shmpool.Pool.create("wheel", slots=2, slot_size=4096, directory=sys.argv[1]) as pool:
    c = pool.consumer()
    wb = pool.producer().acquire(timeout=1)
    memoryview(wb)[:3] = b"abc"
    wb.publish(3)
    assert bytes(c.recv(timeout=1)) == b"abc"
    print("wheel works:", shmpool.__version__, shmpool.__file__)
PY
  python -m shmpool --dir "$dir" ls
'

echo "-- type stubs match the module (mypy.stubtest)"
# (--ignore-disjoint-bases: PEP 800's @disjoint_base marker is not in the typing module of 3.11.)
python -m mypy.stubtest shmpool._shmpool --ignore-disjoint-bases --allowlist bindings/python/stubtest-allowlist.txt

echo "-- building the Rust peer (examples/py_peer.rs), the GStreamer plugin, the farm's programs"
cargo build --locked --quiet --example py_peer
cargo build --locked --quiet -p gst-plugin-shmpool
cargo build --locked --quiet -p shmpool-farm --bins
export SHMPOOL_PY_PEER="$PWD/target/debug/examples/py_peer"
export SHMPOOL_FARM_BIN="$PWD/target/debug"
export SHMPOOL_GST_PLUGIN_DIR="$PWD/target/debug"

echo "-- pytest bindings/python/tests"
python -m pytest -q -p no:cacheprovider bindings/python/tests
