"""``nin-export --bundle DIR``: one folder a deployment team can take as is.

The folder holds the verified FP32 model and the requested INT8/FP16 variants, each also in
onnxruntime's ORT format (for ORT Mobile and reduced-operator builds, with the
``required_operators.config`` such a build needs), a fixed-batch mobile variant for NNAPI and
CoreML, ``MODEL_CARD.md`` for people and ``manifest.json`` for programs (the same facts, with the
sha256 of every file). It is built in a temporary folder beside ``DIR`` and renamed into place
only when everything passed, so a partly written bundle never replaces a complete one.

The ``bundle`` target: a deploy folder (ONNX and ORT models per precision, a fixed-batch mobile
variant, ``MODEL_CARD.md`` and ``manifest.json`` with sha256s), built aside and swapped in.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnx
import onnxruntime as ort
from nin_edge.models import model_card
from nin_edge.models.chance import ChanceCheck, chance_check, refuse_near_chance
from nin_edge.models.checkpoint import read_checkpoint
from nin_edge.models.data import DATASET
from nin_edge.models.registry import WEIGHTS_DIR
from nin_edge.models.train_checkpoint import renamed_epoch
from nin_edge.runtime import Classifier
from nin_edge.runtime.bundle import BUNDLE_FOLDER, FORMAT, FORMAT_VERSION, MANIFEST, SIGNATURE, open_bundle
from nin_edge.runtime.cli.common import CommaList
from nin_edge.runtime.core.choices import Precision
from nin_edge.runtime.core.cpu import cpu_model
from nin_edge.runtime.core.digest import graph_digest
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.files import atomic_folder, check_replaceable_folder, sha256_file
from nin_edge.runtime.core.metadata import Preprocessing, toolkit_version
from nin_edge.runtime.core.report import Report, format_pairs, format_table
from nin_edge.runtime.providers import PROVIDERS, ProviderKind
from nin_edge.runtime.session import plain_session
from nin_edge.runtime.signing import check_signing_key, sign_bundle

from ..bundle_card import USABILITY, model_card_text, usability_summary
from ..calibration import load_images
from ..config import Deploy, ExportConfig
from ..pipeline import verify_at_precision, verify_export
from ..precision import resolve_target
from ..timing import median_ms
from ..verified import ExportSummary, VerifiedModel

FILE_OF = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
MOBILE = "model.mobile.onnx"
CARD = "MODEL_CARD.md"
REQUIRED_OPERATORS = "required_operators.config"
LATENCY_BATCHES = (1, 8)
#: Largest logit difference allowed between an ORT-format model and the ONNX model it came from.
ORT_ATOL = 1e-4
LICENCE = "nin-edge and its shipped weights: MIT. Fashion-MNIST (training and test data): MIT, Zalando Research."
USER_LICENCE = "nin-edge: MIT. The weights and their training data: as their owner licenses them."


@dataclass(frozen=True)
class BundleSummary(Report):
    """What went into the bundle and what was measured on the way."""

    folder: str
    files: dict[str, int]
    precisions: tuple[str, ...]
    accuracy: dict[str, float | None]
    latency_ms: dict[str, dict[str, dict[str, float]]]
    ort_max_abs_err: dict[str, float]
    mobile_usability: tuple[str, ...]
    seconds: float

    def rows(self) -> list[dict]:
        return [{"file": name, "bytes": size} for name, size in self.files.items()]

    def to_table(self) -> str:
        pairs: list[tuple[str, object]] = [("bundle", self.folder), ("time", f"{self.seconds:.1f} s")]
        for p in self.precisions:
            acc = self.accuracy.get(p)
            lat = "; ".join(
                f"{prov} " + ", ".join(f"batch {b}: {ms:.2f} ms" for b, ms in by_batch.items())
                for prov, by_batch in self.latency_ms[p].items()
            )
            pairs.append((p, (f"accuracy {acc:.4f}; " if acc is not None else "") + lat))
        pairs += [(f"{name} vs ONNX", f"max abs logit diff {err:.2g}") for name, err in self.ort_max_abs_err.items()]
        pairs.append(("mobile usability", usability_summary(list(self.mobile_usability), MOBILE)))
        return format_pairs(pairs) + "\n\n" + format_table(self.rows())


def _quiet() -> contextlib.ExitStack:
    """Keep onnxruntime's tools (which print and log at INFO) off our stdout."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    for name in ("ort_format_model.utils", "", "check_usability"):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.WARNING)
        stack.callback(logger.setLevel, level)
    return stack


