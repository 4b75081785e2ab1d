#!/usr/bin/env bash
# C ABI, C++ wrapper, pkg-config install and cross-language tests. Called by scripts/test.sh after
# scripts/setup.sh and `cargo test`; runs on its own too. Every pool lives in a private temporary
# directory (removed at exit); nothing goes to /dev/shm. Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

TMP=$(mktemp -d /tmp/shmpool-test-c.XXXXXX)
BUILD=build/c
trap 'rm -rf "$TMP"' EXIT
# Anything that would fall back to the default directory lands in a private one instead.
export SHMPOOL_DIR="$TMP/default-dir"
mkdir -p "$SHMPOOL_DIR"
shm_before=$(ls /dev/shm 2>/dev/null | sort)

passed=0
failed=0
n=0
# check NAME COMMAND...: runs the command with a log; counts it; shows the log's tail on failure.
check() {
  local name=$1
  shift
  n=$((n + 1))
  local log="$TMP/check-$n.log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    tail -n 40 "$log" | sed 's/^/     /'
  fi
}

# A private, empty directory for one test's pools.
fresh_dir() {
  local d
  d=$(mktemp -d "$TMP/pools.XXXXXX")
  echo "$d"
}

# empty DIR: the test left no pool file behind.
empty() {
  if [ -n "$(ls -A "$1")" ]; then
    echo "left behind in $1:"
    ls -la "$1"
    return 1
  fi
}

# pair DIR CONSUMER... -- PRODUCER...: runs the consumer in the background and the producer in the
# foreground (each under a 120 s timeout); both must succeed and leave DIR empty.
pair() {
  local dir=$1
  shift
  local consumer=()
  while [ "$1" != "--" ]; do
    consumer+=("$1")
    shift
  done
  shift
  timeout 120 "${consumer[@]}" &
  local cpid=$!
  timeout 120 "$@"
  local prc=$?
  wait "$cpid"
  local crc=$?
  echo "producer exit $prc, consumer exit $crc"
  [ "$prc" -eq 0 ] && [ "$crc" -eq 0 ] && empty "$dir"
}

echo "-- building (release)"
check "cargo build --release (libshmpool.so, libshmpool.a, Rust examples)" \
  cargo build --release -p shmpool-c -p shmpool --example rust_consumer --example rust_producer --example bench_loop

check "include/shmpool.h is what the pinned cbindgen generates" make -s check-header

header_c() {
  printf '#include "shmpool.h"\nint main(void) { return shmpool_version() == 0; }\n' >"$TMP/h.c"
  gcc -std=c99 -Wall -Wextra -pedantic -Werror -Iinclude -c "$TMP/h.c" -o "$TMP/h.o"
}
header_cxx() {
  printf '#include "shmpool.h"\n#include "shmpool.hpp"\nint main() { return shmpool::version() == nullptr; }\n' >"$TMP/h.cpp"
  g++ -std=c++17 -Wall -Wextra -pedantic -Werror -Iinclude -c "$TMP/h.cpp" -o "$TMP/h2.o"
}
check "shmpool.h compiles as C99 (-Wall -Wextra -pedantic -Werror)" header_c
check "shmpool.h and shmpool.hpp compile as C++17 (-Wall -Wextra -pedantic -Werror)" header_cxx
check "C tests and examples compile (C99, -Wall -Wextra -pedantic -Werror)" make -s BUILD="$BUILD" c
check "C++ tests and examples compile (C++17/C++20, -Wall -Wextra -pedantic -Werror)" make -s BUILD="$BUILD" cxx
check "GLib example compiles (C11, pkg-config glib-2.0)" make -s BUILD="$BUILD" glib
check "GStreamer examples compile (C++17, -Wall -Wextra -pedantic -Werror)" make -s BUILD="$BUILD" gst

