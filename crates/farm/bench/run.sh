#!/bin/sh
# The farm benchmark: SSNet events (3 planes of (1,1,512,512) float32 + names + metadata; the
# worker returns one plane), 1 client and 1, 2, 4 workers, on this host:
#   shmpool farm (shmpool-broker, shmpool-farm-worker, shmpool-farm-client; shared memory on)
#   vs a Paranoid Pirate broker in pyzmq with copy=False frames (ppp.py, the SSNet way).
# Usage: crates/farm/bench/run.sh [EVENTS]   (needs `cargo build --release -p shmpool-farm` and a
# Python with pyzmq and numpy: $PYTHON, default the workspace .venv)
set -eu
cd "$(dirname "$0")/../../.."
EVENTS=${1:-300}
BIN=target/release
PYTHON=${PYTHON:-.venv/bin/python}
DIR=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
start() { "$@" >/dev/null & PIDS="$PIDS $!"; }
# One table row from a client's JSON line on stdin.
row() { "$PYTHON" -c "import json,sys; r=json.load(sys.stdin); print(f\"| $1 | $2 | {r['events_per_s']:.0f} | {r['p50_us']/1e3:.2f} | {r['p99_us']/1e3:.2f} |\")"; }
stop_all() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=""; }

echo "| system | workers | events/s | p50 ms | p99 ms |"
echo "| --- | --- | --- | --- | --- |"
for W in 1 2 4; do
    EP=tcp://127.0.0.1:5701
    start $BIN/shmpool-broker --bind $EP --shm-dir "$DIR"
    for i in $(seq $W); do start $BIN/shmpool-farm-worker --connect $EP --service ssnet --last-only --shm-dir "$DIR"; done
    R=$($BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 \
        --last-only --wait-workers $W --shm-dir "$DIR")
    echo "$R" | row "shmpool farm" $W
    R=$($BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 \
        --last-only --wait-workers $W --no-shm)
    echo "$R" | row "shmpool farm, shared memory off" $W
    stop_all

    FE=tcp://127.0.0.1:5702; BE=tcp://127.0.0.1:5703
    start "$PYTHON" crates/farm/bench/ppp.py broker $FE $BE
    for i in $(seq $W); do start "$PYTHON" crates/farm/bench/ppp.py worker $BE "w$i"; done
    R=$("$PYTHON" crates/farm/bench/ppp.py client $FE "$EVENTS" 3 512 $W)
    echo "$R" | row "pyzmq Paranoid Pirate (copy=False)" $W
    stop_all
done
