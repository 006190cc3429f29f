"""Evaluation of a checkpoint (PyTorch) and/or its ONNX export (through the runtime) on the user's data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from nin_edge.models.limits import check_limit
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.errors import ConfigError, InputError
from nin_edge.runtime.core.files import check_writable
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.providers import parse_providers
from torch import nn

from .batches import Batches
from .chance import chance_check
from .checkpoint import TrainedCard, checkpoint_card, load_weights, read_checkpoint
from .datasets import Progress, Samples, check_same_split, open_data
from .plotting import pyplot, save_png
from .registry import create_model, model_card


class EvalSplit(Choice):
    """Which images ``nin-eval`` scores: ``auto`` is test/ where there is one, else the held-out val split."""

    AUTO = "auto"
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``nin-eval``; each field is also its flag."""

    data: str = ""
    weights: str | None = None
    onnx: str | None = None
    provider: str = "auto"
    model: str | None = None
    input_size: int | None = None
    max_batch: int = 256
    limit: int | None = None
    confusion_png: str | None = None
    split: str = "auto"
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 0
    strict: bool = False

    def validate(self) -> None:
        parse_providers(self.provider)
        if not self.data:
            raise ConfigError(
                "--data is required: a folder with one subfolder per class, a CSV/JSONL manifest, "
                "or a folder with the Fashion-MNIST IDX files"
            )
        if not self.weights and not self.onnx:
            raise ConfigError("give --weights CKPT, --onnx MODEL, or both")
        if not is_whole_number(self.max_batch, minimum=1):
            raise ConfigError(f"max batch must be positive, got {self.max_batch}")
        if not is_whole_number(self.workers, minimum=0):
            raise ConfigError(f"workers must be a whole number from 0, got {self.workers!r}")
        EvalSplit.check(self.split, "split")
        check_limit(self.limit, "--limit")
        if self.confusion_png:
            check_writable(self.confusion_png, "confusion matrix PNG")


@dataclass(frozen=True)
class Scores(Report):
    """Accuracy, per-class precision and recall, and the confusion matrix of one model on one split."""

    source: str
    input_size: int
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    support: dict[str, int]
    confusion: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class EvalResult(Report):
    """The scores of each model given, and their top-1 agreement when both were given."""

    images: int
    results: tuple[Scores, ...]
    agreement: float | None = None
    providers: tuple[str, ...] = ()
    data: str = ""
    split: str = ""
    notes: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        return [
            {
                "source": s.source,
                "split": self.split,
                "input_size": s.input_size,
                "class": name,
                "precision": s.precision[name],
                "recall": s.recall[name],
                "support": s.support[name],
                "accuracy": s.accuracy,
            }
            for s in self.results
            for name in s.recall
        ]

    def to_table(self) -> str:
        parts = []
        for s in self.results:
            parts.append(
                format_pairs(
                    [
                        ("model", s.source),
                        ("data", f"{self.data} ({self.split} split)" if self.data else self.split),
                        ("input size", s.input_size),
                        ("images", self.images),
                        ("accuracy", f"{s.accuracy:.4f}"),
                    ]
                )
            )
            parts.append(
                format_table(
                    [
                        {
                            "class": k,
                            "precision": round(s.precision[k], 4),
                            "recall": round(s.recall[k], 4),
                            "images": s.support[k],
                        }
                        for k in s.recall
                    ]
                )
            )
            labels = list(s.recall)
            conf = [
                {"true \\ predicted": labels[i], **{str(j): n for j, n in enumerate(row)}}
                for i, row in enumerate(s.confusion)
            ]
            key = ", ".join(f"{j} {name}" for j, name in enumerate(labels))
            parts.append(f"confusion matrix (rows: true class, columns: predicted index: {key})\n" + format_table(conf))
        if self.agreement is not None:
            parts.append(f"top-1 agreement between checkpoint and ONNX: {self.agreement:.4f}")
        if self.providers:
            parts.append(f"onnxruntime providers: {', '.join(self.providers)}")
        parts.extend(self.notes)
        return "\n\n".join(parts)