def _fixed_batch(src: Path, dst: Path) -> None:
    """The model with its batch axis fixed at 1 (NNAPI and CoreML take only fixed shapes)."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(src))
    make_dim_param_fixed(model.graph, "batch", 1)
    fix_output_shapes(model)
    props = {p.key: p for p in model.metadata_props}
    # The digest covers the graph, which now has other shapes; metadata lies outside it.
    props["graph_sha256"].value = graph_digest(model.SerializeToString(), str(dst))
    dst.write_bytes(model.SerializeToString())


def _to_ort(folder: Path, names: list[str]) -> dict[str, float]:
    """Convert ``names`` to ORT format beside them and check each against its ONNX model."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    staging = folder / "onnx-staging"
    staging.mkdir()
    for name in names:
        shutil.copyfile(folder / name, staging / name)
    with _quiet():
        convert_onnx_models_to_ort(staging, output_dir=folder, optimization_styles=[OptimizationStyle.Fixed])
    shutil.rmtree(staging)
    config = folder / REQUIRED_OPERATORS
    # The tool names the temporary paths it read; the bundle names its own files instead.
    ops = [line for line in config.read_text().splitlines() if not line.startswith("#")]
    sources = ", ".join(n.replace(".onnx", ".ort") for n in names)
    config.write_text(f"# Operators of {sources} (for an onnxruntime reduced-operator build)\n" + "\n".join(ops) + "\n")
    errors = {}
    rng = np.random.default_rng(0)
    for name in names:
        ort_name = name.replace(".onnx", ".ort")
        a, b = plain_session(folder / name), plain_session(folder / ort_name)
        inp = a.get_inputs()[0]
        batch = inp.shape[0] if isinstance(inp.shape[0], int) else 3
        x = rng.random((batch, *inp.shape[1:]), dtype=np.float32)
        err = float(np.abs(a.run(None, {inp.name: x})[0] - b.run(None, {inp.name: x})[0]).max())
        if err > ORT_ATOL:
            raise CheckFailedError(f"'{ort_name}' differs from '{name}' by {err:.3g} in the logits (> {ORT_ATOL:g})")
        errors[ort_name] = err
    return errors


def _usability(path: Path) -> list[str]:
    """The verdict lines of onnxruntime's mobile usability checker for one model."""
    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    stream = io.StringIO()
    logger = logging.getLogger(f"nin-edge.usability.{path.name}")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)
    with _quiet():
        analyze_model(path, skip_optimize=False, logger=logger)
    keep = ("partitions with a total of", "should perform well", "should work well", "cannot run any nodes")
    return [f"{path.name}: {line.strip()}" for line in stream.getvalue().splitlines() if any(k in line for k in keep)]


def _latency(path: Path) -> dict[str, dict[str, float]]:
    """p50 ms at each of :data:`LATENCY_BATCHES` on every execution provider of this machine that runs it
    (a remote one, such as Azure's, runs nothing here: its figure would be the CPU's under another name)."""
    result: dict[str, dict[str, float]] = {}
    for entry in reversed(PROVIDERS):  # the CPU first
        if entry.kind is ProviderKind.REMOTE:
            continue
        try:
            clf = Classifier(path, entry.name)
        except Exception:  # noqa: BLE001  a provider this machine lacks is simply not measured
            continue
        x = np.random.default_rng(0).random((max(LATENCY_BATCHES), *clf.input_shape), dtype=np.float32)
        result[clf.providers[0]] = {str(b): median_ms(clf, x[:b], runs=20) for b in LATENCY_BATCHES}
    return result


