"""``nin-infer``: classify image files and ``.npy`` arrays with an exported model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..classifier import Classifier, Prediction
from ..core.choices import OutputFormat
from ..core.errors import InputError
from ..core.files import load_npy
from ..core.report import Report, format_table
from ..serving.triton import TritonClassifier
from .common import fallback_option, format_option, one_line_errors, provider_option, renamed_option


@dataclass(frozen=True)
class ImageResult:
    """The top-k predictions for one input image."""

    input: str
    top: tuple[Prediction, ...]


@dataclass(frozen=True)
class InferenceReport(Report):
    """Predictions for every input, with the providers that computed them."""

    model: str
    providers: tuple[str, ...]
    results: tuple[ImageResult, ...]
    fallback_reason: str | None = None
    #: What the runtime warned about while loading (a fallback, an INT8 model made for another CPU).
    warnings: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        return [
            {"input": r.input, "rank": k + 1, "label": p.label, "index": p.index, "probability": p.probability}
            for r in self.results
            for k, p in enumerate(r.top)
        ]

    def to_table(self) -> str:
        rows = [
            {
                "input": r.input,
                "label": r.top[0].label,
                "probability": round(r.top[0].probability, 4),
                "next": ", ".join(f"{p.label} {p.probability:.3f}" for p in r.top[1:]),
            }
            for r in self.results
        ]
        head = f"model {self.model} on {', '.join(self.providers)}"
        return (
            head
            + "\n"
            + format_table(
                rows, [c for c in ("input", "label", "probability", "next") if c != "next" or rows[0]["next"]]
            )
        )


def load_inputs(clf: Classifier, paths: list[str]) -> tuple[list[str], np.ndarray]:
    """Read each image file or ``.npy`` array and prepare it; returns names and one float32 batch."""
    names: list[str] = []
    tensors: list[np.ndarray] = []
    for path in paths:
        if Path(path).suffix.lower() == ".npy":
            array = load_npy(path)
            batch = clf.prepare(array)
            is_batch = array.ndim == 4
        else:
            batch, is_batch = clf.prepare(path), False
        if is_batch:
            names.extend(f"{path}[{i}]" for i in range(len(batch)))
        else:
            names.append(path)
        tensors.append(batch)
    return names, np.concatenate(tensors)


def run_inference(
    model: str,
    inputs: list[str],
    *,
    provider: str,
    top_k: int,
    max_batch: int,
    fallback: bool,
    triton_url: str | None = None,
    triton_model: str | None = None,
) -> InferenceReport:
    """Classify ``inputs`` with ``model``: the library call behind ``nin-infer``.

    With ``triton_url`` the server computes the logits; the local model file still gives the
    labels and preprocessing, so the answers match in-process inference.
    """
    with warnings.catch_warnings(record=True) as caught:
        # Reported once each, in the result (the command prints them), instead of as Python warnings.
        warnings.simplefilter("always", RuntimeWarning)
        clf = Classifier(model, provider, fallback=fallback, max_batch=max_batch)
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))
    if not 1 <= top_k <= len(clf.labels):
        raise InputError(f"--top-k must be from 1 to {len(clf.labels)} for this model, got {top_k}")
    names, batch = load_inputs(clf, inputs)
    runner: Classifier | TritonClassifier = clf
    providers = tuple(clf.providers)
    if triton_url:
        runner = TritonClassifier(triton_url, triton_model or clf.metadata.model, clf)
        providers = (f"triton {triton_url}",)
    results = tuple(
        ImageResult(name, tuple(top)) for name, top in zip(names, runner.classify(batch, top_k), strict=False)
    )
    return InferenceReport(
        model=clf.metadata.model,
        providers=providers,
        results=results,
        fallback_reason=clf.fallback_reason,
        warnings=notes,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@provider_option()
@fallback_option()
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True, help="Largest batch per run.")
@renamed_option("--batch-size", "--max-batch", "max_batch", type=click.IntRange(min=1))
@click.option("--triton-url", default=None, help="Let a Triton server (e.g. http://127.0.0.1:8000) compute the logits.")
@click.option("--triton-model", default=None, help="Model name on the server [default: the model's own name].")
@format_option(OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.CSV)
@one_line_errors
def main(model: str, inputs: tuple[str, ...], fmt: str, **options: Any) -> None:
    """Classify image files (PNG, JPEG) and .npy arrays with an exported MODEL."""
    report = run_inference(model, list(inputs), **options)
    for note in report.warnings:
        click.echo(f"warning: {note}", err=True)
    click.echo(report.render(fmt))
