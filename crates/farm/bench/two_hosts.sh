#!/bin/sh
# The farm benchmark across two hosts: network namespaces A and B joined by a veth pair
# (10.232.0.1, 10.232.0.2), each process in a mount namespace of its own with a fresh tmpfs on
# /dev/shm (as tests/two_hosts.rs). Two placements:
#   across: the broker and the workers run on A, the client on B: every array crosses the link
#     as bytes, both ways;
#   broker elsewhere: the broker runs on A, the workers and the client on B, where they share a
#     pool directory (a tmpfs directory of B's: shmpool peers prove it as their site, and only
#     descriptors cross the link; pyzmq sends everything through A).
# SSNet events (3 planes of (1,1,512,512) float32 + names + metadata; the worker returns one
# plane), 1 client, 1/2/4 workers:
#   shmpool farm (shmpool-broker, shmpool-farm-worker, shmpool-farm-client)
#   vs the pyzmq Paranoid Pirate baseline (ppp.py, copy=False frames).
# CPU per event: user + system time of every process (broker, workers, client) while the client
# runs, divided by the events. The namespaces are made here and removed on exit.
# Usage (root, ip, unshare): crates/farm/bench/two_hosts.sh [EVENTS]
# (needs `cargo build --release -p shmpool-farm` and a Python with pyzmq and numpy: $PYTHON)
set -eu
cd "$(dirname "$0")/../../.."
EVENTS=${1:-300}
BIN=$(pwd)/target/release
PYTHON=${PYTHON:-$(pwd)/.venv/bin/python}
PPP=$(pwd)/crates/farm/bench/ppp.py
A=shmbench-a-$$ B=shmbench-b-$$ VA=sba$$ VB=sbb$$
ADDR=10.232.0.1
PIDS=""
stop_all() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=""; }
# Host B's pool directory in the second placement: a tmpfs of its own (not under /dev/shm, which
# every process here replaces with a private one).
BSHM=$(mktemp -d /tmp/shmbench-b.XXXXXX)
mount -t tmpfs tmpfs "$BSHM"
cleanup() {
    stop_all; ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true
    umount "$BSHM" 2>/dev/null || true; rmdir "$BSHM" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$A"
ip netns add "$B"
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$A"
ip link set "$VB" netns "$B"
ip -n "$A" addr add $ADDR/24 dev "$VA"
ip -n "$B" addr add 10.232.0.2/24 dev "$VB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$VA" up
ip -n "$B" link set "$VB" up

# Runs a command on host $1 (its network namespace, a private /dev/shm); every step execs the
# next, so that a background command's pid is the program's own.
SHM='mount -t tmpfs tmpfs /dev/shm && exec "$@"'
on() { ns=$1; shift; ip netns exec "$ns" unshare --mount --propagation private sh -c "$SHM" sh "$@"; }
start() {
    ns=$1; shift
    ip netns exec "$ns" unshare --mount --propagation private sh -c "$SHM" sh "$@" >/dev/null &
    PIDS="$PIDS $!"
}
# Clock ticks (user + system) used so far by the background processes.
ticks() { t=0; for p in $PIDS; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# One table row from a client's JSON line ($3) and the servers' ticks during the run ($4).
row() {
    "$PYTHON" -c "import json,os,sys; r=json.loads(sys.argv[3]); hz=os.sysconf('SC_CLK_TCK')
cpu=(r['cpu_s']+int(sys.argv[4])/hz)/r['events']*1e3
print(f\"| {sys.argv[1]} | {sys.argv[2]} | {r['events_per_s']:.0f} | {r['p50_us']/1e3:.2f} | {r['p99_us']/1e3:.2f} | {cpu:.2f} |\")" "$@"
}

echo "load average: $(cat /proc/loadavg)"
echo "| system | workers | events/s | p50 ms | p99 ms | CPU ms/event |"
echo "| --- | --- | --- | --- | --- | --- |"
for W in 1 2 4; do
    # Broker elsewhere.
    EP=tcp://$ADDR:5711
    start "$A" $BIN/shmpool-broker --bind $EP
    for i in $(seq $W); do start "$B" $BIN/shmpool-farm-worker --connect $EP --service ssnet --last-only --shm-dir "$BSHM"; done
    on "$B" $BIN/shmpool-farm-client --connect $EP --service ssnet --events 1 --last-only --wait-workers $W --no-shm >/dev/null
    T0=$(ticks)
    R=$(on "$B" $BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 \
        --last-only --shm-dir "$BSHM")
    row "shmpool farm, broker elsewhere" $W "$R" $(($(ticks) - T0))
    stop_all
    FE=tcp://$ADDR:5712; BE=tcp://$ADDR:5713
    start "$A" "$PYTHON" "$PPP" broker $FE $BE
    for i in $(seq $W); do start "$B" "$PYTHON" "$PPP" worker $BE "w$i"; done
    sleep 1 # as below
    T0=$(ticks)
    R=$(on "$B" "$PYTHON" "$PPP" client $FE "$EVENTS" 3 512 $W)
    row "pyzmq Paranoid Pirate, broker elsewhere" $W "$R" $(($(ticks) - T0))
    stop_all

    # Across.
    EP=tcp://$ADDR:5701
    start "$A" $BIN/shmpool-broker --bind $EP
    for i in $(seq $W); do start "$A" $BIN/shmpool-farm-worker --connect $EP --service ssnet --last-only; done
    on "$B" $BIN/shmpool-farm-client --connect $EP --service ssnet --events 1 --last-only --wait-workers $W --no-shm >/dev/null
    T0=$(ticks)
    R=$(on "$B" $BIN/shmpool-farm-client --connect $EP --service ssnet --events "$EVENTS" --planes 3 --side 512 --last-only)
    row "shmpool farm" $W "$R" $(($(ticks) - T0))
    stop_all

    FE=tcp://$ADDR:5702; BE=tcp://$ADDR:5703
    start "$A" "$PYTHON" "$PPP" broker $FE $BE
    for i in $(seq $W); do start "$A" "$PYTHON" "$PPP" worker $BE "w$i"; done
    sleep 1 # the workers' Python starts (the client waits for their READY too, see ppp.py)
    T0=$(ticks)
    R=$(on "$B" "$PYTHON" "$PPP" client $FE "$EVENTS" 3 512 $W)
    row "pyzmq Paranoid Pirate (copy=False)" $W "$R" $(($(ticks) - T0))
    stop_all
done
echo "load average: $(cat /proc/loadavg)"
