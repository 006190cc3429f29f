#!/bin/bash
# The same recipe on Fashion-MNIST from the IDX files and from the PNG class folders (train/ + test/).

RECIPE="--model nin --input-size 112 --epochs 3 --batch-size 128 --optimizer adamw --lr 0.0005 --weight-decay 0.05
  --schedule cosine --warmup-epochs 0.5 --flip --augment none --amp --channels-last --seed 1 --workers 2 --no-plot --format json"
for src in idx png; do
  data=IDX; [ $src = png ] && data=FOLDER
  /usr/bin/time -v nin-train --data $data $RECIPE --output cmp-$src.pt > cmp-$src.json 2> cmp-$src.err
done