def _training(config: ExportConfig, summary: ExportSummary) -> dict[str, Any]:
    card = model_card(config.model)
    if summary.weights.startswith("pretrained") and card.weights_file:
        record = WEIGHTS_DIR / Path(card.weights_file).with_suffix(".json").name
        if record.is_file():
            data = json.loads(record.read_text())
            stages = [
                {
                    "name": st.get("name"),
                    "recipe": _recipe_facts(st.get("recipe", {})),
                    "final_test_acc": _last_held_out(st.get("history") or [{}]),
                    "final_acc_on": "Fashion-MNIST test split",
                }
                for st in data.get("stages", [])
            ]
            return {"data": DATASET, "stages": stages, "command": "nin-train"}
    if summary.weights.startswith("random-init"):
        return {"data": None, "note": "untrained (random initialisation): for tests and speed measurements only"}
    saved = read_checkpoint(config.weights) if config.weights else {}
    if isinstance(saved.get("recipe"), dict) and isinstance(saved.get("data"), dict):  # a nin-train checkpoint
        history = saved.get("history") or [{}]
        # The record names the split it was measured on (older checkpoints have none).
        chance = ChanceCheck.from_dict(saved.get("chance"), f"checkpoint '{config.weights}'")
        stage = {
            "name": f"nin-train, {len(history)} epoch(s)"
            + (f", from {saved['recipe']['init_from']}" if saved["recipe"].get("init_from") else ""),
            "recipe": _recipe_facts(saved["recipe"]),
            "final_test_acc": _last_held_out(history),
            "final_acc_on": chance.measured_on if chance else "held-out split",
        }
        # The data's folder or manifest name, never the training machine's path (as for DATASET).
        source = saved["data"].get("source")
        named = (
            f"{Path(source).name} ({saved['data'].get('kind')}, {len(saved.get('card', {}).get('labels', []))} classes)"
        )
        return {"data": named if source else None, "stages": [stage], "command": "nin-train"}
    return {"data": None, "note": "weights given by the exporter; their training was not recorded"}


#: The recipe fields a model card repeats (the record keeps them all).
RECIPE_FACTS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "input_size", "seed")


def _last_held_out(history: list) -> float | None:
    """The last epoch's held-out accuracy, under either of its names (:func:`renamed_epoch`)."""
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    return renamed_epoch(last).get("held_out_acc")


def _recipe_facts(recipe: dict[str, Any]) -> dict[str, Any]:
    # Records written before nin-train's --image-size became --input-size name the size image_size.
    recipe = {"input_size": recipe.get("image_size"), **recipe}
    return {k: recipe.get(k) for k in RECIPE_FACTS}


def bundle_precisions(precisions: tuple[str, ...]) -> tuple[str, ...]:
    """The precisions a bundle holds: FP32 always, first; each one checked."""
    wanted = ("fp32", *(p for p in precisions if p != "fp32"))
    for p in wanted:
        Precision.check(p, "bundle precision")
    return wanted


def bundle_models(
    config: ExportConfig, precisions: tuple[str, ...], int8_targets: tuple[str, ...] = ()
) -> dict[str, tuple[str, ExportConfig]]:
    """The bundle's models, FP32 first: manifest key -> (file name, export options). Several
    ``int8_targets`` give one INT8 model per machine class, keyed ``int8.<target>``."""
    models = {}
    for p in bundle_precisions(precisions):
        if p == "int8" and len(int8_targets) > 1:
            for t in dict.fromkeys(resolve_target(t) for t in int8_targets):
                models[f"int8.{t}"] = (f"model.int8.{t}.onnx", replace(config, precision=p, int8_target=t))
        else:
            one = int8_targets[0] if p == "int8" and int8_targets else config.int8_target
            models[p] = (FILE_OF[p], replace(config, precision=p, int8_target=one))
    return models


def write_bundle(
    *,
    config: ExportConfig,
    folder: str | os.PathLike,
    precisions: tuple[str, ...],
    int8_targets: tuple[str, ...] = (),
    sign_key: str | None = None,
) -> BundleSummary:
    """Export ``config``'s model at each of ``precisions`` (FP32 always) into the bundle ``folder``;
    with several ``int8_targets`` one INT8 model per machine class (``model.int8.x86-avx2.onnx``...);
    with ``sign_key`` (a PEM private key) the bundle is signed (``model.sig``, see ``runtime/signing.py``)."""
    bundle, target = TARGET, Path(folder)
    options = bundle.options_type(precisions=precisions, int8_targets=int8_targets, sign_key=sign_key)
    bundle.check(options, target)
    config.check_chance("--bundle/--web")  # before any export work; build_bundle checks again for library callers
    # Each model's options are checked as its export will run them: writing beside the bundle.
    probe = target.resolve().parent / f".{target.name}.check.onnx"
    for _, cfg in bundle_models(config, precisions, int8_targets).values():
        replace(cfg, output=str(probe), triton_repo=None).validate()
    fp32 = verify_export(replace(config, precision="fp32", output=str(probe), triton_repo=None))
    return bundle.write(fp32, options, target)


