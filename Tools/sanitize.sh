#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and ThreadSanitizer (Linux):
#   Tools/sanitize.sh [address|thread|all] [swift test --filter pattern]
# Each sanitizer builds into its own folder (.build-address, .build-thread), so the ordinary
# .build is left alone. The worker pool, the background loader and the buffer pool are what
# ThreadSanitizer is for; AddressSanitizer also checks the C shims (image codecs, HDF5, kernels).
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
filter=${2:-}
run() {
  local sanitizer=$1
  echo "== $sanitizer sanitizer" >&2
  local args=(--sanitize="$sanitizer" --build-path ".build-$sanitizer" --disable-swift-testing)
  [ -n "$filter" ] && args+=(--filter "$filter")
  # halt_on_error: the first report fails the run; leaks are reported by ASan at exit.
  # allocator_may_return_null: malloc returns NULL for an impossible size, as glibc does, so a
  # damaged HDF5 file for which libhdf5 asks for 10^18 bytes is the named error users see
  # (Tools/fuzz.sh sets the same).
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:allocator_may_return_null=1} \
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:allocator_may_return_null=1} \
    swift test "${args[@]}"
}
case $which in
  address | thread) run "$which" ;;
  all) run address && run thread ;;
  *) echo "usage: Tools/sanitize.sh [address|thread|all] [filter]" >&2; exit 2 ;;
esac