echo "-- API tests"
run_in_fresh() {  # run_in_fresh PROGRAM...: runs PROGRAM DIR with a fresh DIR, which must stay empty
  local d
  d=$(fresh_dir)
  "$@" "$d" && empty "$d"
}
check "C API: round trip, bad arguments, double publish/release, wrong consumer" run_in_fresh "$BUILD/test_api"
check "C API under valgrind: 0 errors, 0 leaks" \
  run_in_fresh valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
  "$BUILD/test_api"
check "C: epoll loops on consumer and producer readiness descriptors (forked producer, in order)" \
  run_in_fresh "$BUILD/test_epoll"
check "C store API: versions, dynamic shapes, bad input, one writer, read-only views (SIGSEGV), gc" \
  run_in_fresh "$BUILD/test_store"
check "C++ wrapper (C++17): RAII, moves, exceptions with status and message" run_in_fresh "$BUILD/test_api_cpp"
check "C++ store wrapper: RAII versions and writers, discard, exceptions" run_in_fresh "$BUILD/test_store_cpp"
check "C++ wrapper (C++20, std::span)" run_in_fresh "$BUILD/test_api_cpp20"
check "C++ wrapper under valgrind: 0 errors, 0 leaks" \
  run_in_fresh valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
  "$BUILD/test_api_cpp"

echo "-- across processes and languages"
R=target/release/examples
d=$(fresh_dir)
check "C producer -> Rust consumer (payload, order, count)" pair "$d" \
  "$R/rust_consumer" c2rust --dir "$d" --count 500 --pattern --quiet -- \
  "$BUILD/producer" c2rust "$d" 500 65536 1
d=$(fresh_dir)
check "Rust producer -> C++ consumer (payload, shape, dtype, timestamps)" pair "$d" \
  "$BUILD/consumer_cpp" rust2cpp "$d" 500 -- \
  "$R/rust_producer" rust2cpp --dir "$d" --count 500 --size 65536 --consumers 1
d=$(fresh_dir)
check "C++ producer -> C consumer" pair "$d" \
  "$BUILD/consumer" cpp2c "$d" 300 -- \
  "$BUILD/producer_cpp" cpp2c "$d" 300 4096 1
d=$(fresh_dir)
check "C producer -> GLib main loop consumer (g_unix_fd_add on shmpool_consumer_fd)" pair "$d" \
  "$BUILD/glib_consumer" c2glib "$d" 2000 -- \
  "$BUILD/producer" c2glib "$d" 2000 4096 1
d=$(fresh_dir)
check "GStreamer appsink (1080p RGB) -> Rust consumer: shape (1080,1920,3), caps, increasing PTS" pair "$d" \
  "$R/rust_consumer" gst2rust --dir "$d" --count 30 --quiet --expect-shape 1080,1920,3 \
  --expect-meta-prefix "video/x-raw, format=(string)RGB, width=(int)1920, height=(int)1080" --increasing-ts -- \
  "$BUILD/gst_to_pool" gst2rust --dir "$d" --frames 30 --consumers 1
gst_frames() {  # gst_frames DIR MODE-FLAGS...: 5 frames through the pool; prints their checksums
  local dir=$1
  shift
  timeout 120 "$R/rust_consumer" sums --dir "$dir" --count 5 --quiet --checksum >"$dir.sums" &
  local cpid=$!
  timeout 120 "$BUILD/gst_to_pool" sums --dir "$dir" --frames 5 --consumers 1 "$@" >"$dir.log" || return 1
  wait "$cpid" || return 1
  cat "$dir.log"
  grep checksum "$dir.sums"
}
zero_copy_matches_copy() {
  local d
  d=$(fresh_dir)
  gst_frames "$d" >"$TMP/zero.out" || return 1
  gst_frames "$d" --copy >"$TMP/copy.out" || return 1
  cat "$TMP/zero.out" "$TMP/copy.out"
  grep -q "5 without copy" "$TMP/zero.out" || { echo "the slot buffer pool was not used"; return 1; }
  grep -q "0 without copy" "$TMP/copy.out" || { echo "--copy did not copy"; return 1; }
  [ "$(grep -c checksum "$TMP/zero.out")" -eq 5 ] || return 1
  diff <(grep checksum "$TMP/zero.out") <(grep checksum "$TMP/copy.out") && empty "$d"
}
check "GStreamer: videotestsrc renders into pool slots (zero copy), same frames as the copy path" zero_copy_matches_copy
d=$(fresh_dir)
check "GStreamer appsink -> pool -> appsrc ! ... ! fakesink (zero-copy, every frame sunk)" pair "$d" \
  "$BUILD/pool_to_gst" gst2gst --dir "$d" --frames 30 -- \
  "$BUILD/gst_to_pool" gst2gst --dir "$d" --frames 30 --consumers 1

