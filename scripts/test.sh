#!/usr/bin/env bash
# The one command that runs every test: installs what is missing, then Rust, C/C++ and Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

bash scripts/setup.sh
# Tests that would skip for want of a tool (pyzmq, ip, unshare, root) fail instead: setup.sh
# installed everything.
export SHMPOOL_TEST_STRICT=1
export SHMPOOL_PYTHON="$PWD/.venv/bin/python"

echo "== Rust: format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The iceoryx2 rows of the benchmark (benches/run.sh) are behind a feature: lint them too so they
# cannot rot (about a minute from scratch on 2 vCPUs).
cargo clippy --locked -p shmpool-cli --features iceoryx2-bench -- -D warnings
# The core's optional tokio support (recv_async/acquire_async).
cargo clippy --locked -p shmpool --all-targets --features tokio -- -D warnings

echo "== Rust: the core crate depends on nothing but what the core needs"
core_deps=$(cargo tree --locked -p shmpool -e normal --prefix none | sed 's/ .*//' | sort -u)
echo "$core_deps" | tr '\n' ' '; echo
if echo "$core_deps" | grep -Ex 'clap|serde|serde_json|hmac|sha2|iceoryx2|pyo3|shmpool-protocol'; then
  echo "the core crate pulls in a dependency of another layer" >&2
  exit 1
fi
echo "== Rust: the core crate packages for crates.io (metadata, no unversioned path dependency)"
cargo package --locked -p shmpool --quiet

echo "== Rust: tests (every crate of the workspace but the Python module, which pytest runs)"
cargo test --locked
cargo test --locked -p shmpool --features tokio --test tokio
cargo test --locked -p shmpool --features tokio --doc async_tokio
# The store's JSON pipeline definitions are behind the core's feature `spec` (the bindings enable it).
cargo test --locked -p shmpool --features spec --lib store::spec
cargo test --locked -p shmpool --features spec --doc store::spec

echo "== Rust: model checking of the slot state machine (loom)"
LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked --release --test loom

for part in scripts/test-*.sh; do
  [ -e "$part" ] || continue
  echo "== $(basename "$part" .sh)"
  bash "$part"
done
echo "== all tests passed"
