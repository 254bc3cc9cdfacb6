#!/usr/bin/env bash
# Fuzzes Graft's parsers with libFuzzer (Linux; Swift's -sanitize=fuzzer, with AddressSanitizer):
#
#   Tools/fuzz.sh TARGET [seconds] [libFuzzer options…]   one target, for that long (default 60 s)
#   Tools/fuzz.sh all [seconds] [libFuzzer options…]      every target in turn
#   Tools/fuzz.sh ci [runs]                               every target for `runs` inputs (default
#                                                          2000) from the seeds alone; CI's check
#
# Targets: see `targets` below and Fuzz/main.swift. The seed corpus comes from the test fixtures
# (files under 64 KiB, so that a run spends its time on the parser rather than on copying), a
# few hand-written inputs, and every input that once found a fault (Fuzz/Regressions/TARGET,
# replayed by every run). New inputs that reach new code are kept in .build/fuzz/corpus/TARGET,
# and crashes, leaks and timeouts are written to .build/fuzz/findings/TARGET (turn each into a
# regression test). The fuzz executable is built only here (GRAFT_FUZZ=1), in its own build
# folder, so `swift build` and the tests never see it.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?"usage: Tools/fuzz.sh TARGET|all [seconds] [libFuzzer options…] | ci [runs]"}
seconds=${2:-60}
ci_runs=${2:-2000}
shift $(( $# >= 2 ? 2 : 1 ))
targets=(safetensors npz npy image pnm idx csv yaml timm-config pcd ply off obj modelnet point-npy
  hdf5 lzf coco coco-eval voc caption-scores tokenizer-json bpe-files bpe gpt2-config clips video)
# What every run allows one input: time, memory in all and in one allocation.
limits=(-timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048)
# Inputs are at most this long (libFuzzer also cuts longer seeds to it): every parser's
# structure fits, the two-file targets' seed pairs (up to 28 KiB) reach their second file, and
# short inputs run fast. The BPE round trip, whose cost grows faster than its input, gets less.
max_len_of() {
  case $1 in
    bpe) echo 8192 ;;
    *) echo 65536 ;;
  esac
}
# Leaks inside the libraries Graft calls (each explained in the file).
export LSAN_OPTIONS=suppressions=$PWD/Fuzz/lsan.supp
# An impossible allocation returns NULL, as glibc's malloc does outside the sanitizer, instead of
# aborting: libhdf5 asks for 10^18 bytes for some damaged files and turns the NULL into an error
# (Fuzz/Regressions/hdf5/huge-cache-allocation.h5; `graft points info` names the file and exits
# 1). Swift code that gets NULL still traps, so Graft's own allocations stay checked.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1}
export GRAFT_FUZZ_TOKENIZER=$PWD/Tests/GraftTextTests/Fixtures/tokenizer/tokenizer.json

# GRAFT_FUZZ_CONFIGURATION=release builds optimised (slower to build, several times more
# inputs per second: what long campaigns use); preconditions stay on in both.
configuration=${GRAFT_FUZZ_CONFIGURATION:-debug}
# GRAFT_FUZZ_SANITIZE=none builds libFuzzer alone, without AddressSanitizer (so no memory-error
# or leak checks): for targets whose cost is the sanitizer's own, such as hdf5, where every
# input forks a reading process and forking an ASan process costs about 12 ms (its page tables
# and allocator state). Campaigns say which build they ran.
case ${GRAFT_FUZZ_SANITIZE:-address} in
  address) build=.build-fuzz sanitizers=fuzzer,address cc_sanitizers=fuzzer-no-link,address ;;
  none) build=.build-fuzz-plain sanitizers=fuzzer cc_sanitizers=fuzzer-no-link ;;
  *) echo "GRAFT_FUZZ_SANITIZE: address or none" >&2; exit 2 ;;
esac
GRAFT_FUZZ=1 swift build -c "$configuration" --build-path "$build" --product graft-fuzz \
  -Xswiftc -sanitize="$sanitizers" -Xcc -fsanitize="$cc_sanitizers" >&2
