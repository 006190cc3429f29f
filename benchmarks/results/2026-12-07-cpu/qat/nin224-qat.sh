#!/usr/bin/env bash
# PTQ vs fine-tune + PTQ vs QAT at 224 on nin fine-tuned at 224 (nin224.pt), for the recipe $1 (one thread).
set -euo pipefail
cd /work/main
. .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m nin_edge.benchmarks.qat --weights /work/runs/at224/nin224.pt --input-sizes 224 --int8-target $1 \
  --out /work/runs/at224/qat > /work/runs/at224/qat-$1.log 2>&1
