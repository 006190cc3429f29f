"""The whole export as one library call: ``run_export(ExportConfig(...)) -> ExportSummary``."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from nin_edge.export.timing import measure, summarize
from nin_edge.models import ZooModel, create_model, load_weights, model_card, profile_model
from nin_edge.models.checkpoint import TrainedCard, checkpoint_card, read_checkpoint
from nin_edge.models.limits import check_input_budget, check_input_size, check_seed
from nin_edge.models.registry import pretrained_path
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.choices import Precision
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.metadata import ModelMetadata
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.providers import parse_providers

from .precision import (
    MIN_INT8_OPSET,
    CalibrationMethod,
    CalibrationSet,
    Int8Recipe,
    choose_recipe,
    convert_fp16,
    gate_advice,
    gate_arithmetic,
    load_images,
    quantize_int8,
    unfused_logits,
)
from .steps import (
    GraphCheck,
    ParityResult,
    check_graph,
    check_opset,
    check_parity,
    export_onnx,
    flatten_to_reshape,
    serialize_checked,
    simplify,
    with_metadata,
)
from .targets import Target, TargetOptions, get_target
from .targets.onnx import OnnxOptions
from .triton import TritonOptions, TritonRepo


@dataclass(frozen=True)
class Deploy:
    """One more deploy target of an export: a registered target's name (``export/targets/``), the
    destination it writes (``out``) and its options (None: the target's defaults)."""

    target: str
    out: str
    options: Any = None


#: The agreement gate where no other is given: 99% of top-1 predictions as FP32's.
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class ExportConfig:
    """Options of an export; each field is also the ``nin-export`` flag of the same name, except
    ``deploy``: more deploy targets, for library callers (a target's own flag wires it into the CLI)."""

    model: str = "nin"
    opset: int = 17
    weights: str | None = None
    random_init: bool = False
    output: str | None = None
    input_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    simplify: bool = True
    check_batch_sizes: tuple[int, ...] = (1, 2, 7)
    atol: float = 1e-4
    seed: int = 0
    precision: str = "fp32"
    calibration_data: str | None = None
    calibration_size: int = 300
    calibration_method: str = "minmax"
    int8_target: str = "auto"
    int8_types: str = "auto"
    int8_reduce_range: str = "auto"
    int8_fp32_layers: str = "auto"
    eval_data: str | None = None
    eval_size: int = 1000
    #: None: 0.99, unless ``max_accuracy_drop`` makes the accuracy drop the gate (see :attr:`agreement_gate`).
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None
    provider: str = "cpu"
    triton_repo: str | None = None
    triton: TritonOptions = field(default_factory=TritonOptions)
    deploy: tuple[Deploy, ...] = ()

    @property
    def uses_pretrained(self) -> bool:
        return (
            not self.weights
            and not self.random_init
            and model_card(self.model).weights_fit(self.in_channels, self.num_classes)
        )

    def trained_card(self) -> TrainedCard | None:
        """The card a nin-train checkpoint given as ``weights`` carries (classes, channels, size,
        preprocessing), or None for bare weights, the shipped weights and random init."""
        if not self.weights:
            return None
        return checkpoint_card(read_checkpoint(self.weights), self.weights)

    def split_record(self) -> dict[str, Any]:
        """How the nin-train checkpoint given as ``weights`` split its data (``val_fraction``, ``seed``),
        so that calibration and evaluation on that data use the same held-out images; else empty."""
        if not self.weights:
            return {}
        record = read_checkpoint(self.weights).get("data")
        return record if isinstance(record, dict) else {}

    def card(self) -> TrainedCard:
        """What the exported model's metadata says: the trained checkpoint's card, else the registered
        model's labels and preprocessing for the resolved channels, classes and size."""
        config = self.resolved()
        trained = config.trained_card()
        if trained is not None:
            return replace(trained, input_size=config.size)
        registered = model_card(config.model)
        return TrainedCard(
            labels=registered.labels_for(config.num_classes or registered.num_classes),
            in_channels=config.in_channels or registered.in_channels,
            input_size=config.size,
            preprocessing=registered.preprocessing,
        )

    def resolved(self) -> ExportConfig:
        """This config with channels, classes and ``input_size`` filled in: as given, else from a
        nin-train checkpoint's card, else the registered model's (input size: the size the shipped
        weights were trained at when they are used, else 224, the book's size)."""
        registered = model_card(self.model)
        trained = self.trained_card()
        filled = {
            "in_channels": trained.in_channels if trained else registered.in_channels,
            "num_classes": len(trained.labels) if trained else registered.num_classes,
        }
        for key, value in filled.items():
            given = getattr(self, key)
            if trained is not None and given is not None and given != value:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(
                    f"{flag} {given} contradicts '{self.weights}', trained with {key.replace('_', ' ')} {value}; "
                    f"leave {flag} out (the checkpoint says it)"
                )
        config = replace(
            self,
            in_channels=filled["in_channels"] if self.in_channels is None else self.in_channels,
            num_classes=filled["num_classes"] if self.num_classes is None else self.num_classes,
        )
        if config.input_size is None:
            size = trained.input_size if trained else registered.export_size(config.uses_pretrained)
            config = replace(config, input_size=size)
        return config

    @property
    def size(self) -> int:
        """The input size the model is exported at (see :meth:`resolved`)."""
        if self.input_size is not None:
            return self.input_size
        return cast(int, self.resolved().input_size)  # resolved() always fills it

    @property
    def agreement_gate(self) -> float | None:
        """The top-1 agreement with FP32 a reduced precision must reach: ``min_agreement`` when given;
        else 0.99, unless ``max_accuracy_drop`` makes the accuracy drop (labels at hand) the gate."""
        if self.min_agreement is not None:
            return self.min_agreement
        return None if self.max_accuracy_drop is not None else DEFAULT_MIN_AGREEMENT

    def int8_recipe(self) -> Int8Recipe:
        """The INT8 recipe these options choose (``int8_target`` auto: this machine's CPU class)."""
        return choose_recipe(
            self.int8_target,
            types=self.int8_types,
            reduce_range=self.int8_reduce_range,
            fp32_layers=self.int8_fp32_layers,
        )

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(f"{self.model}.onnx")

    def validate(self) -> None:
        """Check every option that can be checked before any work starts."""
        check_opset(self.opset)
        parse_providers(self.provider)
        if not self.check_batch_sizes or any(not is_whole_number(n, minimum=1) for n in self.check_batch_sizes):
            raise ConfigError(
                f"check batch sizes must be positive whole numbers, got {list(self.check_batch_sizes)}; e.g. 1,2,7"
            )
        if not isinstance(self.atol, (int, float)) or not math.isfinite(self.atol) or self.atol <= 0:
            raise ConfigError(f"atol must be a positive number, got {self.atol!r}")
        check_seed(self.seed)
        if self.weights and self.random_init:
            raise ConfigError("--weights and --random-init exclude each other; give one")
        resolved = self.resolved()
        channels = resolved.in_channels
        if isinstance(channels, int) and channels > 0:  # else the model builder says what is wrong
            size = resolved.size
            check_input_size(size, channels)  # the exporter traces a batch of 2
            for n in self.check_batch_sizes:
                check_input_budget(n, channels, size, "--check-batch-sizes")
        Precision.check(self.precision, "precision")
        if self.precision == "int8":
            if not self.calibration_data:
                raise ConfigError(
                    "INT8 needs calibration images: --calibration-data DIR (Fashion-MNIST IDX files, images or .npy), "
                    "or --calibration-data synthetic to accept uniform noise (recorded in the model)"
                )
            if self.opset < MIN_INT8_OPSET:
                raise ConfigError(
                    f"INT8 with per-channel weights needs opset {MIN_INT8_OPSET} or newer, got {self.opset}"
                )
            CalibrationMethod.check(self.calibration_method, "calibration method")
            self.int8_recipe()
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"min agreement must be in [0, 1], got {self.min_agreement!r}")
        if self.max_accuracy_drop is not None:
            if not (isinstance(self.max_accuracy_drop, (int, float)) and 0 <= self.max_accuracy_drop <= 100):
                raise ConfigError(
                    f"max accuracy drop is in points of accuracy, 0 to 100 (e.g. 0.5), got {self.max_accuracy_drop!r}"
                )
            if not self.eval_data:
                raise ConfigError(
                    "--max-accuracy-drop needs labelled images to measure accuracy on: give --eval-data "
                    "(class folders, a manifest or a Fashion-MNIST IDX folder), or gate on agreement with "
                    "--min-agreement"
                )
        for target, options, out in self.deploy_targets():
            target.check(options, out)

    def deploy_targets(self) -> list[tuple[Target, TargetOptions, Path]]:
        """The targets this export writes, with their options and destinations: the ONNX file, and
        the Triton repository when ``triton_repo`` is given."""
        chosen: list[tuple[Target, TargetOptions, Path]] = [(get_target("onnx"), OnnxOptions(), self.output_path)]
        if self.triton_repo:
            chosen.append((get_target("triton"), self.triton, Path(self.triton_repo)))
        for extra in self.deploy:
            target = get_target(extra.target)
            options = target.options_type() if extra.options is None else extra.options
            if not isinstance(options, target.options_type):
                raise ConfigError(
                    f"deploy target {extra.target!r} takes {target.options_type.__name__}, got {type(options).__name__}"
                )
            chosen.append((target, options, Path(extra.out)))
        return chosen


