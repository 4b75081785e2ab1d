#!/usr/bin/env bash
# The published benchmark, one command: bash benches/run.sh [--quick]
#
# Installs what is missing (scripts/setup.sh, matplotlib into .venv), builds (release, with the
# iceoryx2 rows: feature iceoryx2-bench), then measures in one run on this machine:
#   1. criterion micro-benchmarks of the in-process paths (benches/exchange.rs)
#   2. two-process latency / throughput / CPU of shmpool (blocking, spin; 1 consumer, 2 broadcast,
#      2 work-queue) against futex ping-pong, pipe, Unix socket, TCP loopback and iceoryx2, for
#      64 B, 64 KiB, 1 MiB, 8 MiB and 1080p RGB payloads (`shmpool bench --compare`)
#   3. 1080p RGB frames through GStreamer: gst_to_pool -> pool_to_gst against shmsink -> shmsrc,
#      one and two consumers, repeated (20 times; 3 with --quick) to catch stalls; then the elements
#      shmpoolsink -> shmpoolsrc against shmsink -> shmsrc (bindings/gstreamer/benches/vs_shmsink.sh):
#      shmpoolsink -> 2 shmpoolsrc in as many repetitions (stalls counted), and fps, CPU, latency, copies with
#      videotestsrc into the proposed pool and with an appsrc that the sinks copy from
#   4. Python: 8 MiB ndarray handoff, shmpool vs multiprocessing.Queue vs shared_memory
#   5. host/worker: NerfBaselines' 33.2 MB frame echoed through pip `nerfbaselines` (installed into
#      a separate virtual environment, target/nerfbaselines-venv: never a test dependency) and
#      shmpool.rpc tcp, unix, shm copied in and shm in place
#   6. event loops: one-way hand-off of recv_async (tokio) and arecv (asyncio) vs blocking recv,
#      64 B and 8 MiB (examples/async_handoff.rs, bindings/python/benches/async_handoff.py)
#   7. named variables: publish -> reader latency of shmpool.Store vs a .npy file in /dev/shm and
#      multiprocessing.shared_memory + a lock, 64 B / 8 MiB / 64 MiB, one version per 40 ms
#   8. the worker farm: SSNet events (3 x 1 MiB planes) through the shmpool broker vs a pyzmq
#      Paranoid Pirate broker, 1/2/4 workers, tcp and ipc (crates/farm/bench/run.sh)
# and regenerates benches/RESULTS.md and benches/*.png (benches/report.py). Raw results stay in
# target/bench-results/. --quick: under 4 minutes once built; the full run: about 12 (2 vCPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
OUT=target/bench-results
rm -rf "$OUT"
mkdir -p "$OUT"
started=$(date +%s)
step() { echo "== [$(($(date +%s) - started)) s] $*"; }

step "setup (scripts/setup.sh, matplotlib)"
bash scripts/setup.sh
PY=.venv/bin/python
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check matplotlib

step "build"
cargo build --release --locked --quiet -p shmpool-cli --features iceoryx2-bench --bin shmpool
cargo build --release --locked --quiet -p shmpool --features tokio --example async_handoff
make -s build/c/gst_to_pool build/c/pool_to_gst build/c/shmsink_bench >/dev/null
cargo build --release --locked --quiet -p gst-plugin-shmpool --lib --example vs_shmsink
cargo build --release --locked --quiet -p shmpool-farm --bins
(cd bindings/python && VIRTUAL_ENV="$PWD/../../.venv" PATH="$PWD/../../.venv/bin:$PATH" \
  maturin develop --release --locked --quiet)
SHMPOOL=target/release/shmpool
build_done=$(date +%s)

