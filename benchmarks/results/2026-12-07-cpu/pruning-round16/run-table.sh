#!/usr/bin/env bash
# The pruning table after nin-prune --round-to 16: the registered nin, nin_pruned (64/176/272) and
# nin_pruned_quarter (48/112/176); bundles with FP32 + INT8, accuracy on all 10,000 test images, ORT, browser.
# Then the width sweep on random weights (../pruning/widths/align.py). Run from the repository root, nothing else running.
set -euo pipefail
R=$(cd "$(dirname "$0")" && pwd); FM=${FM:-../shared/data/fashion-mnist}; T=$(mktemp -d)
MODELS="nin nin_pruned nin_pruned_quarter"
lscpu > $R/lscpu.txt; uptime > $R/uptime-before.txt
for m in $MODELS; do
  nin-export --model $m --bundle $T/$m-bundle --bundle-precisions fp32,int8 --calibration-data $FM --eval-data $FM \
    --eval-size 10000 --format json > $R/export-$m.json
  nin-eval --data $FM --onnx $T/$m-bundle/model.onnx --provider cpu --format json > $R/eval-$m-fp32.json
  nin-eval --data $FM --onnx $T/$m-bundle/model.int8.onnx --provider cpu --format json > $R/eval-$m-int8.json
done
nin-bench --models ${MODELS// /,} --input-size 112 --batch-sizes 1,32 --precision fp32,int8 --threads 2 --duration 2 \
  --calibration-data $FM --format json --output $R/bench.json > /dev/null
for m in $MODELS; do
  python -m nin_edge.benchmarks.web $T/$m-bundle --data $FM --images 100 --format json > $R/web-$m.json
done
python $R/../pruning/widths/align.py 96/256/384 67/179/268 64/176/272 48/112/176 > $R/widths.txt 2>/dev/null
uptime > $R/uptime-after.txt
python $R/../pruning/table.py $R nin=nin nin_pruned=nin_pruned nin_pruned_quarter=nin_pruned_quarter > $R/table.md
cat $R/table.md $R/widths.txt
