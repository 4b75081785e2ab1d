#!/usr/bin/env bash
# 1080p RGB through shmpoolsink/shmpoolsrc vs shmsink/shmsrc, one producer and one consumer
# process: frames/s (frames over the producer's wall time, from start to exit) and CPU per frame
# (user+sys of both processes). Case "pool": upstream allocates from the sink's proposal; case
# "copy": an `identity drop-allocation=true` makes upstream ignore it, so the sink copies.
# shmsink does not forward EOS and waits at EOS until its clients let go, so the shmsrc side ends
# itself after FRAMES buffers (identity eos-after).
#
#   cargo build --release -p gst-plugin-shmpool && bindings/gstreamer/benches/vs_shmsink.sh [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/../../.."
FRAMES=${1:-600}
WORK=$(mktemp -d /tmp/gstshmpool-bench.XXXXXX)
cleanup() {
    for pid in $(jobs -p); do
        for child in $(pgrep -P "$pid"); do
            kill -KILL "$child" 2>/dev/null || true
            # A killed shmsink leaves its segment, named shmpipe.<pid %5d>.<n %5d>.
            rm -f "/dev/shm/shmpipe.$(printf '%5d' "$child")."*
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkdir "$WORK/plugins"
ln -s "$PWD/target/release/libgstshmpool.so" "$WORK/plugins/"
export GST_PLUGIN_PATH="$WORK/plugins" GST_REGISTRY="$WORK/registry.bin"
CAPS="video/x-raw,format=RGB,width=1920,height=1080,framerate=30/1"
# The pool lives in /dev/shm like shmsink's segment (a disk-backed directory would add writeback).
POOL="gstbench-$$"
SRC="videotestsrc num-buffers=$FRAMES pattern=black ! $CAPS"
gst-inspect-1.0 shmpoolsink >/dev/null # fills the registry once, so start-up is not measured

# measure NAME PRODUCER CONSUMER FILE: starts the producer, then the consumer once FILE (its pool
# or socket) exists; prints the row when the producer has exited.
measure() {
    local name=$1 producer=$2 consumer=$3 file=$4
    /usr/bin/time -f "%e %U %S" -o "$WORK/p.time" gst-launch-1.0 -q $producer >"$WORK/p.log" 2>&1 &
    local ppid=$!
    for _ in $(seq 3000); do [ -e "$file" ] && break; sleep 0.01; done
    /usr/bin/time -f "%e %U %S" -o "$WORK/c.time" gst-launch-1.0 -q $consumer >"$WORK/c.log" 2>&1 &
    local cpid=$!
    wait $ppid || true # shmsink fails when its client leaves; the timing stands
    wait $cpid || true
    if [ ! -s "$WORK/p.time" ] || [ ! -s "$WORK/c.time" ]; then
        echo "$name: no timing (a process did not finish)"
        return
    fi
    # The last line: time prefixes a note when the command failed.
    read -r pw pu ps < <(tail -n1 "$WORK/p.time")
    read -r _ cu cs < <(tail -n1 "$WORK/c.time")
    awk -v n="$name" -v f="$FRAMES" -v w="$pw" -v cpu="$(echo "$pu $ps $cu $cs" | awk '{print $1+$2+$3+$4}')" \
        'BEGIN { printf "%-22s %8.0f fps %8.2f ms CPU/frame\n", n, f / w, 1000 * cpu / f }'
}

for case in pool copy; do
    extra=""
    [ "$case" = copy ] && extra="! identity drop-allocation=true"
    measure "shmpoolsink ($case)" \
        "$SRC $extra ! shmpoolsink pool=$POOL wait-for-consumers=1" \
        "shmpoolsrc pool=$POOL ! fakesink sync=false" "/dev/shm/shmpool.$POOL"
    measure "shmsink ($case)" \
        "$SRC $extra ! shmsink socket-path=$WORK/sock shm-size=67108864 wait-for-connection=true sync=false" \
        "shmsrc socket-path=$WORK/sock ! identity eos-after=$FRAMES ! fakesink sync=false" "$WORK/sock"
    rm -f "$WORK/sock"
done