{
  echo "{\"cpu_model\": \"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)\","
  echo " \"cores\": $(nproc), \"kernel\": \"$(uname -r)\", \"os\": \"$(. /etc/os-release && echo "$PRETTY_NAME")\","
  echo " \"date\": \"$(date -u +%Y-%m-%dT%H:%MZ)\", \"quick\": $([ $QUICK = 1 ] && echo true || echo false),"
  echo " \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +changes)\","
  echo " \"load_before\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} >"$OUT/machine.json"

step "1/8 criterion micro-benchmarks (benches/exchange.rs)"
rm -rf target/criterion
if [ $QUICK = 1 ]; then export SHMPOOL_BENCH_QUICK=1; fi
cargo bench --locked --quiet -p shmpool --bench exchange -- --noplot 2>&1 | grep -E "time:" | sed 's/^/  /' || true
unset SHMPOOL_BENCH_QUICK

step "2/8 two processes: shmpool vs futex, pipe, Unix socket, TCP, iceoryx2"
quick_flag=(); [ $QUICK = 1 ] && quick_flag=(--quick)
"$SHMPOOL" bench --compare --rounds 3 --json "${quick_flag[@]}" >"$OUT/ipc.json" 2> >(tee "$OUT/ipc.log" >&2)

step "3/8 GStreamer 1080p RGB: gst_to_pool -> pool_to_gst vs shmsink -> shmsrc"
REPS=20; FRAMES=600
[ $QUICK = 1 ] && { REPS=3; FRAMES=300; }
PATTERN=black  # a cheap source, so that the transports, not videotestsrc's drawing, set the pace
TIMEOUT_S=20
GST_DIR=$(mktemp -d "${SHMPOOL_DIR:-/dev/shm}/shmpool-gstbench-XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$GST_DIR"' EXIT
GST_OUT="$OUT/gst.jsonl"
: >"$GST_OUT"
record() { # system consumers rep fps stalled
  echo "{\"system\": \"$1\", \"consumers\": $2, \"rep\": $3, \"fps\": $4, \"stalled\": $5}" >>"$GST_OUT"
}
fps_of() { sed -n 's/.*: \([0-9.]*\) fps.*/\1/p' <<<"$1" | head -n1; }
run_pool() { # consumers rep
  local name="bench-$1-$2" pids=() out status=0
  for _ in $(seq "$1"); do
    timeout $((TIMEOUT_S + 15)) build/c/pool_to_gst "$name" --dir "$GST_DIR" --frames "$FRAMES" >/dev/null &
    pids+=($!)
  done
  out=$(timeout "$TIMEOUT_S" build/c/gst_to_pool "$name" --dir "$GST_DIR" --frames "$FRAMES" --consumers "$1" \
    --pattern "$PATTERN" 2>&1) || status=$?
  for p in "${pids[@]}"; do wait "$p" || status=$((status ? status : 1)); done
  if [ "$status" = 124 ] || [ -z "$(fps_of "$out")" ]; then
    echo "  shmpool   x$1 run $2: STALL or failure ($out)"
    record shmpool "$1" "$2" 0 true
  else
    echo "  shmpool   x$1 run $2: $(fps_of "$out") fps"
    record shmpool "$1" "$2" "$(fps_of "$out")" false
  fi
}
run_shmsink() { # consumers rep
  local socket="$GST_DIR/shmsink-$1-$2" pids=() out producer status=0
  build/c/shmsink_bench "$socket" --frames "$FRAMES" --consumers "$1" --pattern "$PATTERN" \
    --timeout-s "$TIMEOUT_S" >"$GST_DIR/out" 2>&1 &
  producer=$!
  for _ in $(seq 500); do [ -S "$socket" ] && break; sleep 0.01; done
  for _ in $(seq "$1"); do
    timeout $((TIMEOUT_S + 15)) gst-launch-1.0 -q shmsrc socket-path="$socket" ! fakesink sync=false \
      >/dev/null 2>&1 &
    pids+=($!)
  done
  wait "$producer" || status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  out=$(cat "$GST_DIR/out")
  if [ "$status" != 0 ] || [ -z "$(fps_of "$out")" ]; then
    echo "  shmsink   x$1 run $2: STALL or failure ($out)"
    record shmsink "$1" "$2" 0 true
  else
    echo "  shmsink   x$1 run $2: $(fps_of "$out") fps"
    record shmsink "$1" "$2" "$(fps_of "$out")" false
  fi
}
for rep in $(seq "$REPS"); do
  # The source alone, timed the same way, in every repetition: the ceiling of both systems.
  base=$(build/c/gst_to_pool --baseline --frames "$FRAMES" --pattern "$PATTERN")
  echo "  source alone    run $rep: $(fps_of "$base") fps"
  record source-only 0 "$rep" "$(fps_of "$base")" false
  for consumers in 1 2; do
    run_pool "$consumers" "$rep"
    run_shmsink "$consumers" "$rep"
  done
done

# The elements: stalls over the same repetitions (2 consumers; shmsink's are counted above), then
# the cases side by side.
GST_PLUGIN_DIR=$(mktemp -d)
ln -s "$PWD/target/release/libgstshmpool.so" "$GST_PLUGIN_DIR/"
elements() {
  GST_PLUGIN_PATH="$GST_PLUGIN_DIR" GST_REGISTRY="$GST_PLUGIN_DIR/registry.bin" \
    target/release/examples/vs_shmsink --frames "$FRAMES" --deadline-s "$TIMEOUT_S" "$@"
}
elements --reps "$REPS" --cases pool --consumers 2 --systems shmpool --jsonl "$OUT/gst-elements-stalls.jsonl" \
  >"$OUT/gst-elements-stalls.txt" 2>"$OUT/gst-elements-stalls.log" || true
sed -n '/^medians/,$p' "$OUT/gst-elements-stalls.txt" | sed 's/^/  /'
elements --reps "$([ $QUICK = 1 ] && echo 1 || echo 3)" --cases pool,copy --consumers 1,2 \
  --jsonl "$OUT/gst-elements.jsonl" >"$OUT/gst-elements.txt" 2>"$OUT/gst-elements.log" || true
sed -n '/^medians/,$p' "$OUT/gst-elements.txt" | sed 's/^/  /'
rm -rf "$GST_PLUGIN_DIR"

step "4/8 Python: 8 MiB ndarray handoff (bindings/python/benches/handoff.py)"
py_args=(--json); [ $QUICK = 1 ] && py_args+=(--frames 100 --queue-frames 20)
"$PY" bindings/python/benches/handoff.py "${py_args[@]}" >"$OUT/python.txt"
sed -n '1,/^{/p' "$OUT/python.txt" | sed '$d' | sed 's/^/  /'

step "5/8 host/worker: NerfBaselines' frame (bindings/python/benches/nerfbaselines_echo.py)"
NB_VENV=target/nerfbaselines-venv
[ -x "$NB_VENV/bin/python" ] || python3 -m venv "$NB_VENV"
"$NB_VENV/bin/python" -c "import nerfbaselines, numpy" 2>/dev/null ||
  "$NB_VENV/bin/python" -m pip install -q --disable-pip-version-check "nerfbaselines==1.2.12" numpy
nb_rounds=50; [ $QUICK = 1 ] && nb_rounds=15
"$PY" bindings/python/benches/nerfbaselines_echo.py --nerfbaselines-python "$NB_VENV/bin/python" \
  --rounds "$nb_rounds" --json "$OUT/nerfbaselines.json" 2>/dev/null | tee "$OUT/nerfbaselines.txt" | sed 's/^/  /'

step "6/8 event loops: one-way hand-off, tokio and asyncio vs blocking recv"
async_args=(); [ $QUICK = 1 ] && async_args=(--messages 300 --rounds 3)
target/release/examples/async_handoff "${async_args[@]}" --json "$OUT/async_rust.json" | sed 's/^/  /'
"$PY" bindings/python/benches/async_handoff.py "${async_args[@]}" --json "$OUT/async_python.json" | sed 's/^/  /'

step "7/8 named variables: publish -> reader latency (bindings/python/benches/store_latency.py)"
store_args=(--json); [ $QUICK = 1 ] && store_args+=(--quick)
"$PY" bindings/python/benches/store_latency.py "${store_args[@]}" >"$OUT/store.json"

step "8/8 worker farm: SSNet events, shmpool broker vs pyzmq Paranoid Pirate (crates/farm/bench/run.sh)"
farm_args=(500 3); [ $QUICK = 1 ] && farm_args=(200 1)
for transport in tcp ipc; do
  TRANSPORT=$transport PYTHON="$PY" crates/farm/bench/run.sh "${farm_args[@]}" | tee -a "$OUT/farm.txt" | sed 's/^/  /'
done

step "report"
measure_s=$(($(date +%s) - build_done))
"$PY" benches/report.py "$OUT" --measure-seconds "$measure_s"
step "done: benches/RESULTS.md (measuring took ${measure_s} s after the build)"
