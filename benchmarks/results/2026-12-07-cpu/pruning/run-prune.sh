#!/usr/bin/env bash
# Prune the shipped (new default) NiN to half its MACs, then fine-tune; and a quarter, if asked ($1 = 0.25).
set -euo pipefail
cd /work/runs/prune
. /work/wt/ship/.venv/bin/activate
FM=/work/shared/data/fashion-mnist
T=${1:-0.5}
name=p$T
nin-prune --weights pretrained --data $FM --target-macs $T --steps 2 --epochs-per-step 1 --amp --channels-last \
  --seed 2 --workers 0 --output $name.pt --format json > $name.prune.json 2> $name.prune.err
nin-train --data $FM --model nin --input-size 112 --init-from $name.pt --epochs ${EPOCHS:-8} --batch-size 128 \
  --optimizer adamw --lr 0.0003 --weight-decay 0.05 --schedule cosine --warmup-epochs 0.5 --flip --augment none \
  --amp --channels-last --seed 2 --workers 0 --output $name-ft.pt --format json > $name-ft.json 2> $name-ft.err
