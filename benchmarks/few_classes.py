"""Few-class training experiment (issue 29): does ``nin-train`` learn 2, 3, 5 and 10 classes of a user's images?

Class folders are cut from photographs and textures shipped inside PyPI packages (scikit-image's ``skimage.data``,
scikit-learn's ``load_sample_images``), so nothing is downloaded: each class is one source picture, training
images are random crops of its left 70 %, held-out images random crops of its right 30 % (no pixel is shared),
with random flips and a small colour jitter. Every run calls :func:`nin_edge.models.train.train` with the
``TrainConfig`` a user's flags give; ``--variants`` compares nin-train's old layout and batch with its defaults.

Run ``python -m nin_edge.benchmarks.few_classes --help``. One training run at a time, one thread.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

# (class name, loader): alternating between the two packages so that every class count mixes sources.
SOURCES = (
    ("china", "sklearn:china"),
    ("chelsea", "skimage:chelsea"),
    ("brick", "skimage:brick"),
    ("flower", "sklearn:flower"),
    ("astronaut", "skimage:astronaut"),
    ("coffee", "skimage:coffee"),
    ("rocket", "skimage:rocket"),
    ("grass", "skimage:grass"),
    ("gravel", "skimage:gravel"),
    ("hubble", "skimage:hubble_deep_field"),
)
HELD_OUT_FROM = 0.7  # held-out crops come from the right 30 % of each picture, training crops from the rest
IMAGE_SIDE = 96

# The README's recipe until 2026-12-07 (its --init-from pretrained --input-size 112 --epochs 15 --optimizer
# adamw --lr 0.0005 --schedule cosine), as TrainConfig fields.
_README = {
    "init_from": "pretrained",
    "input_size": 112,
    "epochs": 15,
    "optimizer": "adamw",
    "lr": 0.0005,
    "schedule": "cosine",
}

# What the user types, as TrainConfig fields (input 112 everywhere to keep the CPU grid affordable).
RECIPES = {
    "readme": _README,
    # The README's recipe on 2026-12-07 afternoon; nin-train's defaults with --init-from since that evening.
    "readme-freeze": {**_README, "freeze_epochs": 3, "backbone_lr_scale": 0.5},
    # nin-train --data DIR --init-from pretrained --input-size 112 (everything else nin-train's default)
    "defaults": {"init_from": "pretrained", "input_size": 112},
    # The README's recipe without --init-from.
    "scratch": {k: v for k, v in _README.items() if k != "init_from"},
}


def _picture(spec: str) -> np.ndarray:
    package, name = spec.split(":")
    if package == "sklearn":
        from sklearn.datasets import load_sample_image  # type: ignore[import-untyped]  # no stubs

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _crops(image: np.ndarray, count: int, held_out: bool, rng: np.random.Generator) -> Iterator[np.ndarray]:
    from PIL import Image

    h, w = image.shape[:2]
    left, right = (int(w * HELD_OUT_FROM), w) if held_out else (0, int(w * HELD_OUT_FROM))
    for _ in range(count):
        side = int(min(rng.uniform(0.2, 0.45) * min(h, w), right - left, h))
        x = int(rng.integers(left, right - side + 1))
        y = int(rng.integers(0, h - side + 1))
        crop = image[y : y + side, x : x + side].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-12, 12)  # colour jitter: gain per channel, shift
        pixels = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        yield np.asarray(pixels.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR))


def make_folders(root: Path, classes: int, train: int, held: int, seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` for the first ``classes`` sources."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, spec in SOURCES[:classes]:
        image = _picture(spec)
        for split, count in (("train", train), ("val", held)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(_crops(image, count, split == "val", rng)):
                Image.fromarray(crop).save(folder / f"{i:03d}.png")
    return root


# ---- variants: nin-train's options for the code before and after issue 29 -------------------------------------------

#: ``before``: nin-train's defaults before (the book's head, batch 128, SGD at lr 0.1) - the same code
#: path as commit 9bee9f7 apart from the dead-head check, which stops a run the old code let go on;
#: ``after``: nin-train's defaults from the wide head until the auto fine-tune stages (the wide head for
#: image folders, a batch that fits the folder, AdamW at 5e-4 with --init-from, one lr, no freeze, 10
#: epochs; its rows of 2026-12-07 had the 16-unit wide head, new runs get today's 64 units);
#: ``staged``: nin-train's defaults now (``after`` plus auto --freeze-epochs and --backbone-lr-scale:
#: TrainConfig.with_fine_tune_defaults; 15 epochs with --init-from). A recipe's own flags win over any variant.
VARIANTS: dict[str, dict[str, object]] = {
    "before": {
        "head": "book",
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "schedule": "constant",
        "freeze_epochs": 0,
        "backbone_lr_scale": 1.0,
        "epochs": 10,
    },
    "after": {"freeze_epochs": 0, "backbone_lr_scale": 1.0, "epochs": 10},
    "staged": {},
    # ``staged`` before --epochs auto (15 with --init-from): 10 epochs, 2 of them frozen.
    "staged-10": {"epochs": 10},
    # Tried on the 10-class seeds that left a class unlearnt (2026-12-07): more epochs, one lr after the freeze.
    "staged-25": {"epochs": 25},
    "freeze-3-scale-1": {"freeze_epochs": 3, "backbone_lr_scale": 1.0},
    # --backbone-lr-scale: the loaded layers at lr x this with --init-from (one lr: 1).
    "one-lr": {"backbone_lr_scale": 1.0, "freeze_epochs": 0},
    "scale-0.1": {"backbone_lr_scale": 0.1, "freeze_epochs": 0},
    "scale-0.3": {"backbone_lr_scale": 0.3, "freeze_epochs": 0},
    # --freeze-epochs: the new last block learns alone for the first N epochs (then every layer at one lr).
    "freeze-1": {"freeze_epochs": 1, "backbone_lr_scale": 1.0},
    "freeze-3": {"freeze_epochs": 3, "backbone_lr_scale": 1.0},
    "freeze-3-scale-0.3": {"freeze_epochs": 3, "backbone_lr_scale": 0.3},
    "freeze-3-scale-0.5": {"freeze_epochs": 3, "backbone_lr_scale": 0.5},
}


@contextmanager
def recording(record: list[np.ndarray], truths: list[np.ndarray] | None = None) -> Iterator[None]:
    """Keep the logits (and true labels) of each held-out pass nin-train makes (to see constant outputs,
    unused classes and which class takes another's images)."""
    from nin_edge.models import train as T

    predict = T.predict_logits

    def keep(model: nn.Module, batches: Iterable, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
        logits, truth = predict(model, batches, device)
        record.append(logits.numpy())
        if truths is not None:
            truths.append(np.asarray(truth))
        return logits, truth

    T.predict_logits = keep
    try:
        yield
    finally:
        T.predict_logits = predict


def run_one(data: Path, classes: int, recipe: str, variant: str, seed: int, out: Path) -> dict:
    """One ``nin-train`` run; held-out accuracy, classes predicted and whether the logits were constant."""
    from nin_edge.models.health import DeadHeadError
    from nin_edge.models.train import TrainConfig, TrainingDivergedError, train

    options: dict[str, Any] = {**VARIANTS[variant], **RECIPES[recipe]}
    config = TrainConfig(data=str(data), seed=seed, workers=0, plot=False, output=str(out / "ckpt.pt"), **options)
    logits: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    t0 = time.perf_counter()
    stopped = None
    history: list[float] = []
    trained: np.ndarray | None = None
    with recording(logits, truths):
        try:
            result = train(config)
            history = [h.held_out_acc for h in result.history]
            batch = result.recipe["batch_size"]
            trained = _train_split_predictions(data, config.output)
        except (DeadHeadError, TrainingDivergedError) as exc:  # a dead head (at chance for good) or a NaN loss
            stopped, batch = str(exc), config.batch_size
    last = logits[-1] if logits else None
    preds = last.argmax(1) if last is not None else np.zeros(0, np.int64)
    return {
        "classes": classes,
        "recipe": recipe,
        "variant": variant,
        "seed": seed,
        "held_out_acc": history[-1] if history else None,
        "held_out_acc_by_epoch": [round(a, 4) for a in history],
        "stopped": stopped,
        "classes_predicted": int(len(np.unique(preds))),
        "largest_class_share": float(np.bincount(preds, minlength=classes).max() / max(1, len(preds))),
        "constant_logits_epochs": int(sum(bool(np.ptp(lg, axis=0).max() < 1e-6) for lg in logits)),
        "dead_output_units": int((np.ptp(last, axis=0) < 1e-6).sum()) if last is not None else None,
        # A class no held-out image is given may still be learnt (its unit alive, its training images
        # recognised): the held-out crops come from another part of the picture.
        "classes_predicted_on_train": int(np.count_nonzero(trained)) if trained is not None else None,
        # rows: true class, columns: predicted class, of the last held-out pass (class order: SOURCES)
        "confusion": _confusion(truths[-1], preds, classes) if truths else None,
        "batch_size": batch,
        "seconds": round(time.perf_counter() - t0, 1),
        **({"weights": _shipped_weights()} if config.init_from == "pretrained" else {}),
    }


def _train_split_predictions(data: Path, weights: str) -> np.ndarray:
    """How many training images (without augmentation) the trained checkpoint gives each class (nin-eval)."""
    from nin_edge.models.evaluate import EvalConfig, run_eval

    scores = run_eval(EvalConfig(data=str(data), weights=weights, split="train", provider="cpu")).results[0]
    return np.asarray(scores.confusion).sum(axis=0)


def _confusion(truth: np.ndarray, preds: np.ndarray, classes: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth.astype(np.int64), preds.astype(np.int64)), 1)
    return matrix.tolist()


def _shipped_weights() -> str:
    """Which shipped weights 'pretrained' meant in this run (they changed on 2026-12-07)."""
    from nin_edge.models.registry import pretrained_path
    from nin_edge.runtime.core.files import sha256_file

    path = pretrained_path("nin")
    return f"{path.name} {sha256_file(path)[:12]}"


def summarize(rows: Iterable[dict]) -> str:
    """A markdown table: one line per (classes, recipe, variant) with each seed's held-out accuracy
    ("dead": stopped by the dead-head check or constant logits, "NaN": the loss diverged)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        code = row.get("code") or row["variant"]
        if row.get("train_per_class") and "per class" not in code:
            code += f"; {row['train_per_class']}+{row['held_per_class']} per class"
        if row.get("weights"):
            code += f"; weights {row['weights']}"
        groups.setdefault((row["classes"], row["recipe"], code), []).append(row)
    lines = [
        "| classes | recipe | code (variant) | seeds: held-out accuracy | mean | min | every class predicted |",
        "|---|---|---|---|---|---|---|",
    ]
    for (classes, recipe, code), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        accs = [_accuracy(r) for r in runs]
        numbers = [a if a is not None else 1 / classes for a in accs]  # a stopped run is at chance
        shown = [f"{a:.3f}" if a is not None else _why(r) for r, a in zip(runs, accs, strict=True)]
        cells = ", ".join(f"{r['seed']}: {text}" for r, text in zip(runs, shown, strict=True))
        every = sum(1 for r in runs if r.get("classes_predicted") == classes)
        lines.append(
            f"| {classes} | {recipe} | {code} | {cells} | {np.mean(numbers):.3f} | {min(numbers):.3f} "
            f"| {every}/{len(runs)} |"
        )
    return "\n".join(lines)


def _accuracy(row: dict) -> float | None:
    if row.get("held_out_acc") is None or row.get("constant_logits_final") or row.get("stopped"):
        return row.get("held_out_acc") if not row.get("stopped") else None
    return float(row["held_out_acc"])


def _summarize_file(path: str) -> str:
    return summarize(json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())


def _why(row: dict) -> str:
    return "NaN" if "loss became" in str(row.get("stopped")) else "dead"


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        return platform.processor()


@click.command()
@click.option("--classes", default="2,3,5,10", show_default=True, help="Class counts, comma-separated.")
@click.option("--recipes", default="readme,defaults,scratch", show_default=True)
@click.option("--variants", default="staged", show_default=True, help=f"Of: {', '.join(VARIANTS)}.")
@click.option("--seeds", default="0,1,2,3,4", show_default=True)
@click.option("--train", "train_count", type=int, default=60, show_default=True, help="Training images per class.")
@click.option("--held", type=int, default=15, show_default=True, help="Held-out images per class.")
@click.option("--summarize", is_flag=True, help="Print the table of the runs in --out (appended by runs) and stop.")
@click.option(
    "--out",
    default=f"benchmarks/results/{time.strftime('%Y-%m-%d')}-cpu/few-classes/runs.jsonl",
    show_default=True,
    help="JSON lines, appended.",
)
def main(
    classes: str, recipes: str, variants: str, seeds: str, train_count: int, held: int, summarize: bool, out: str
) -> None:
    """Train every (class count, recipe, variant, seed) once, one after another, and append a JSON line each."""
    if summarize:
        click.echo(_summarize_file(out))
        return
    torch.set_num_threads(1)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    with tempfile.TemporaryDirectory() as tmp:
        for c in (int(x) for x in classes.split(",")):
            data = make_folders(Path(tmp) / f"c{c}", c, train_count, held)
            for recipe in recipes.split(","):
                for variant in variants.split(","):
                    for seed in (int(s) for s in seeds.split(",")):
                        row = run_one(data, c, recipe, variant, seed, Path(tmp))
                        row.update(train_per_class=train_count, held_per_class=held, machine=machine)
                        row["date"] = time.strftime("%Y-%m-%d")
                        with open(out, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        acc = "stopped" if row["stopped"] else f"{row['held_out_acc']:.3f}"
                        click.echo(
                            f"C={c} {recipe:8s} {variant:6s} seed {seed}: held-out {acc}, "
                            f"predicted {row['classes_predicted']}/{c} ({row['seconds']} s)"
                        )


if __name__ == "__main__":
    main()
