#!/usr/bin/env bash
# The pruning table: exports (bundles with FP32 + INT8), accuracy on all 10,000 test images, ORT latency, browser.
set -euo pipefail
R=/work/runs/table; FM=/work/shared/data/fashion-mnist
cd /work/wt/ship; . .venv/bin/activate
lscpu > $R/lscpu.txt; uptime > $R/uptime-before.txt
for m in nin nin_pruned; do
  rm -rf $R/$m-bundle
  nin-export --model $m --bundle $R/$m-bundle --bundle-precisions fp32,int8 --calibration-data $FM --eval-data $FM \
    --eval-size 10000 --format json > $R/export-$m.json
  nin-eval --data $FM --onnx $R/$m-bundle/model.onnx --provider cpu --format json > $R/eval-$m-fp32.json
  nin-eval --data $FM --onnx $R/$m-bundle/model.int8.onnx --provider cpu --format json > $R/eval-$m-int8.json
done
nin-bench --models nin,nin_pruned --input-size 112 --batch-sizes 1,32 --precision fp32,int8 --threads 2 --duration 2 \
  --calibration-data $FM --format json --output $R/bench.json > /dev/null
for m in nin nin_pruned; do
  python -m nin_edge.benchmarks.web $R/$m-bundle --data $FM --images 100 --format json > $R/web-$m.json
done
uptime > $R/uptime-after.txt
python /work/runs/prune/table.py $R nin=nin nin_pruned=nin_pruned > $R/table.md
cat $R/table.md