def scores(source: str, preds: np.ndarray, labels: np.ndarray, names: tuple[str, ...], input_size: int) -> Scores:
    """Accuracy, per-class precision and recall and the confusion matrix from predictions."""
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    true_pos = np.diag(confusion)
    return Scores(
        source=source,
        input_size=input_size,
        accuracy=float(np.mean(preds == labels)) if len(labels) else 0.0,
        precision={names[i]: float(true_pos[i] / max(1, confusion[:, i].sum())) for i in range(k)},
        recall={names[i]: float(true_pos[i] / max(1, confusion[i].sum())) for i in range(k)},
        support={names[i]: int(confusion[i].sum()) for i in range(k)},
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
    )


def evaluate_model(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class of every image ``batches`` yields (model-ready tensors)."""
    logits, truth = predict_logits(model, batches, device)
    return logits.argmax(1).numpy(), truth


def predict_logits(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """The scores (images x classes, on the CPU) and true class of every image ``batches`` yields."""
    scores, truth = [], []
    model.eval()
    with torch.no_grad():
        for x, labels in batches:
            scores.append(model(x.to(device)).float().cpu())
            truth.append(labels.numpy())
    if not scores:
        return torch.zeros(0, 0), np.zeros(0, np.int64)
    return torch.cat(scores), np.concatenate(truth)


@dataclass(frozen=True)
class _Checkpoint:
    """A checkpoint to evaluate: its model and card (classes, channels, size, preprocessing)."""

    name: str
    card: TrainedCard
    data_record: object


def _checkpoint(config: EvalConfig) -> _Checkpoint:
    """Read a checkpoint's card; a bare state_dict gets the registered model's card and its size."""
    path = config.weights or ""
    data = read_checkpoint(path)
    raw_recipe = data.get("recipe")
    recipe: dict = raw_recipe if isinstance(raw_recipe, dict) else {}
    # "model" holds a name in nin-train checkpoints but a state_dict in some others.
    stored = data.get("model") if isinstance(data.get("model"), str) else None
    name = config.model or stored or recipe.get("model") or "nin"
    registered = model_card(name)
    card = checkpoint_card(data, path)
    # image_size: older checkpoints; a card without a recipe (nin-prune --epochs-per-step 0) has its own
    # size; a bare state_dict gets the registered model's (the book's).
    size = (
        config.input_size
        or recipe.get("input_size")
        or recipe.get("image_size")
        or (card.input_size if card else registered.input_size)
    )
    if card is None:
        card = TrainedCard(
            labels=registered.labels,
            in_channels=registered.in_channels,
            input_size=size,
            preprocessing=registered.preprocessing,
        )
    return _Checkpoint(name=name, card=replace(card, input_size=size), data_record=data.get("data"))


def run_eval(config: EvalConfig, on_scan: Progress | None = None) -> EvalResult:
    """Evaluate the checkpoint and/or ONNX model of ``config`` on a split of ``config.data``."""
    config.validate()
    clf = Classifier(config.onnx, config.provider, max_batch=config.max_batch) if config.onnx else None
    ckpt = _checkpoint(config) if config.weights else None
    classes = ckpt.card.labels if ckpt else clf.labels if clf else ()
    if ckpt and clf and clf.labels != ckpt.card.labels:
        raise ConfigError(
            f"checkpoint '{config.weights}' and model '{config.onnx}' have other classes "
            f"({len(ckpt.card.labels)} and {len(clf.labels)}); evaluate them one at a time"
        )
    record = ckpt.data_record if ckpt and isinstance(ckpt.data_record, dict) else {}
    data = open_data(
        config.data,
        val_fraction=record.get("val_fraction", config.val_fraction),
        seed=record.get("seed", config.seed),
        channels=ckpt.card.in_channels if ckpt else clf.input_shape[0] if clf else None,
        strict=config.strict,
        progress=on_scan,
    )
    what = f"checkpoint '{config.weights}'" if ckpt else f"model '{config.onnx}'"
    if data.kind == "idx" and len(classes) != len(data.classes):
        raise ConfigError(
            f"{what} has {len(classes)} classes; Fashion-MNIST evaluation needs "
            f"{len(data.classes)} ({', '.join(data.classes[:3])}, ...)"
        )
    data.check_classes(classes, what)
    split = data.eval_split if config.split == "auto" else config.split
    samples = data.split(split).head(config.limit)
    notes = list(data.notes)
    if ckpt is not None:
        note = check_same_split(data, ckpt.data_record, what, strict=False)
        notes += [note] if note else []
    results, preds = [], []
    if ckpt is not None:
        card = ckpt.card
        net = create_model(
            ckpt.name,
            in_channels=card.in_channels,
            num_classes=len(card.labels),
            input_size=card.input_size,
            **card.model_options,
        )
        load_weights(net, config.weights or "")
        batches = Batches(
            samples,
            channels=card.in_channels,
            size=card.input_size,
            pre=card.preprocessing,
            batch_size=config.max_batch,
            workers=config.workers,
            strict=config.strict,
        )
        p, truth = evaluate_model(net, batches, torch.device("cpu"))
        notes += filter(None, [batches.failure_note()])
        preds.append(p)
        results.append(scores(config.weights or "", p, truth, classes, card.input_size))
        notes += _chance_note(config.weights or "", p, truth, classes, split)
    if clf is not None:
        p, truth, failed = predict_onnx(clf, samples, config.max_batch, strict=config.strict)
        preds.append(p)
        results.append(scores(clf.source, p, truth, classes, clf.input_shape[1]))
        notes += _chance_note(clf.source, p, truth, classes, split)
        if failed and ckpt is None:
            notes.append(f"skipped {len(failed)} image(s) that failed to decode: {', '.join(failed[:5])}")
    agreement = float(np.mean(preds[0] == preds[1])) if len(preds) == 2 and len(preds[0]) == len(preds[1]) else None
    if config.confusion_png:
        plot_confusion(results[-1], Path(config.confusion_png))
    return EvalResult(
        images=len(preds[-1]),
        results=tuple(results),
        agreement=agreement,
        providers=tuple(clf.providers) if clf else (),
        data=data.source,
        split=split,
        notes=tuple(notes),
    )


def _chance_note(source: str, preds: np.ndarray, truth: np.ndarray, classes: tuple[str, ...], split: str) -> list[str]:
    """The chance-level warning for one model's predictions, if it has one."""
    line = chance_check(preds, truth, classes, f"{split} split").line()
    return [f"warning: '{source}': {line}; this model is no better than guessing here"] if line else []


def predict_onnx(
    clf: Classifier, samples: Samples, batch_size: int, *, strict: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Predictions of an exported model fed raw uint8 images, as an app would (the runtime preprocesses);
    returns them with the true classes and the files that could not be read (left out)."""
    out, truth, failed = [], [], []
    for start in range(0, len(samples), batch_size):
        raw, labels = [], []
        for i in range(start, min(start + batch_size, len(samples))):
            try:
                image = samples.raw(i)
            except InputError:
                if strict:
                    raise
                failed.append(samples.describe(i))
                continue
            raw.append(image if image.ndim == 3 else image[:, :, None])
            labels.append(samples.labels[i])
        if raw:
            out.append(clf.logits(raw).argmax(1))
            truth.append(np.asarray(labels, dtype=np.int64))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), failed
    return np.concatenate(out), np.concatenate(truth), failed


def plot_confusion(result: Scores, path: Path) -> None:
    """Draw the confusion matrix of ``result`` into a PNG."""
    plt = pyplot()
    labels = list(result.recall)
    conf = np.array(result.confusion)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7)
    ax.set_title(f"{Path(result.source).name}: accuracy {result.accuracy:.4f}")
    fig.tight_layout()
    save_png(fig, path)