binary="$build/$configuration/graft-fuzz"

# The seed corpus of `target`: fixture files of its kind, and a few hand-written inputs.
seed() {
  local t=$1 dir=.build/fuzz/seeds/$1
  rm -rf "$dir" && mkdir -p "$dir"
  local find_args=()
  case $t in
    safetensors) find_args=(-name '*.safetensors') ;;
    npz) find_args=(-name '*.npz') ;;
    npy) find_args=(-name '*.npy') ;;
    image) find_args=(\( -name '*.png' -o -name '*.jpg' \)) ;;
    pnm) find_args=(\( -name '*.ppm' -o -name '*.pgm' -o -name '*.pbm' \)) ;;
    timm-config) find_args=(-name 'config.json') ;;
    pcd) find_args=(-name '*.pcd') ;;
    ply) find_args=(-name '*.ply') ;;
    off) find_args=(-name '*.off') ;;
    obj) find_args=(-name '*.obj') ;;
    modelnet) find_args=(-name '*.txt' -path '*Points*') ;;
    point-npy) find_args=(-name '*.npy' -path '*Points*') ;;
    hdf5) find_args=(\( -name '*.h5' -o -name '*.hdf5' \)) ;;
    coco) find_args=(\( -name 'annotations.json' -o -name '*_gt.json' \)) ;;
    voc) find_args=(-name '*.xml') ;;
    tokenizer-json) find_args=(-name 'tokenizer.json') ;;
    gpt2-config) find_args=(-name 'config.json' -path '*Text*') ;;
    clips) find_args=(-name 'clips.json') ;;
    video) find_args=(\( -name '*.mp4' -o -name '*.mkv' -o -name '*.webm' -o -name '*.avi' -o -name '*.gif' \)) ;;
    bpe) find_args=(-name '*.txt' -path '*Text*') ;;
  esac
  if [ ${#find_args[@]} -gt 0 ]; then
    find Tests Models Data -type f "${find_args[@]}" -size -64k 2>/dev/null | head -200 |
      while read -r f; do cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; done
  fi
  case $t in
    pnm)
      printf 'P6\n2 1\n255\n\x01\x02\x03\xfa\xfb\xfc' >"$dir/p6"
      printf 'P2\n# c\n3 1\n15\n15 7\n8\n' >"$dir/p2"
      printf 'P1 3 1\n1 01' >"$dir/p1"
      printf 'P4 10 1\n\x81\x40' >"$dir/p4" ;;
    idx)
      # [4-byte length of the images file][images][labels]: two 2×2 images, plain and gzipped.
      local images labels gz n
      images=$(mktemp) labels=$(mktemp) gz=$(mktemp)
      printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x00\x40\x80\xff\x01\x02\x03\x04' >"$images"
      printf '\x00\x00\x08\x01\x00\x00\x00\x02\x03\x07' >"$labels"
      { printf '\x00\x00\x00\x18'; cat "$images" "$labels"; } >"$dir/plain"
      gzip -n -c "$images" >"$gz"
      n=$(stat -c %s "$gz")
      { printf "$(printf '\\x%02x' $((n >> 24)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
        cat "$gz" "$labels"; } >"$dir/gzipped"
      rm -f "$images" "$labels" "$gz" ;;
    csv)
      printf '0,255,128,3,1\n10,20,30,40,0\n' >"$dir/two.csv"
      printf '0, 255 ,128.5,3,9\r\n' >"$dir/crlf.csv" ;;
    bpe-files)
      local fixtures=Tests/GraftTextTests/Fixtures/tokenizer
      { cat "$fixtures/vocab.json"; printf '\0'; cat "$fixtures/merges.txt"; } >"$dir/fixture" ;;
    coco-eval | caption-scores)
      # Pairs of fixture files joined by a NUL byte (what the target splits).
      local base=Tests/GraftDetectionTests/Fixtures/scores
      local pairs=("$base/mixed_gt.json $base/mixed_dt.json" "$base/random1_gt.json $base/random1_dt.json"
        "Tests/GraftDetectionTests/Fixtures/labelme/annotations.json $base/labelme_dt.json")
      if [ "$t" = caption-scores ]; then
        pairs=("Tests/GraftTextTests/Fixtures/captions/refs.json Tests/GraftTextTests/Fixtures/captions/hyps.json")
      fi
      local i=0
      for pair in "${pairs[@]}"; do
        set -- $pair
        [ -f "$1" ] && [ -f "$2" ] && { cat "$1"; printf '\0'; cat "$2"; } >"$dir/pair$i"
        i=$((i + 1))
      done ;;
    hdf5 | lzf) "$binary" --write-seeds "$t" "$dir" ;;
    obj) printf 'v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n' >"$dir/tri.obj" ;;
    modelnet) printf '0.1,0.2,0.3,0,0,1\n0.4,0.5,0.6,0,1,0\n' >"$dir/two.txt" ;;
    npy | point-npy)
      # A [2, 3] float32 array: magic, version 1.0, header padded to 64 bytes, then the data.
      local header="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
      header=$(printf '%-*s' 117 "$header")
      { printf '\x93NUMPY\x01\x00\x76\x00%s\n' "$header"; head -c 24 /dev/zero; } >"$dir/a.npy" ;;
    yaml)
      printf 'optim:\n  lr: 0.02\ntrain: {epochs: 7}\nmethod:\n  rank: 3\nseed: 4\n' >"$dir/a"
      printf 'optim.lr: 0.1\nmethod.targets: [q, k, fc1]\n' >"$dir/b"
      printf 'method: "lora"\ntrain.nan_policy: "skip-step"\n' >"$dir/c" ;;
  esac
  [ -d "Fuzz/Regressions/$t" ] && cp Fuzz/Regressions/"$t"/* "$dir"/
  echo "$dir"
}

run_one() {
  local t=$1
  shift
  local corpus=.build/fuzz/corpus/$t findings=.build/fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  local seeds
  seeds=$(seed "$t")
  echo "== $t: $seconds s (seeds $(ls "$seeds" | wc -l))" >&2
  GRAFT_FUZZ_TARGET=$t "$binary" "$corpus" "$seeds" -max_total_time="$seconds" \
    "${limits[@]}" -max_len="$(max_len_of "$t")" -print_final_stats=1 -artifact_prefix="$findings/" "$@"
}

# CI's check: each target for a fixed number of inputs grown from the seeds alone (no saved
# corpus, so the result does not depend on earlier runs on this machine).
ci_one() {
  local t=$1 runs=$2 findings=.build/fuzz/findings/$1 scratch
  mkdir -p "$findings"
  scratch=$(mktemp -d)
  GRAFT_FUZZ_TARGET=$t "$binary" "$scratch" "$(seed "$t")" -runs="$runs" -seed=1 \
    "${limits[@]}" -max_len="$(max_len_of "$t")" -artifact_prefix="$findings/" >"$findings/ci.log" 2>&1
  local status=$?
  rm -rf "$scratch"
  echo "$t: $(grep -o 'Done [0-9]* runs' "$findings/ci.log" || echo "FAILED, see $findings/ci.log")" >&2
  return $status
}

if [ "$target" = ci ]; then
  failed=()
  for t in "${targets[@]}"; do ci_one "$t" "$ci_runs" || failed+=("$t"); done
  if [ ${#failed[@]} -gt 0 ]; then
    for t in "${failed[@]}"; do tail -30 ".build/fuzz/findings/$t/ci.log" >&2; done
    echo "fuzzing found faults in: ${failed[*]} (inputs in .build/fuzz/findings/)" >&2
    exit 1
  fi
elif [ "$target" = all ]; then
  failed=()
  for t in "${targets[@]}"; do run_one "$t" "$@" || failed+=("$t"); done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "findings in: ${failed[*]} (see .build/fuzz/findings/)" >&2
    exit 1
  fi
else
  run_one "$target" "$@"
fi