@dataclass(frozen=True)
class ExportSummary(Report):
    """What was exported, from which weights, how it checks out and what it costs."""

    model: str
    output: str
    weights: str
    opset: int
    input_size: int
    in_channels: int
    num_classes: int
    params: int
    macs: int
    file_bytes: int
    nodes_exported: int
    nodes_final: int
    simplified: bool
    ops: dict[str, int]
    parity: ParityResult
    seconds: float = 0.0
    labels: tuple[str, ...] = field(default=())
    precision: str = "fp32"
    reduced: PrecisionReport | None = None
    triton: TritonRepo | None = None
    deployed: tuple[Report, ...] = ()

    def to_dict(self) -> dict:
        data = super().to_dict()
        if not self.deployed:  # the JSON of an export without extra targets stays as it was
            data.pop("deployed")
        return data

    def rows(self) -> list[dict]:
        flat = {k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list))}
        flat["parity_max_abs_err"] = self.parity.max_abs_err
        flat["parity_passed"] = self.parity.passed
        return [flat]

    def to_table(self) -> str:
        pairs = [
            ("model", self.model),
            ("output", self.output),
            ("weights", self.weights),
            ("opset", self.opset),
            ("precision", self.precision),
            ("input", f"float32 (batch, {self.in_channels}, {self.input_size}, {self.input_size})"),
            ("classes", self.num_classes),
            ("parameters", self.params),
            ("MACs per image", self.macs),
            ("file size", f"{self.file_bytes / 1e6:.2f} MB ({self.file_bytes:,} bytes)"),
            (
                "nodes",
                f"{self.nodes_exported} exported -> {self.nodes_final} final"
                + ("" if self.simplified else " (not simplified)"),
            ),
            ("ops", ", ".join(f"{k} {v}" for k, v in self.ops.items())),
            ("time", f"{self.seconds:.2f} s"),
        ]
        verdict = "passed" if self.parity.passed else "FAILED"
        text = (
            format_pairs(pairs)
            + f"\n\nparity of the FP32 graph against PyTorch ({self.parity.provider}, atol {self.parity.atol:g}): "
            f"{verdict}\n" + format_table(self.parity.rows())
        )
        if self.reduced is not None:
            text += f"\n\n{self.precision} against FP32\n" + self.reduced.to_table()
        if self.triton is not None:
            text += f"\n\nTriton model repository: {self.triton.model_dir}\n{self.triton.config_text}"
        for report in self.deployed:
            text += "\n\n" + report.to_table()
        return text


