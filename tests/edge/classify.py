"""Logits of each model for a folder of images, with nin_edge.runtime.Classifier, saved as .npz.

    python tests/edge/classify.py IMAGES_DIR OUT.npz MODEL [MODEL...]

Runs wherever the runtime is installed, the arm64 root included (tests/edge/arm64.sh run), with the
standard library, numpy and nin_edge.runtime alone (no torch). OUT.npz holds ``names`` (the image
files, sorted), ``machine`` and ``onnxruntime`` (where it ran) and, per model, ``logits:<file name>``.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from nin_edge.runtime import Classifier


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    folder, out, models = Path(argv[0]), Path(argv[1]), argv[2:]
    paths = sorted(folder.glob("*.png"))
    arrays: dict[str, np.ndarray] = {
        "names": np.array([p.name for p in paths]),
        "machine": np.array(platform.machine()),
        "onnxruntime": np.array(onnxruntime.__version__),
    }
    for model in models:
        arrays[f"logits:{Path(model).name}"] = Classifier(model, "cpu").logits(paths)
    np.savez(out, **arrays)
    print(f"{len(paths)} images, {len(models)} models on {platform.machine()} (onnxruntime {onnxruntime.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
