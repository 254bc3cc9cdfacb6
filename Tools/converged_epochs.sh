#!/bin/bash
# The evidence behind each method's recipe epochs (`Recipe.epochs`, the table in
# `TuneConfig.epochs`'s documentation): every image method on a Graft-1k task, trained on its
# 800 training images for each number of epochs in EPOCHS (cosine schedule, seed 0), at the
# learning rate and weight decay VTAB-1k's protocol chose for it at 10 epochs on MNIST (README,
# Graft-1k), then a table of the best and last validation top-1 per length.
#
#   Tools/converged_epochs.sh [OUT]     # env: TASK (default mnist), EPOCHS (default "10 20 40")
#
# Needs a release build (swift build -c release --product graft). Finished runs are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRAFT_MODELS=${GRAFT_MODELS:-$PWD/Models}
task=${TASK:-mnist}
out=${1:-runs/converged-epochs-$task}
graft=.build/release/graft
[ -x "$graft" ] || { echo "no $graft: run swift build -c release --product graft" >&2; exit 1; }

# method: lr, weight decay (the 10-epoch protocol's choices on graft1k/mnist).
choices=(
  "linear 0.25 0.0001" "mp 0.00125 0" "mp+ 0.003125 0" "lst 0.01875 0.01" "unipt 0.003125 0.01"
  "bitfit 0.0625 0" "ln-tune 0.0625 0" "adapter 0.01 0" "lora 0.0125 0" "hst 0.004 0"
  "vpt-shallow 0.625 0.0001" "vpt-deep 0.625 0" "full 0.000625 0.05"
)
for epochs in ${EPOCHS:-10 20 40}; do
  for choice in "${choices[@]}"; do
    read -r method lr wd <<<"$choice"
    dir=$out/$method/e$epochs
    [ -f "$dir/summary.json" ] && continue
    echo "$(date +%T) $method: $epochs epochs, lr $lr, weight decay $wd"
    "$graft" tune --backbone vit-nano-fmnist --method "$method" --data "graft1k/$task" \
      --set optim.lr="$lr" --set optim.weight_decay="$wd" --set train.epochs="$epochs" \
      --out "$dir" --quiet
  done
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
print("per length: epochs: best validation top-1 @ its epoch, last epoch's")
for method in sorted(os.listdir(out)):
    cells = []
    runs = [e for e in os.listdir(os.path.join(out, method)) if e.startswith("e")]
    for run in sorted(runs, key=lambda e: int(e[1:])):
        path = os.path.join(out, method, run, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        val = [json.loads(line)["val_top1"] for line in open(path)]
        best = max(val)
        cells.append(f"{run[1:]:>3}: {100 * best:.1f}@{val.index(best) + 1} {100 * val[-1]:.1f}")
    print(f"{method:12} " + "   ".join(cells))
PY