def build_model(config: ExportConfig) -> tuple[ZooModel, str]:
    """Create the model and load its weights; returns it with a description of the weights."""
    # A private RNG stream, so a random-init export is reproducible from the seed in its metadata
    # without reseeding the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(
            config.model, in_channels=config.in_channels, num_classes=config.num_classes, input_size=config.size
        )
    if config.weights:
        loaded = load_weights(model, config.weights)
        return model, f"sha256:{loaded.sha256}"
    if config.uses_pretrained:
        loaded = load_weights(model, pretrained_path(config.model))
        return model, f"pretrained {Path(loaded.path).name} sha256:{loaded.sha256}"
    why = (
        ""
        if config.random_init
        else f" (no pretrained weights for {config.model} with {config.in_channels} channel(s), "
        f"{config.num_classes} classes)"
    )
    return model, f"random-init seed {config.seed}{why}"


@dataclass(frozen=True)
class PrecisionReport(Report):
    """A reduced-precision model against its FP32 source on the same images."""

    precision: str
    calibration: str
    eval_images: str
    images: int
    top1_agreement: float
    max_abs_err: float
    mean_abs_err: float
    accuracy_fp32: float | None
    accuracy_reduced: float | None
    fp32_bytes: int
    reduced_bytes: int
    provider: str
    latency_ms: dict[str, dict[str, float]]
    #: FP32's accuracy minus the reduced model's, in points (None without labels).
    accuracy_drop_points: float | None = None
    #: INT8 only: the machine class and recipe, and the nodes kept FP32 with their share of the MACs.
    recipe: str = ""
    #: INT8 only: the arithmetic the agreement was measured in (this CPU's kernels, or unfused Q/DQ for another's).
    gate_arithmetic: str = ""

    def to_table(self) -> str:
        lat = self.latency_ms
        pairs = [
            ("precision", self.precision),
            *([("recipe", self.recipe)] if self.recipe else []),
            *([("gate arithmetic", self.gate_arithmetic)] if self.gate_arithmetic else []),
            ("calibration", self.calibration or "-"),
            ("compared on", f"{self.images} images ({self.eval_images})"),
            ("top-1 agreement", f"{self.top1_agreement:.4f}"),
            ("logit error", f"max {self.max_abs_err:.4g}, mean {self.mean_abs_err:.4g}"),
            ("file size", f"{self.reduced_bytes:,} bytes, {100 * self.reduced_bytes / self.fp32_bytes:.1f}% of FP32"),
        ]
        if self.accuracy_fp32 is not None:
            pairs.append(
                (
                    "accuracy",
                    f"fp32 {self.accuracy_fp32:.4f}, {self.precision} {self.accuracy_reduced:.4f} "
                    f"(drop {self.accuracy_drop_points:+.2f} points)",
                )
            )
        for batch in lat["fp32"]:
            fp32, red = lat["fp32"][batch], lat[self.precision][batch]
            pairs.append(
                (
                    f"latency batch {batch}",
                    f"fp32 {fp32:.2f} ms, {self.precision} {red:.2f} ms ({fp32 / red:.2f}x) on {self.provider}",
                )
            )
        return format_pairs(pairs)


