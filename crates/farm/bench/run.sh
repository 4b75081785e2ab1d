#!/bin/sh
# The farm benchmark: SSNet events (3 planes of (1,1,512,512) float32 + names + metadata; the
# worker returns one plane), 1 client and 1, 2, 4 workers, on this host:
#   shmpool farm (shmpool-broker, shmpool-farm-worker, shmpool-farm-client; shared memory on)
#   vs a Paranoid Pirate broker in pyzmq with copy=False frames (ppp.py, the SSNet way).
# CPU per event: user + system time of every process (broker, workers, client) while the client
# runs, divided by the events. Two-host variant: two_hosts.sh.
# Usage: [TRANSPORT=tcp|ipc] crates/farm/bench/run.sh [EVENTS [ROUNDS]]   (rounds of 1, 2, 4
# workers, interleaved so that a change of the machine's load hits every configuration alike)   (needs `cargo build --release -p shmpool-farm` and a
# Python with pyzmq and numpy: $PYTHON, default the workspace .venv). TRANSPORT (default tcp) is
# used by both systems alike: loopback TCP, or ipc:// sockets in a private directory. $BIN: where
# the farm's binaries are (default target/release), e.g. to compare two builds.
set -eu
cd "$(dirname "$0")/../../.."
EVENTS=${1:-300}
ROUNDS=${2:-1}
BIN=${BIN:-target/release}
TRANSPORT=${TRANSPORT:-tcp}
PYTHON=${PYTHON:-.venv/bin/python}
DIR=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
start() { "$@" >/dev/null & PIDS="$PIDS $!"; }
# Clock ticks (user + system) used so far by the background processes.
ticks() { t=0; for p in $PIDS; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# One table row from a client's JSON line ($3) and the servers' ticks during the run ($4).
row() {
    "$PYTHON" -c "import json,os,sys; r=json.loads(sys.argv[3]); hz=os.sysconf('SC_CLK_TCK')
cpu=(r['cpu_s']+int(sys.argv[4])/hz)/r['events']*1e3
print(f\"| {sys.argv[1]} | {sys.argv[2]} | {r['events_per_s']:.0f} | {r['p50_us']/1e3:.2f} | {r['p99_us']/1e3:.2f} | {cpu:.2f} |\")" "$@"
}
# The endpoint of port $1 (tcp) or of a socket file named $1 (ipc).
endpoint() {
    case $TRANSPORT in
        tcp) echo "tcp://127.0.0.1:$1" ;;
        ipc) echo "ipc://$DIR/$1.ipc" ;;
        *) echo "TRANSPORT must be tcp or ipc, not $TRANSPORT" >&2; exit 2 ;;
    esac
}
stop_all() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=""; }

EP=$(endpoint 5701); FE=$(endpoint 5702); BE=$(endpoint 5703)
echo "transport: $TRANSPORT; load average: $(cat /proc/loadavg)"
echo "| system | workers | events/s | p50 ms | p99 ms | CPU ms/event |"
echo "| --- | --- | --- | --- | --- | --- |"
for W in $(for r in $(seq $ROUNDS); do echo 1 2 4; done); do
    start $BIN/shmpool-broker --bind $EP --shm-dir "$DIR"
    for i in $(seq $W); do start $BIN/shmpool-farm-worker --connect $EP --service ssnet --last-only --shm-dir "$DIR"; done
    $BIN/shmpool-farm-client --connect $EP --service ssnet --events 1 --last-only --wait-workers $W --no-shm >/dev/null
    T0=$(ticks)
    R=$($BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 \
        --last-only --shm-dir "$DIR")
    row "shmpool farm" $W "$R" $(($(ticks) - T0))
    T0=$(ticks)
    R=$($BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 \
        --last-only --no-shm)
    row "shmpool farm, shared memory off" $W "$R" $(($(ticks) - T0))
    stop_all

    start "$PYTHON" crates/farm/bench/ppp.py broker $FE $BE
    for i in $(seq $W); do start "$PYTHON" crates/farm/bench/ppp.py worker $BE "w$i"; done
    T0=$(ticks)
    R=$("$PYTHON" crates/farm/bench/ppp.py client $FE "$EVENTS" 3 512 $W)
    row "pyzmq Paranoid Pirate (copy=False)" $W "$R" $(($(ticks) - T0))
    stop_all
done
echo "load average: $(cat /proc/loadavg)"
