#!/usr/bin/env bash
# The shipped nin (trained at 112) fine-tuned at 224 for 2 epochs: weights trained at 224 for the QAT comparison.
set -euo pipefail
cd /work/runs/at224
. /work/wt/prune16/.venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nin-train --data /work/shared/data/fashion-mnist --model nin --input-size 224 --init-from pretrained --epochs 2 \
  --batch-size 128 --optimizer adamw --lr 0.0003 --weight-decay 0.05 --schedule cosine --warmup-epochs 0.2 --flip \
  --augment none --amp --channels-last --seed 2 --workers 0 --output nin224.pt --format json > nin224.json 2> nin224.err