def median_ms(clf, x: np.ndarray, runs: int = 15) -> float:
    """Median latency of ``clf.logits(x)`` after two warm-up calls (a quick figure, not a benchmark)."""
    return summarize(measure(lambda: clf.logits(x), warmup=2, min_runs=runs, max_runs=runs)).p50_ms


def compare_precision(
    *,
    fp32: bytes,
    reduced: bytes,
    precision: str,
    images: CalibrationSet,
    calibration: str,
    provider: str,
    recipe: str = "",
    int8: Int8Recipe | None = None,
) -> PrecisionReport:
    """Agreement, logit error, accuracy, size and latency of the ``reduced`` model against ``fp32``
    (both serialised ONNX models). An INT8 model (``int8``: its recipe) is compared in its target's
    arithmetic (:func:`~nin_edge.export.precision.gate_arithmetic`)."""
    fp32_clf = Classifier(fp32, provider)
    reduced_clf = Classifier(reduced, provider)
    a = fp32_clf.logits(images.images)
    unfused, arithmetic = gate_arithmetic(int8, reduced_clf.providers[0]) if int8 else (False, "")
    b = unfused_logits(reduced, images.images) if unfused else reduced_clf.logits(images.images)
    err = np.abs(a.astype(np.float64) - b.astype(np.float64))
    acc = (lambda logits: float(np.mean(logits.argmax(1) == images.labels))) if images.labels is not None else None
    latency: dict[str, dict[str, float]] = {"fp32": {}, precision: {}}
    for batch in (1, 8):
        x = images.images[:batch] if len(images.images) >= batch else np.repeat(images.images[:1], batch, axis=0)
        latency["fp32"][str(batch)] = median_ms(fp32_clf, x)
        latency[precision][str(batch)] = median_ms(reduced_clf, x)
    return PrecisionReport(
        precision=precision,
        calibration=calibration,
        eval_images=images.source,
        images=len(images.images),
        top1_agreement=float(np.mean(a.argmax(1) == b.argmax(1))),
        max_abs_err=float(err.max()),
        mean_abs_err=float(err.mean()),
        accuracy_fp32=acc(a) if acc else None,
        accuracy_reduced=acc(b) if acc else None,
        accuracy_drop_points=100 * (acc(a) - acc(b)) if acc else None,
        fp32_bytes=len(fp32),
        reduced_bytes=len(reduced),
        provider=reduced_clf.providers[0],
        latency_ms=latency,
        recipe=recipe,
        gate_arithmetic=arithmetic,
    )


