#!/usr/bin/env bash
# What a point backbone's pretraining is worth: linear probe and full fine-tuning on the prepared
# furniture set, from the model's weights and from a fresh initialisation of the same
# architecture (graft models reinit), with every other setting equal (each method's recipe).
# The linear probe trains with AdamW at 1e-2 (the recipe's SGD at 0.1 diverges on Point-MAE's
# max-pooled features; see the README's Graft-3D findings) and full fine-tuning for 10 epochs
# (the budget of two cores); both weights get exactly the same settings.
# Prints a Markdown table of test overall accuracy and mean per-class accuracy, mean ± std over
# the seeds, for the model card.
#
#   Tools/evaluate_point_backbone.sh MODEL OUT [SEEDS...]    (default seeds: 0)
#   Tools/evaluate_point_backbone.sh Models/point-mae-furniture /tmp/eval 0 1 2
#
# Needs a release build (swift build -c release --product graft) and the furniture set
# (graft data prepare furniture). Runs that already finished in OUT are reused.
set -euo pipefail
model=${1:?usage: evaluate_point_backbone.sh MODEL OUT [SEEDS...]}
out=${2:?usage: evaluate_point_backbone.sh MODEL OUT [SEEDS...]}
shift 2
seeds=("$@")
((${#seeds[@]})) || seeds=(0)
graft=${GRAFT:-$(dirname "$0")/../.build/release/graft}
mkdir -p "$out"
[ -f "$out/random/model.safetensors" ] || "$graft" models reinit "$model" --out "$out/random" --seed 0
for weights in pretrained random; do
  backbone=$model
  [ "$weights" = random ] && backbone=$out/random
  for method in linear full; do
    for seed in "${seeds[@]}"; do
      run=$out/$weights-$method-$seed
      [ -f "$run/summary.json" ] && continue
      rm -rf "$run"
      echo "tuning $method from $weights weights, seed $seed" >&2
      settings=(--set seed="$seed")
      if [ "$method" = linear ]; then
        settings+=(--set optim.name=adamw --set optim.lr=0.01 --set optim.weight_decay=0)
      else
        settings+=(--set train.epochs=10)
      fi
      "$graft" tune --backbone "$backbone" --method "$method" --data furniture --out "$run" \
        "${settings[@]}" --quiet
    done
  done
done
python3 - "$out" "${seeds[@]}" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
def cell(values):
    mean = 100 * statistics.mean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"
print("| method | weights | test accuracy % | mean per-class accuracy % | train s |")
print("| --- | --- | --- | --- | --- |")
for method in ["linear", "full"]:
    for weights in ["pretrained", "random"]:
        runs = [json.load(open(f"{out}/{weights}-{method}-{s}/summary.json")) for s in seeds]
        top1 = [r["test"]["top1"] for r in runs]
        per_class = [statistics.mean(r["test"]["per_class"]) for r in runs]
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        print(f"| {method} | {weights} | {cell(top1)} | {cell(per_class)} | {seconds:.0f} |")
PY
