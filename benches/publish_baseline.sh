#!/usr/bin/env bash
# `publish` with nobody waiting: this checkout's core against an older one, in one run.
#   bash benches/publish_baseline.sh [BASE_COMMIT] [RUNS]
# BASE_COMMIT defaults to the commit before the readiness handles were merged (the first parent of
# the "Merge event loops" commit). The same program (benches/publish_cost) is built against both
# cores with the same profile, then the two binaries run alternately RUNS times (default 15); the
# medians of their per-run medians are printed side by side with their ratio. The old checkout is
# a temporary git worktree, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE=${1:-$(git log --merges --format='%H %s' | awk '/Merge event loops/ {print $1; exit}')^1}
RUNS=${2:-15}
BASE=$(git rev-parse --verify "$BASE^{commit}")
WORK=target/publish-baseline
BASE_TREE=$(mktemp -d /tmp/shmpool-base-XXXXXX)
cleanup() { git worktree remove --force "$BASE_TREE" 2>/dev/null || rm -rf "$BASE_TREE"; }
trap cleanup EXIT
git worktree add --detach --quiet "$BASE_TREE" "$BASE"
mkdir -p "$WORK"

build() { # label core-path
  local src="$WORK/$1"
  rm -rf "$src" && mkdir -p "$src"
  cp -r benches/publish_cost/src benches/publish_cost/Cargo.toml "$src/"
  sed -i "s|path = \"../..\"|path = \"$2\"|" "$src/Cargo.toml"
  cargo build --release --quiet -j1 --manifest-path "$src/Cargo.toml" --target-dir "$WORK/target-$1"
  echo "$WORK/target-$1/release/publish-cost"
}
base_bin=$(build base "$BASE_TREE")
head_bin=$(build head "$ROOT")

: >"$WORK/base.txt"
: >"$WORK/head.txt"
for _ in $(seq "$RUNS"); do
  "$base_bin" >>"$WORK/base.txt"
  "$head_bin" >>"$WORK/head.txt"
done
med() { # file name
  awk -v n="$2" '$1 == n {print $2}' "$1" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
this="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo +changes)"
printf '%-20s %12s %12s %8s\n' "ns/op (median)" "base $(git rev-parse --short "$BASE")" "this $this" "ratio"
for name in acquire publish_no_waiter try_recv recv_ready cycle_no_waiter; do
  b=$(med "$WORK/base.txt" "$name")
  h=$(med "$WORK/head.txt" "$name")
  printf '%-20s %12s %12s %8s\n' "$name" "$b" "$h" "$(awk -v b="$b" -v h="$h" 'BEGIN {printf "%.3f", h / b}')"
done