def _reduce(
    config: ExportConfig, fp32: onnx.ModelProto, metadata: ModelMetadata
) -> tuple[PrecisionReport, bytes, GraphCheck]:
    """The INT8 or FP16 variant of the verified ``fp32`` model, labelled, checked and compared."""
    size, channels = config.size, metadata.in_channels
    calibration = recipe_line = ""
    int8_fields: dict = {}
    recipe = None
    fp32_bytes = fp32.SerializeToString()
    split_record = config.split_record()  # read once: calibration and evaluation hold out the same images
    if config.precision == "int8":
        recipe = config.int8_recipe()
        if config.calibration_data is None:  # validate() refuses this; say so rather than crash
            raise ConfigError("--precision int8 needs --calibration-data")
        calib = load_images(
            config.calibration_data,
            size=size,
            channels=channels,
            limit=config.calibration_size,
            split="train",
            seed=config.seed,
            pre=metadata.preprocessing,
            split_record=split_record,
        )
        # onnxruntime's quantization tools read and write files, so INT8 goes through a scratch folder.
        with tempfile.TemporaryDirectory() as scratch:
            fp32_path, int8_path = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
            fp32_path.write_bytes(fp32_bytes)
            q = quantize_int8(
                fp32_path=fp32_path,
                output=int8_path,
                calibration=calib,
                method=config.calibration_method,
                recipe=recipe,
            )
            converted = onnx.load(str(int8_path))
        calibration = f"{config.calibration_method} on {calib.source}; target {q.target}; {q.recipe}"
        int8_fields = q.metadata_fields(recipe)
        recipe_line = (
            f"{q.target}: {q.recipe} ({len(q.fp32_nodes)} nodes, {q.fp32_mac_share:.1%} of the MACs); {recipe.why}"
        )
    else:
        converted = convert_fp16(model=fp32)
    labelled = with_metadata(
        model=converted,
        metadata=replace(metadata, precision=config.precision, calibration=calibration, **int8_fields),
    )
    graph = check_graph(model=labelled, opset=config.opset)
    reduced_bytes = serialize_checked(model=labelled)
    source = config.eval_data or config.calibration_data or "synthetic"
    held_out = not config.eval_data and source != "synthetic" and config.precision == "int8"
    images = load_images(
        source,
        size=size,
        channels=channels,
        limit=config.eval_size,
        split="test" if config.eval_data else "train",
        seed=config.seed + 1,
        pre=metadata.preprocessing,
        # Agreement on the calibration images themselves would hide a bad calibration.
        skip=config.calibration_size if held_out else 0,
        split_record=split_record,
    )
    report = compare_precision(
        fp32=fp32_bytes,
        reduced=reduced_bytes,
        precision=config.precision,
        images=images,
        calibration=calibration,
        provider=config.provider,
        recipe=recipe_line,
        int8=recipe,
    )
    _gate(config, report, recipe)
    return report, reduced_bytes, graph


def _gate(config: ExportConfig, report: PrecisionReport, recipe: Int8Recipe | None) -> None:
    """Fail the export when the reduced model misses the agreement or accuracy-drop gate."""
    failed = []
    gate = config.agreement_gate
    if gate is not None and report.top1_agreement < gate:
        failed.append(
            f"agrees with FP32 on {report.top1_agreement:.2%} of {report.images} images, below --min-agreement {gate:g}"
            + (f" (measured with {report.gate_arithmetic})" if report.gate_arithmetic else "")
        )
    if config.max_accuracy_drop is not None:
        drop = report.accuracy_drop_points
        if drop is None:
            raise ConfigError(
                f"--max-accuracy-drop needs labels, and the --eval-data images ({report.eval_images}) have none; "
                "give labelled images (class folders, a manifest or a Fashion-MNIST IDX folder), or gate on "
                "agreement with --min-agreement"
            )
        if drop > config.max_accuracy_drop:
            failed.append(
                f"loses {drop:.2f} points of accuracy ({report.accuracy_fp32:.4f} -> {report.accuracy_reduced:.4f} on "
                f"{report.images} images), more than --max-accuracy-drop {config.max_accuracy_drop:g}"
            )
    if failed:
        raise CheckFailedError(
            f"{config.precision} model {' and '.join(failed)}; '{config.output_path}' was not written. "
            + gate_advice(
                recipe=recipe,
                calibration_size=config.calibration_size,
                method=config.calibration_method,
                agreement=report.top1_agreement,
                # Only the test split of --eval-data judges accuracy (the calibration source is training data).
                labelled=bool(config.eval_data) and report.accuracy_fp32 is not None,
                max_accuracy_drop=config.max_accuracy_drop,
            )
        )


