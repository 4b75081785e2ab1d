#!/usr/bin/env bash
# Benchmark (not a test): the acquire -> publish -> recv -> release loop through the C ABI
# (examples/c/bench_loop.c) against the same loop in Rust (examples/bench_loop.rs), interleaved in
# the same run; then the GStreamer appsink example's fps (zero-copy slot buffer pool, and --copy)
# against `videotestsrc ! fakesink`, each with a Rust consumer reading the pool.
# Usage: scripts/bench-c.sh [ITERATIONS] [PAIRS] [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
ITER=${1:-500000}
PAIRS=${2:-5}
FRAMES=${3:-300}
BUILD=build/c
mkdir -p "$BUILD"
cargo build --release --quiet -p shmpool-c
cargo build --release --quiet -p shmpool --example bench_loop
gcc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/bench_loop.c -o "$BUILD/bench_loop" \
  target/release/libshmpool.a -lpthread -ldl -lm
c_best=() ; r_best=()
for _ in $(seq "$PAIRS"); do
  c=$("$BUILD/bench_loop" "$ITER" 5); echo "$c"
  r=$(target/release/examples/bench_loop "$ITER" 5); echo "$r"
  c_best+=("$(sed -E 's/.*best ([0-9.]+) ns.*/\1/' <<<"$c")")
  r_best+=("$(sed -E 's/.*best ([0-9.]+) ns.*/\1/' <<<"$r")")
done
python3 - "${c_best[*]}" "${r_best[*]}" <<'PY'
import sys, statistics
c = [float(x) for x in sys.argv[1].split()]
r = [float(x) for x in sys.argv[2].split()]
print(f"C loop:    min {min(c):.1f} ns/iter, median of bests {statistics.median(c):.1f}")
print(f"Rust loop: min {min(r):.1f} ns/iter, median of bests {statistics.median(r):.1f}")
print(f"C / Rust:  {min(c)/min(r):.3f} (min), {statistics.median(c)/statistics.median(r):.3f} (median)")
PY

if pkg-config --exists gstreamer-app-1.0 gstreamer-video-1.0; then
  echo "== GStreamer 1080p RGB, $FRAMES frames (timed from PLAYING to end-of-stream, same harness)"
  make -s BUILD="$BUILD" "$BUILD/gst_to_pool" >/dev/null
  cargo build --release --quiet --example rust_consumer
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  for _ in 1 2 3; do
    "$BUILD/gst_to_pool" --baseline --frames "$FRAMES"
    target/release/examples/rust_consumer bench-gst --dir "$dir" --quiet --count "$FRAMES" >/dev/null &
    consumer=$!
    "$BUILD/gst_to_pool" bench-gst --dir "$dir" --frames "$FRAMES" --consumers 1
    wait "$consumer"
    target/release/examples/rust_consumer bench-gst --dir "$dir" --quiet --count "$FRAMES" >/dev/null &
    consumer=$!
    "$BUILD/gst_to_pool" bench-gst --dir "$dir" --frames "$FRAMES" --consumers 1 --copy
    wait "$consumer"
  done
fi
