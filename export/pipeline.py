"""The whole export as one library call: ``run_export(ExportConfig(...)) -> ExportSummary``."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from nin_edge.export.timing import median_ms
from nin_edge.models import ZooModel, create_model, load_weights, profile_model
from nin_edge.models.registry import pretrained_path
from nin_edge.runtime import Classifier
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.metadata import ModelMetadata

from .calibration import CalibrationSet, load_images
from .config import ExportConfig
from .precision import Int8Recipe, convert_fp16, gate_advice, gate_arithmetic, quantize_int8, unfused_logits
from .steps import (
    GraphCheck,
    check_graph,
    check_parity,
    export_onnx,
    flatten_to_reshape,
    serialize_checked,
    simplify,
    with_metadata,
)
from .targets.triton import TritonRepo
from .verified import ExportSummary, PrecisionReport, VerifiedModel


def build_model(config: ExportConfig) -> tuple[ZooModel, str]:
    """Create the model and load its weights; returns it with a description of the weights."""
    # A private RNG stream, so a random-init export is reproducible from the seed in its metadata
    # without reseeding the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trained = config.trained_card()  # its head layout (model options), if it records one
        model = create_model(
            config.model,
            in_channels=config.in_channels,
            num_classes=config.num_classes,
            input_size=config.size,
            **(trained.model_options if trained else {}),
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
        # A trained checkpoint's class names must be the data's; other models' labels are placeholders.
        classes=metadata.labels if config.trained_card() is not None else None,
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


def verify_at_precision(
    model: VerifiedModel, precision: str, output: str | os.PathLike, **changes: Any
) -> VerifiedModel:
    """``model`` verified again at another precision (``output`` names it in messages), with any
    other export options ``changes`` gives (an INT8 model's ``int8_target``)."""
    return verify_export(
        replace(model.config, precision=precision, output=str(output), triton_repo=None, deploy=(), **changes)
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
        model_options={k: list(v) if isinstance(v, tuple) else v for k, v in card.model_options.items()},
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