@dataclass(frozen=True)
class VerifiedModel:
    """What every deploy target receives: the verified model in memory and its card.

    ``data`` is the serialised, checked ONNX model; ``metadata`` the card it carries (input size,
    channels, labels, preprocessing); ``config`` the resolved options that made it; ``summary``
    the checks and costs (its ``output`` is where the ``onnx`` target would write it).
    """

    data: bytes
    metadata: ModelMetadata
    config: ExportConfig
    summary: ExportSummary

    def at_precision(self, precision: str, output: str | os.PathLike, **changes: Any) -> VerifiedModel:
        """The same model verified at another precision (``output`` names it in messages), with any
        other export options ``changes`` gives (an INT8 model's ``int8_target``)."""
        return verify_export(
            replace(self.config, precision=precision, output=str(output), triton_repo=None, deploy=(), **changes)
        )


def run_export(config: ExportConfig) -> ExportSummary:
    """Export, simplify, check, label and verify one model; the output appears only if all passes.

    With ``precision`` int8 or fp16 the verified FP32 model is converted, labelled and compared
    with the FP32 one (agreement must reach ``min_agreement``). Raises a
    :class:`~nin_edge.runtime.core.errors.NinEdgeError` subclass for bad options, bad weights or a
    failed check; an existing file at the output path is then left as it was. The verified model
    goes to each of :meth:`ExportConfig.deploy_targets`.
    """
    verified = verify_export(config)
    reports = [target.write(verified, options, out) for target, options, out in verified.config.deploy_targets()]
    extra = len(verified.config.deploy)
    written, deployed = reports[: len(reports) - extra], reports[len(reports) - extra :]
    triton = next((r for r in written if isinstance(r, TritonRepo)), None)
    return replace(verified.summary, triton=triton, deployed=tuple(deployed))


def verify_export(config: ExportConfig) -> VerifiedModel:
    """Everything :func:`run_export` does before writing: the verified model in memory, its card and
    its summary. Nothing is written."""
    start = time.perf_counter()
    config.validate()
    config = config.resolved()
    model, weights = build_model(config)
    profile = profile_model(model, config.size)
    card = config.card()  # a trained checkpoint's classes and preprocessing travel on; none are re-derived
    metadata = ModelMetadata(
        model=config.model,
        input_size=config.size,
        in_channels=card.in_channels,
        labels=card.labels,
        preprocessing=card.preprocessing,
        weights=weights,
        opset=config.opset,
    )
    exported = export_onnx(model=model, opset=config.opset, input_size=config.size)
    proto, nodes_final = exported.proto, exported.nodes
    if config.simplify:
        simplified = simplify(model=proto)
        proto, nodes_final = simplified.proto, simplified.nodes_after
    proto = flatten_to_reshape(model=proto).proto
    proto = with_metadata(model=proto, metadata=metadata)
    graph = check_graph(model=proto, opset=config.opset, simplified=config.simplify)
    data = serialize_checked(model=proto)
    parity = check_parity(
        model=model,
        onnx_model=data,
        batch_sizes=tuple(config.check_batch_sizes),
        atol=config.atol,
        input_size=config.size,
        seed=config.seed,
    )
    if not parity.passed:
        worst = max(parity.batches, key=lambda r: r.max_abs_err)
        raise CheckFailedError(
            f"parity check failed: max abs error {worst.max_abs_err:.3g} at batch {worst.batch_size} "
            f"exceeds atol {config.atol:g}; '{config.output_path}' was not written"
        )
    reduced = None
    if config.precision != "fp32":
        reduced, data, graph = _reduce(config, proto, metadata)

    file_bytes = len(data)
    summary = ExportSummary(
        model=config.model,
        output=str(config.output_path),
        weights=weights,
        opset=config.opset,
        input_size=config.size,
        in_channels=metadata.in_channels,
        num_classes=len(metadata.labels),
        params=profile.params,
        macs=profile.macs,
        file_bytes=file_bytes,
        nodes_exported=exported.nodes,
        nodes_final=nodes_final,
        simplified=config.simplify,
        ops=graph.ops,
        parity=parity,
        seconds=time.perf_counter() - start,
        labels=metadata.labels,
        precision=config.precision,
        reduced=reduced,
    )
    if reduced is not None:  # the card as the reduced model records it (precision, calibration)
        props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
        metadata = ModelMetadata.from_props(props, str(config.output_path))
    return VerifiedModel(data=data, metadata=metadata, config=config, summary=summary)
