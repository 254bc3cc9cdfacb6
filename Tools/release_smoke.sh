#!/usr/bin/env bash
# The release binary trains: a 2-epoch linear probe of the bundled ViT on the committed digits
# must leave chance far behind. The debug test suite cannot see a failure that only the
# optimised, fully linked binary has (one such: the autograd flag read as off once FFmpeg's
# libraries were linked, so no parameter ever moved and every method scored 18 %).
#
#   bash Tools/release_smoke.sh        (builds .build/release/graft first)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product graft
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.build/release/graft tune --backbone vit-nano-fmnist --method linear --data digits --out "$out/run" \
  --set train.epochs=2 --set data.train_samples=300 --quiet
python3 - "$out/run/summary.json" <<'PY'
import json, sys
top1 = json.load(open(sys.argv[1]))["test"]["top1"]
print(f"release smoke: linear probe test top-1 {top1:.4f} (must be > 0.5)")
sys.exit(0 if top1 > 0.5 else 1)
PY
