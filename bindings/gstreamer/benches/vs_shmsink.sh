#!/usr/bin/env bash
# 1080p RGB from one sink process to 1 and 2 source processes: shmpoolsink -> shmpoolsrc against
# shmsink -> shmsrc in the same run. Case "pool": videotestsrc allocates from the sink's proposed
# pool; case "copy": an appsrc pushes buffers of its own pool, so both sinks copy. Prints each run
# (frames/s, CPU per frame of all processes, latency p50/p99 from the sink's pad to the source's
# push, the sink's copies, lost frames, load average), then medians and ratios shmpool / shmsink.
# The program: bindings/gstreamer/examples/vs_shmsink/ (its doc comment says how it measures).
#
#   bindings/gstreamer/benches/vs_shmsink.sh [--frames 600] [--reps 3] [--cases pool,copy]
#                                            [--consumers 1,2] [--deadline-s 60] [--jsonl FILE]
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release --quiet -p gst-plugin-shmpool --lib --example vs_shmsink
WORK=$(mktemp -d /tmp/gstshmpool-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/plugins"
ln -s "$PWD/target/release/libgstshmpool.so" "$WORK/plugins/"
export GST_PLUGIN_PATH="$WORK/plugins" GST_REGISTRY="$WORK/registry.bin"
gst-inspect-1.0 shmpoolsink >/dev/null # fills the registry once, so start-up is not measured
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/vs_shmsink "$@"
