#!/bin/bash
# What `--jobs` buys on this machine (README, VTAB-1k's protocol): for each method, one run on
# all the cores alone, then `JOBS` copies of the same run side by side, each on twice the cores
# divided by JOBS, at most all of them (GRAFT_NUM_THREADS, as a sweep's children get them;
# EACH=N sets another count); prints both wall times and the runs per hour side by side give
# against one at a time.
#
#   Tools/jobs_throughput.sh [METHOD…]     # env: TASK (default mnist), EPOCHS (default 5),
#                                          #      JOBS (default 2), EACH (threads per copy)
#
# Needs a release build (swift build -c release --product graft) and an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRAFT_MODELS=${GRAFT_MODELS:-$PWD/Models}
graft=.build/release/graft
[ -x "$graft" ] || { echo "no $graft: run swift build -c release --product graft" >&2; exit 1; }
cores=$(nproc)
jobs=${JOBS:-2}
share=$((2 * cores / jobs > 0 ? 2 * cores / jobs : 1))
each=${EACH:-$((share < cores ? share : cores))}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

one_run() {  # threads, folder
  GRAFT_NUM_THREADS=$1 "$graft" tune --backbone vit-nano-fmnist --method "$method" \
    --data "graft1k/${TASK:-mnist}" --set "train.epochs=${EPOCHS:-5}" --out "$2" --quiet \
    --json >/dev/null
}

methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(vpt-deep full linear)
for method in "${methods[@]}"; do
  rm -rf "${scratch:?}"/*
  start=$(date +%s.%N)
  one_run "$cores" "$scratch/alone"
  alone=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
  start=$(date +%s.%N)
  for j in $(seq "$jobs"); do one_run "$each" "$scratch/side-$j" & done
  wait
  side=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
  printf '%-12s one on %d threads %6.1f s; %d side by side on %d %6.1f s; runs per hour x%.2f\n' \
    "$method" "$cores" "$alone" "$jobs" "$each" "$side" "$(awk -v j="$jobs" -v a="$alone" -v s="$side" 'BEGIN { print j * a / s }')"
done
