"""10 classes, one seed, nin-train's defaults from the shipped weights at a given wide-head width.

Prints held-out accuracy per epoch, train accuracy, the training images predicted per class, and the wide
head's hidden units that never fire on the training images. Usage: python head_width_probe.py SEED WIDTH.
The logs beside it (head_width_probe-16.log, -64.log; 2026-12-07, AMD EPYC Zen 5, one thread) were made
before the card recorded head_width, by setting ``zoo.HEAD_MIN_WIDTH``, which then set the width: the
same head as setting ``train.WIDE_HEAD_WIDTH`` does now (not rerun that way).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from nin_edge.benchmarks import few_classes
from nin_edge.models import train as train_module
from nin_edge.models.checkpoint import checkpoint_card
from nin_edge.models.evaluate import EvalConfig, run_eval
from nin_edge.models.registry import create_model
from nin_edge.runtime.preprocess import preprocess_image, read_image

torch.set_num_threads(1)
seed, width = int(sys.argv[1]), int(sys.argv[2])
train_module.WIDE_HEAD_WIDTH = width
root = Path("probe-data10")
if not root.exists():
    few_classes.make_folders(root, 10, 90, 20)
out = f"probe-s{seed}-w{width}.pt"
config = train_module.TrainConfig(
    data=str(root), init_from="pretrained", input_size=112, seed=seed, workers=0, plot=False, output=out, overwrite=True
)
result = train_module.train(config)
print("held-out by epoch", [round(h.held_out_acc, 3) for h in result.history])
scores = run_eval(EvalConfig(data=str(root), weights=out, split="train", provider="cpu")).results[0]
print("train acc", round(scores.accuracy, 3), "train preds per class", np.asarray(scores.confusion).sum(0).tolist())
saved = torch.load(out, weights_only=True)
card = checkpoint_card(saved, out)
assert card is not None
model = create_model("nin", in_channels=3, num_classes=10, input_size=112, **card.model_options).eval()
model.load_state_dict(saved["state_dict"])
peaks: dict[str, list[torch.Tensor]] = {"r1": [], "r2": []}
model[7][1].register_forward_hook(lambda m, i, o: peaks["r1"].append(o.amax(dim=(0, 2, 3))))
model[7][3].register_forward_hook(lambda m, i, o: peaks["r2"].append(o.amax(dim=(0, 2, 3))))
images = sorted((root / "train").rglob("*.png"))
pixels = [preprocess_image(read_image(p), channels=3, size=112, pre=card.preprocessing, where=str(p)) for p in images]
x = np.stack(pixels)
with torch.no_grad():
    for start in range(0, len(x), 100):
        model(torch.from_numpy(x[start : start + 100]))
for name, seen in peaks.items():
    peak = torch.stack(seen).amax(0)
    print(name, "hidden units never firing on the training images:", int((peak <= 0).sum()), "of", len(peak))