def build_bundle(
    model: VerifiedModel,
    precisions: tuple[str, ...],
    target: Path,
    int8_targets: tuple[str, ...] = (),
    sign_key: str | None = None,
) -> BundleSummary:
    """Write the bundle of the verified FP32 ``model`` and its other ``precisions`` (one INT8 model
    per class of ``int8_targets`` where several are given) to ``target``: built in a staging folder
    beside it, checked by the bundle reader, signed with ``sign_key`` if given, then swapped in."""
    start = time.perf_counter()
    config = model.config
    allowed = config.check_chance("--bundle/--web")
    models = bundle_models(config, precisions, int8_targets)
    wanted = tuple(models)
    file_of = {key: name for key, (name, _) in models.items()}
    with atomic_folder(target, BUNDLE_FOLDER) as tmp:
        verified = {
            key: model
            if key == "fp32"
            else verify_at_precision(model, cfg.precision, tmp / name, int8_target=cfg.int8_target)
            for key, (name, cfg) in models.items()
        }
        for key, v in verified.items():
            (tmp / file_of[key]).write_bytes(v.data)
        summaries = {key: v.summary for key, v in verified.items()}
        _fixed_batch(tmp / file_of["fp32"], tmp / MOBILE)
        onnx_names = [file_of[p] for p in wanted] + [MOBILE]
        ort_errors = _to_ort(tmp, onnx_names)
        usability = _usability(tmp / file_of["fp32"]) + _usability(tmp / MOBILE)
        accuracy, eval_note, eval_check = _accuracy(config, {p: tmp / file_of[p] for p in wanted})
        # Raised inside the staging folder: a refused bundle is never swapped in. --random-init asks for
        # an untrained model (tests, speed): only given weights are judged.
        eval_allowed = refuse_near_chance(eval_check if config.weights else None, "--bundle/--web", config.allow_chance)
        latency = {p: _latency(tmp / file_of[p]) for p in wanted}
        fp32 = summaries["fp32"]
        manifest = _manifest(
            config, fp32, model.metadata.preprocessing, models, accuracy, eval_note, latency, usability, ort_errors
        )
        manifest["warnings"] = [w for w in (allowed, eval_allowed) if w]
        (tmp / CARD).write_text(model_card_text(manifest))
        (tmp / USABILITY).write_text("\n".join(usability) + "\n")
        manifest["files"] = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir()) if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        open_bundle(tmp)  # the reader accepts what was written
        if sign_key:
            sign_bundle(tmp, sign_key)  # in the staging folder, so the bundle appears signed or not at all
    files = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    if sign_key:
        files[SIGNATURE] = (target / SIGNATURE).stat().st_size
    return BundleSummary(
        folder=str(target),
        files=files,
        precisions=wanted,
        accuracy=accuracy,
        latency_ms=latency,
        ort_max_abs_err=ort_errors,
        mobile_usability=tuple(usability),
        seconds=time.perf_counter() - start,
    )


def _accuracy(
    config: ExportConfig, paths: dict[str, Path]
) -> tuple[dict[str, float | None], str | None, ChanceCheck | None]:
    """Each model's top-1 accuracy on ``--eval-data`` (None without labels), which images those were
    (in words for the card: the data, not the exporting machine's path) and FP32's check against chance."""
    if not config.eval_data:
        return {p: None for p in paths}, None, None
    cfg = config.resolved()
    images = load_images(
        config.eval_data,
        size=cfg.size,
        channels=cfg.card().in_channels,
        limit=config.eval_size,
        split="test",
        seed=cfg.seed,
        pre=cfg.card().preprocessing,
        split_record=cfg.split_record(),
    )
    if images.labels is None:
        return {p: None for p in paths}, images.card_note, None
    result: dict[str, float | None] = {}
    check = None
    for p, path in paths.items():
        logits = Classifier(path, "cpu", max_batch=256).logits(images.images)
        result[p] = float(np.mean(logits.argmax(1) == images.labels))
        if p == "fp32":
            check = chance_check(logits.argmax(1), images.labels, cfg.card().labels, "--eval-data")
    return result, images.card_note, check