echo "-- install and pkg-config"
install_and_build() {
  local prefix="$TMP/prefix"
  make -s install PREFIX="$prefix" >/dev/null || return 1
  for f in include/shmpool.h include/shmpool.hpp lib/libshmpool.so lib/libshmpool.so.0 lib/libshmpool.a \
    lib/pkgconfig/shmpool.pc lib/cmake/shmpool/shmpoolConfig.cmake; do
    [ -e "$prefix/$f" ] || { echo "missing $prefix/$f"; return 1; }
  done
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  pkg-config --modversion shmpool || return 1
  # A C++ program built only with pkg-config, linked against the installed shared library.
  # shellcheck disable=SC2046
  g++ -std=c++17 -Wall -Wextra -Werror examples/cpp/consumer.cpp -o "$TMP/consumer_pc" \
    $(pkg-config --cflags --libs shmpool) -Wl,-rpath,"$prefix/lib" || return 1
  # The library carries its SONAME and the program needs the versioned name, not the dev link.
  readelf -d "$prefix/lib/libshmpool.so" | grep -F "Library soname: [libshmpool.so.0]" || return 1
  readelf -d "$TMP/consumer_pc" | grep -F "Shared library: [libshmpool.so.0]" || return 1
  ldd "$TMP/consumer_pc" | grep "$prefix/lib/libshmpool.so.0" || { echo "not linked to the installed .so"; return 1; }
  local d
  d=$(fresh_dir)
  pair "$d" "$TMP/consumer_pc" pc "$d" 100 -- "$R/rust_producer" pc --dir "$d" --count 100 --consumers 1
}
check "make install PREFIX=...; a C++ program built with pkg-config --cflags --libs shmpool runs" install_and_build

cmake_build() {
  local prefix="$TMP/prefix"
  [ -e "$prefix/lib/cmake/shmpool/shmpoolConfig.cmake" ] || make -s install PREFIX="$prefix" >/dev/null || return 1
  cmake -S tests/cmake -B "$TMP/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_RPATH="$prefix/lib" || return 1
  cmake --build "$TMP/cmake-build" || return 1
  readelf -d "$TMP/cmake-build/consumer_cmake" | grep -F "Shared library: [libshmpool.so.0]" || return 1
  local d
  d=$(fresh_dir)
  pair "$d" "$TMP/cmake-build/consumer_cmake" cm "$d" 100 -- "$R/rust_producer" cm --dir "$d" --count 100 --consumers 1
}
check "CMake: find_package(shmpool CONFIG) + shmpool::shmpool from the installed prefix builds and runs" cmake_build

echo "-- benchmark smoke run (numbers: scripts/bench-c.sh)"
check "bench_loop (C and Rust) run" bash -c "$BUILD/bench_loop 20000 1 && $R/bench_loop 20000 1"

no_shm_leftovers() {
  local after
  after=$(ls /dev/shm 2>/dev/null | sort)
  # Only names these tests use; other engineers may use /dev/shm concurrently.
  comm -13 <(echo "$shm_before") <(echo "$after") | grep -E 'c2rust|rust2cpp|cpp2c|gst2|pc$|cm$|round-trip|bad-args|workqueue' && return 1
  empty "$SHMPOOL_DIR"
}
check "nothing left in /dev/shm or the default directory" no_shm_leftovers

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
