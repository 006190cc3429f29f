"""``Classifier``: an exported model behind one small, validated, thread-safe object."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import resolve_model
from .core.digest import external_data_bytes, graph_digest
from .core.errors import ConfigError, InputError, ModelFileError
from .core.metadata import ModelMetadata, Preprocessing
from .core.numbers import is_whole_number
from .core.report import Report, format_pairs
from .int8 import int8_fit
from .openvino import OPENVINO
from .preprocess import check_image_array, gather_raw_images, is_path_like, preprocess_image
from .providers import ProviderKind, ProviderSpec, parse_provider
from .session import AUTO_VERIFY_BYTES, ModelSource, RuntimeConfig, load_session
from .signing import verify_bundle


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes."""

    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class ModelDescription(Report):
    """A model as the runtime sees it: its metadata, input contract and the providers in use."""

    source: str
    model: str
    precision: str
    opset: int
    input_name: str
    input_shape: tuple[str | int, ...]
    output_name: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    weights: str
    calibration: str
    toolkit_version: str
    providers: tuple[str, ...]
    weights_check: str = ""
    fallback_reason: str | None = None
    #: Device, precision hint, streams, threads and compiled-model cache, when OpenVINO runs the model.
    openvino: dict[str, str] | None = None
    #: INT8 only: the machine class the model was tuned for, against this CPU's.
    int8_fit: str | None = None

    def to_table(self) -> str:
        pre = self.preprocessing
        return format_pairs(
            [
                ("source", self.source),
                ("model", self.model),
                ("precision", self.precision + (f" (calibration: {self.calibration})" if self.calibration else "")),
                ("opset", self.opset),
                ("input", f"{self.input_name} float32 {tuple(self.input_shape)}"),
                ("output", f"{self.output_name} ({len(self.labels)} classes)"),
                ("labels", ", ".join(self.labels)),
                (
                    "preprocessing",
                    f"{pre.color}, {pre.resize} resize, x{pre.scale:.6g}, mean {list(pre.mean)}, std {list(pre.std)}",
                ),
                ("weights", self.weights),
                ("exported by", f"nin-edge {self.toolkit_version}"),
                ("providers", ", ".join(self.providers)),
                ("weights check", self.weights_check),
            ]
            + ([("fallback", self.fallback_reason)] if self.fallback_reason else [])
            + ([("openvino", ", ".join(f"{k} {v}" for k, v in self.openvino.items()))] if self.openvino else [])
            + ([("int8 target", self.int8_fit)] if self.int8_fit else [])
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for any finite logits (the row maximum is subtracted first)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


#: How many classes a report or ``classify`` gives when the caller does not say: at most this many.
DEFAULT_TOP_K = 5


def default_top_k(classes: int) -> int:
    """The top-k used when none is given: ``min(DEFAULT_TOP_K, classes)``, so that a 2-class model works."""
    return min(DEFAULT_TOP_K, classes)


def check_top_k(top_k: object, classes: int, name: str = "top_k") -> None:
    """Refuse a ``top_k`` outside 1..classes; ``name`` is what the caller calls it (``--top-k`` in a command)."""
    if not is_whole_number(top_k, minimum=1, maximum=classes):
        raise ConfigError(
            f"{name} must be a whole number from 1 to {classes} (this model has {classes} classes), got {top_k!r}"
        )


def top_predictions(logits: np.ndarray, labels: Sequence[str], top_k: int) -> list[list[Prediction]]:
    """The ``top_k`` most probable classes of each row of ``logits``, best first."""
    check_top_k(top_k, len(labels))
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return [
        [Prediction(label=labels[j], index=int(j), probability=float(row[j])) for j in idx]
        for row, idx in zip(probs, order, strict=False)
    ]


class Classifier:
    """Classify images with a model written by ``nin-export``, on onnxruntime.

    ``Classifier(model, provider="auto", *, fallback=False, threads=None, ...)``: ``model`` is a
    path or the bytes of an ONNX file; the keywords are the fields of :class:`RuntimeConfig`, and
    ``labels`` overrides the labels for a model without nin-edge metadata. One instance is safe to
    share between threads: it holds no state that a call changes.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        provider: str | Sequence[ProviderSpec] = "auto",
        *,
        labels: Sequence[str] | None = None,
        **options: object,
    ) -> None:
        known = {f.name for f in fields(RuntimeConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"Classifier has no option {unknown[0]!r}; its options are: {', '.join(sorted(known))}")
        provider = provider if isinstance(provider, str) else tuple(provider)
        self.config = RuntimeConfig(provider=provider, **options)  # type: ignore[arg-type]
        self.config.validate()
        if self.config.verify_key is not None:  # the signature first: it covers the manifest that the rest trusts
            verify_bundle(model if isinstance(model, (str, os.PathLike)) else "<model bytes>", self.config.verify_key)
        self._source = ModelSource(resolve_model(model, self.config.precision))
        self.source = self._source.name
        loaded = load_session(self._source, self.config)
        self._session = loaded.session
        self.providers: list[str] = list(loaded.providers)
        self.fallback_reason: str | None = loaded.fallback_reason
        if self.fallback_reason:
            warnings.warn(self.fallback_reason, RuntimeWarning, stacklevel=2)
        self.metadata = self._read_metadata(labels)
        #: INT8 only: the machine class the model was tuned for against this CPU's (warned if it costs accuracy).
        self.int8_fit: str | None = self._check_int8()
        #: What became of the weight-digest check: verified, skipped (and why) or unavailable.
        self.weights_check = self._verify_graph()
        #: The batch size a model with a fixed batch axis requires (None for a symbolic batch).
        self.fixed_batch: int | None = self._check_graph_io()
        self.labels: tuple[str, ...] = self.metadata.labels
        self.input_shape = (self.metadata.in_channels, self.metadata.input_size, self.metadata.input_size)

    @property
    def sha256(self) -> str:
        """sha256 of the model (external weight files included): the model's identity, as ``nin-infer``
        rows record it."""
        return self._source.sha256

    # -- construction -------------------------------------------------------------------------

    def _read_metadata(self, labels: Sequence[str] | None) -> ModelMetadata:
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        inp = self._session.get_inputs()[0] if self._session.get_inputs() else None
        if labels is not None:
            if inp is None or len(inp.shape) != 4 or not all(isinstance(d, int) for d in inp.shape[1:]):
                raise ModelFileError(f"model '{self.source}' input must be (N,C,H,W) with fixed C, H and W")
            if inp.shape[2] != inp.shape[3]:
                raise ModelFileError(
                    f"model '{self.source}' input is {inp.shape[2]}x{inp.shape[3]}; only square inputs are supported"
                )
            given = dict(
                input_size=int(inp.shape[2]),
                in_channels=int(inp.shape[1]),
                labels=tuple(str(x) for x in labels),
                input_name=inp.name,
                output_name=self._session.get_outputs()[0].name,
            )
            if "labels" in props:
                return replace(ModelMetadata.from_props(props, self.source), **given)
            return ModelMetadata(model=Path(self.source).stem, toolkit_version="none", **given)
        return ModelMetadata.from_props(props, self.source)

    def _check_int8(self) -> str | None:
        m = self.metadata
        if m.precision != "int8":
            return None
        # The saturation is the CPU provider's kernels'; other providers run INT8 their own way.
        if parse_provider(self.providers[0]).kind is not ProviderKind.CPU:
            return f"tuned for {m.int8_target or 'an unrecorded target'}; runs on {self.providers[0]}"
        line, warning = int8_fit(m.int8_target, m.int8_recipe)
        if warning:
            warnings.warn(f"model '{self.source}': {warning}", RuntimeWarning, stacklevel=3)
        return line

    def _verify_graph(self) -> str:
        """Refuse a file whose graph (weights included) differs from what nin-export wrote."""
        recorded, mode, size = self.metadata.graph_sha256, self.config.verify_weights, self._source.size
        if not recorded:
            return "not possible: the file records no digest (exported before nin-edge recorded one)"
        if mode is False:
            return "off (verify_weights=False)"
        data = self._source.read() if mode is True or size <= AUTO_VERIFY_BYTES else b""
        if mode == "auto" and data:  # weights kept as external data count too
            size += external_data_bytes(data, self.source, self._source.folder)
        if mode == "auto" and size > AUTO_VERIFY_BYTES:
            return (
                f"skipped: {size / 1e6:.0f} MB is over the {AUTO_VERIFY_BYTES // 2**20} MB that "
                "verify_weights='auto' checks; pass verify_weights=True to check it"
            )
        actual = graph_digest(data, self.source, self._source.folder)
        if actual != self.metadata.graph_sha256:
            raise ModelFileError(
                f"model '{self.source}': its graph and weights do not match the digest recorded at export "
                f"(sha256 {actual[:12]}..., recorded {self.metadata.graph_sha256[:12]}...); the file is damaged "
                "or was altered. Export it again, or pass verify_weights=False to load it anyway"
            )
        return f"verified (graph sha256 {actual[:16]})"

    def _check_graph_io(self) -> int | None:
        """Check the graph's inputs and outputs against the metadata; return its fixed batch, if any."""
        meta = self.metadata
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(
                f"model '{self.source}' has {len(inputs)} inputs and {len(outputs)} outputs; expected one image input "
                "and one logits output"
            )
        inp, out = inputs[0], outputs[0]
        if inp.name != meta.input_name or out.name != meta.output_name:
            raise ModelFileError(
                f"model '{self.source}' has input {inp.name!r} and output {out.name!r}; its metadata names "
                f"{meta.input_name!r} and {meta.output_name!r}"
            )
        want = [meta.in_channels, meta.input_size, meta.input_size]
        if inp.type != "tensor(float)" or len(inp.shape) != 4 or list(inp.shape[1:]) != want:
            raise ModelFileError(
                f"model '{self.source}' input {inp.name!r} is {inp.type} {inp.shape}; expected float32 "
                f"(N,{want[0]},{want[1]},{want[2]})"
            )
        classes = out.shape[-1] if len(out.shape) == 2 else None
        if isinstance(classes, int) and classes != len(meta.labels):
            raise ModelFileError(f"model '{self.source}' gives {classes} logits but has {len(meta.labels)} labels")
        batch = inp.shape[0]
        return batch if isinstance(batch, int) else None

    # -- inference ------------------------------------------------------------------------------

    def _expected(self) -> str:
        c, h, w = self.input_shape
        return f"float32 (N,{c},{h},{w}) or ({c},{h},{w}), or uint8 images"

    def prepare(self, batch: object) -> np.ndarray:
        """Turn any accepted input into the validated float32 (N, C, H, W) tensor the model runs on.

        Accepted: a float32 (N,C,H,W) batch or one (C,H,W) tensor, used as is; one uint8 image
        (H,W) or (H,W,C); a uint8 (N,H,W,C) stack; a list of uint8 images of any sizes; an image
        file path or a list of them. Raw images are preprocessed as the model's metadata says.
        """
        name = self.metadata.input_name
        if is_path_like(batch):
            batch = [batch]
        if isinstance(batch, np.ndarray):
            if batch.dtype == np.float32:
                return self._check_tensor(batch)
            if batch.dtype == np.uint8:
                if batch.ndim == 4 and len(batch) == 0:
                    raise InputError(f"input '{name}': got an empty batch, shape {tuple(batch.shape)}")
                if batch.ndim == 4:
                    return self._preprocess([(f"image {i}", img) for i, img in enumerate(batch)])
                check_image_array(batch, f"input '{name}'")
                return self._preprocess([("image", batch)])
            raise InputError(f"input '{name}': expected {self._expected()}, got {batch.dtype} {tuple(batch.shape)}")
        if isinstance(batch, (list, tuple)):
            if not batch:
                raise InputError(f"input '{name}': got an empty list; expected at least one image")
            if all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in batch):
                return np.concatenate([self._check_tensor(x) for x in batch])
            return self._preprocess(gather_raw_images(batch))
        raise InputError(f"input '{name}': expected {self._expected()}, got {type(batch).__name__}")

    def _preprocess(self, images: list[tuple[str, np.ndarray]]) -> np.ndarray:
        c, size, _ = self.input_shape
        pre = self.metadata.preprocessing
        return np.stack([preprocess_image(img, channels=c, size=size, pre=pre, where=where) for where, img in images])

    def _check_tensor(self, x: np.ndarray) -> np.ndarray:
        c, h, w = self.input_shape
        given = tuple(x.shape)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w) or x.shape[0] == 0:
            raise InputError(
                f"input '{self.metadata.input_name}': expected float32 (N,{c},{h},{w}), got {x.dtype} {given}"
            )
        if not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise InputError(
                f"input '{self.metadata.input_name}': {bad} {'value is' if bad == 1 else 'values are'} NaN or "
                "infinite; expected finite numbers"
            )
        return np.ascontiguousarray(x)

    def logits(self, batch: object) -> np.ndarray:
        """Raw scores, shape (N, classes), for any input :meth:`prepare` accepts."""
        x = self.prepare(batch)
        step = self.fixed_batch or self.config.max_batch
        if self.fixed_batch and x.shape[0] % self.fixed_batch:
            raise InputError(
                f"input '{self.metadata.input_name}': this model has a fixed batch of {self.fixed_batch}; got "
                f"{x.shape[0]} images"
            )
        return self.run_prepared(x, step)

    def run_prepared(self, x: np.ndarray, step: int | None = None) -> np.ndarray:
        """Run an already validated float32 batch, in chunks of at most ``step`` (default ``max_batch``)."""
        step = step or self.config.max_batch
        names = [self.metadata.output_name]
        feed = self.metadata.input_name
        if x.shape[0] <= step:
            out = self._session.run(names, {feed: x})[0]
        else:
            out = np.concatenate(
                [self._session.run(names, {feed: x[i : i + step]})[0] for i in range(0, x.shape[0], step)]
            )
        finite = np.isfinite(out).all(axis=tuple(range(1, out.ndim)))
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise InputError(
                f"input '{feed}': the model's logits for image {', '.join(map(str, bad[:5]))}"
                f"{' ...' if len(bad) > 5 else ''} are NaN or infinite; its values (largest magnitude "
                f"{float(np.abs(x[bad[0]]).max()):.3g}) are outside what the model can take. Feed raw uint8 images, "
                f"or float32 tensors preprocessed as the model's metadata says"
            )
        return out

    def probabilities(self, batch: object) -> np.ndarray:
        """Softmax probabilities, shape (N, classes); each row sums to 1."""
        return softmax(self.logits(batch))

    def classify(self, batch: object, top_k: int | None = None) -> list[list[Prediction]]:
        """The ``top_k`` most probable classes of each image, best first, one list per image
        (default: ``min(5, classes)``)."""
        top_k = default_top_k(len(self.labels)) if top_k is None else top_k
        check_top_k(top_k, len(self.labels))
        return top_predictions(self.logits(batch), self.labels, top_k)

    def describe(self) -> ModelDescription:
        """The model's metadata, input contract and the providers in use."""
        m = self.metadata
        shape = self._session.get_inputs()[0].shape
        return ModelDescription(
            source=self.source,
            model=m.model,
            precision=m.precision,
            opset=m.opset,
            input_name=m.input_name,
            input_shape=tuple(shape),
            output_name=m.output_name,
            labels=m.labels,
            preprocessing=m.preprocessing,
            weights=m.weights,
            calibration=m.calibration,
            toolkit_version=m.toolkit_version,
            providers=tuple(self.providers),
            weights_check=self.weights_check,
            fallback_reason=self.fallback_reason,
            openvino=self._openvino_description() if OPENVINO in self.providers else None,
            int8_fit=self.int8_fit,
        )

    def _openvino_description(self) -> dict[str, str]:
        ov = self.config.openvino
        return {
            "device": ov.device_type,
            "precision hint": ov.precision,
            "streams": str(ov.num_streams or "OpenVINO's choice"),
            "threads": str(ov.num_threads or "OpenVINO's choice"),
            "cache": ov.cache_dir or "none (compiled at every start)",
        }

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying onnxruntime session, for IO binding or profiling."""
        return self._session

    def __repr__(self) -> str:
        return f"Classifier({self.source!r}, model={self.metadata.model!r}, providers={self.providers})"
