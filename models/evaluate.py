"""Test-set evaluation of a checkpoint (PyTorch) and/or its ONNX export (through the runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from nin_edge.models.limits import check_limit
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_writable
from nin_edge.runtime.core.metadata import Preprocessing
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.providers import parse_providers
from torch import nn

from .checkpoint import load_weights, read_checkpoint
from .data import Split, load_split, to_model_input
from .distributed import Dist
from .plotting import pyplot, save_png
from .registry import ModelCard, create_model, model_card


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``nin-eval``; each field is also its flag."""

    data_dir: str = ""
    weights: str | None = None
    onnx: str | None = None
    provider: str = "auto"
    model: str | None = None
    input_size: int | None = None
    max_batch: int = 256
    limit: int | None = None
    confusion_png: str | None = None

    def validate(self) -> None:
        parse_providers(self.provider)
        if not self.data_dir:
            raise ConfigError("--data-dir is required: a folder with the Fashion-MNIST IDX files")
        if not self.weights and not self.onnx:
            raise ConfigError("give --weights CKPT, --onnx MODEL, or both")
        if not is_whole_number(self.max_batch, minimum=1):
            raise ConfigError(f"max batch must be positive, got {self.max_batch}")
        check_limit(self.limit, "--limit")
        if self.confusion_png:
            check_writable(self.confusion_png, "confusion matrix PNG")


@dataclass(frozen=True)
class Scores(Report):
    """Accuracy, per-class accuracy and confusion matrix of one model on the test split."""

    source: str
    input_size: int
    accuracy: float
    per_class: dict[str, float]
    confusion: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class EvalResult(Report):
    """The scores of each model given, and their top-1 agreement when both were given."""

    images: int
    results: tuple[Scores, ...]
    agreement: float | None = None
    providers: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        return [
            {"source": s.source, "input_size": s.input_size, "accuracy": s.accuracy, **s.per_class}
            for s in self.results
        ]

    def to_table(self) -> str:
        parts = []
        for s in self.results:
            parts.append(
                format_pairs(
                    [
                        ("model", s.source),
                        ("input size", s.input_size),
                        ("test images", self.images),
                        ("accuracy", f"{s.accuracy:.4f}"),
                    ]
                )
            )
            parts.append(format_table([{"class": k, "accuracy": round(v, 4)} for k, v in s.per_class.items()]))
            labels = list(s.per_class)
            conf = [
                {"true \\ predicted": labels[i], **{str(j): n for j, n in enumerate(row)}}
                for i, row in enumerate(s.confusion)
            ]
            parts.append("confusion matrix (rows: true class, columns: predicted index)\n" + format_table(conf))
        if self.agreement is not None:
            parts.append(f"top-1 agreement between checkpoint and ONNX: {self.agreement:.4f}")
        if self.providers:
            parts.append(f"onnxruntime providers: {', '.join(self.providers)}")
        return "\n\n".join(parts)


def scores(source: str, preds: np.ndarray, labels: np.ndarray, names: tuple[str, ...], input_size: int) -> Scores:
    """Accuracy, per-class accuracy and confusion matrix from predictions."""
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {names[i]: float(confusion[i, i] / max(1, confusion[i].sum())) for i in range(k)}
    return Scores(
        source=source,
        input_size=input_size,
        accuracy=float(np.mean(preds == labels)),
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
    )


def evaluate_model(
    model: nn.Module,
    split: Split,
    input_size: int,
    device: torch.device,
    pre: Preprocessing,
    batch_size: int = 256,
    ddp: Dist | None = None,
) -> np.ndarray:
    """Predicted class of every image of ``split`` (each rank does its share; gathered under DDP)."""
    ddp = ddp or Dist()
    index = np.arange(ddp.rank, len(split), ddp.world_size)
    preds = np.zeros(len(split), dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(index), batch_size):
            idx = index[start : start + batch_size]
            x = to_model_input(torch.from_numpy(split.images[idx]), input_size, pre).to(device)
            preds[idx] = model(x).argmax(1).cpu().numpy()
    if ddp.enabled:
        gathered = torch.from_numpy(preds)
        dist.all_reduce(gathered)  # each index is set by exactly one rank, the others hold 0
        preds = gathered.numpy()
    return preds


def predict_checkpoint(
    path: str, split: Split, *, model: str | None, input_size: int | None, batch_size: int
) -> tuple[np.ndarray, int, ModelCard]:
    """Predictions of a checkpoint, its input size and its model's card; model name and input size come
    from a nin-train checkpoint's recipe."""
    data = read_checkpoint(path)
    raw_recipe = data.get("recipe")
    recipe: dict = raw_recipe if isinstance(raw_recipe, dict) else {}
    # "model" holds a name in nin-train checkpoints but a state_dict in some others.
    stored = data.get("model") if isinstance(data.get("model"), str) else None
    name = model or stored or recipe.get("model") or "nin"
    card = model_card(name)
    # image_size: older checkpoints; a bare state_dict gets the card's (the book's) size.
    size = input_size or recipe.get("input_size") or recipe.get("image_size") or card.input_size
    net = create_model(name, input_size=size)
    load_weights(net, path)
    return evaluate_model(net, split, size, torch.device("cpu"), card.preprocessing, batch_size=batch_size), size, card


def predict_onnx(clf: Classifier, split: Split, batch_size: int) -> np.ndarray:
    """Predictions of an exported model, fed raw 28x28 uint8 images as an app would."""
    out = []
    for start in range(0, len(split), batch_size):
        out.append(clf.logits(split.images[start : start + batch_size, :, :, None]).argmax(1))
    return np.concatenate(out)


def run_eval(config: EvalConfig) -> EvalResult:
    """Evaluate the checkpoint and/or ONNX model of ``config`` on the test split."""
    config.validate()
    clf = Classifier(config.onnx, config.provider, max_batch=config.max_batch) if config.onnx else None
    # The test split's classes are those of the card of the model evaluated (every card: Fashion-MNIST).
    classes = model_card(config.model or "nin").labels
    if clf is not None and len(clf.labels) != len(classes):
        raise ConfigError(
            f"model '{config.onnx}' has {len(clf.labels)} classes; Fashion-MNIST evaluation needs "
            f"{len(classes)} ({', '.join(classes[:3])}, ...)"
        )
    split = load_split(config.data_dir, "test", config.limit)
    results, preds = [], []
    if config.weights:
        p, size, card = predict_checkpoint(
            config.weights, split, model=config.model, input_size=config.input_size, batch_size=config.max_batch
        )
        preds.append(p)
        results.append(scores(config.weights, p, split.labels, card.labels, size))
    if clf is not None:
        p = predict_onnx(clf, split, config.max_batch)
        preds.append(p)
        results.append(scores(clf.source, p, split.labels, clf.labels, clf.input_shape[1]))
    agreement = float(np.mean(preds[0] == preds[1])) if len(preds) == 2 else None
    if config.confusion_png:
        plot_confusion(results[-1], Path(config.confusion_png))
    return EvalResult(
        images=len(split), results=tuple(results), agreement=agreement, providers=tuple(clf.providers) if clf else ()
    )


def plot_confusion(result: Scores, path: Path) -> None:
    """Draw the confusion matrix of ``result`` into a PNG."""
    plt = pyplot()
    labels = list(result.per_class)
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