def _manifest(
    config: ExportConfig,
    fp32: ExportSummary,
    pre: Preprocessing,
    models: dict[str, tuple[str, ExportConfig]],
    accuracy: dict[str, float | None],
    eval_note: str | None,
    latency: dict[str, dict[str, dict[str, float]]],
    usability: list[str],
    ort_errors: dict[str, float],
) -> dict[str, Any]:
    card = model_card(config.model)
    size, channels = fp32.input_size, fp32.in_channels
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "summary": card.summary,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "toolkit_version": toolkit_version(),
        "onnxruntime_version": ort.__version__,
        "machine": machine_description(),
        "source": {"weights": fp32.weights, "params": fp32.params, "macs_per_image": fp32.macs},
        "training": _training(config, fp32),
        "opset": fp32.opset,
        "contract": {
            "input": {"name": "input", "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW"},
            "output": {"name": "logits", "dtype": "float32", "shape": ["batch", len(fp32.labels)]},
            "mobile_input_shape": [1, channels, size, size],
        },
        "preprocessing": {  # as the verified model's metadata says (a trained checkpoint's card)
            "color": pre.color,
            "resize": f"{pre.resize} to {size}x{size} (half-pixel centres)",
            "scale": pre.scale,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "formula": "x = (pixel * scale - mean) / std, per channel",
        },
        "labels": list(fp32.labels),
        "models": {
            p: {
                "onnx": name,
                "ort": name.replace(".onnx", ".ort"),
                "accuracy": accuracy[p],
                "latency_ms": latency[p],
                **(
                    {"int8_target": cfg.int8_recipe().target, "int8_recipe": cfg.int8_recipe().metadata()}
                    if cfg.precision == "int8"
                    else {}
                ),
            }
            for p, (name, cfg) in models.items()
        },
        "mobile": {"onnx": MOBILE, "ort": MOBILE.replace(".onnx", ".ort"), "batch": 1},
        "required_operators": REQUIRED_OPERATORS,
        "evaluation": eval_note,
        "ort_format_max_abs_err": ort_errors,
        "mobile_usability": usability,
        "licence": LICENCE if fp32.weights.startswith("pretrained") else USER_LICENCE,
    }


def machine_description() -> str:
    import platform

    cpu = cpu_model() or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


@dataclass(frozen=True)
class BundleOptions:
    """The precisions the bundle holds (FP32 always; INT8 needs calibration data in the export options),
    the machine classes of its INT8 models (several: one model per class), and the private key that
    signs it (``sign_key``, PEM; none: unsigned)."""

    precisions: tuple[str, ...] = ("fp32",)
    int8_targets: tuple[str, ...] = ()
    sign_key: str | None = None


class BundleTarget:
    """Writes :func:`build_bundle`'s folder."""

    name = "bundle"
    options_type = BundleOptions
    cli_options = (
        click.Option(
            ["--bundle"],
            type=click.Path(),
            default=None,
            help="Write a deploy bundle folder instead of one file: models in ONNX and ORT format, a fixed-batch "
            "mobile variant, MODEL_CARD.md and manifest.json.",
        ),
        click.Option(
            ["--bundle-precisions"],
            type=CommaList(str),
            default="fp32",
            show_default=True,
            help="Precisions in the bundle (fp32 always; int8 needs --calibration-data).",
        ),
        click.Option(
            ["--int8-targets"],
            type=CommaList(str),
            default=None,
            help="With --bundle: one INT8 model per machine class (e.g. x86-avx2,x86-vnni), model.int8.CLASS.onnx; "
            "Classifier(DIR, precision='int8') takes the one for its CPU.",
        ),
        click.Option(
            ["--sign-key"],
            type=click.Path(dir_okay=False),
            default=None,
            help="With --bundle: sign the bundle with this elliptic-curve private key (PEM) using OpenSSF "
            "model-signing, offline (writes model.sig; needs nin-edge[sign]).",
        ),
    )

    def check(self, options: BundleOptions, out: Path) -> None:
        bundle_precisions(options.precisions)
        for t in options.int8_targets:
            resolve_target(t)
        check_replaceable_folder(out, BUNDLE_FOLDER)  # before any work; a link to a bundle is followed
        if options.sign_key:
            check_signing_key(options.sign_key)

    def write(self, model: VerifiedModel, options: BundleOptions, out: Path) -> BundleSummary:
        return build_bundle(model, options.precisions, out, options.int8_targets, options.sign_key)

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        # nin-export writes a --bundle in place of the one file (see ``export/cli.py``), not beside it.
        folder, precisions, int8_targets = values["bundle"], values["bundle_precisions"], values["int8_targets"]
        if folder is None:
            if int8_targets:
                raise ConfigError("--int8-targets is for --bundle; for one file give --int8-target")
            if values["sign_key"]:
                raise ConfigError(
                    "--sign-key signs a bundle folder: give --bundle DIR (nin-sign signs an existing one)"
                )
            return config
        if int8_targets and "int8" not in precisions:
            raise ConfigError("--int8-targets needs int8 in --bundle-precisions")
        options = BundleOptions(
            precisions=tuple(precisions), int8_targets=tuple(int8_targets or ()), sign_key=values["sign_key"]
        )
        return replace(config, deploy=(*config.deploy, Deploy(self.name, folder, options)))


TARGET = BundleTarget()
