"""Bulk inference beyond one machine: a Ray Data adapter (``pip install 'nin-edge[ray]'``).

:class:`RayClassifier` is a callable class for ``ray.data.Dataset.map_batches``: Ray builds one per
actor, so each actor loads the model once. It takes a batch with a ``bytes`` column (encoded images,
as ``ray.data.read_binary_files`` gives), a ``path`` column (image files every worker can read) or
an ``image`` column (uint8 arrays), and returns ``input``, ``label``, ``index``, ``probability``
(``label_2``... for ``top_k`` > 1) and ``error`` columns: a bad image is an error row, as in
``nin-infer``. The recipe, on any cluster::

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    ds = ds.map_batches(RayClassifier, fn_constructor_kwargs={"model": model_bytes}, batch_size=32, concurrency=8)
    ds.write_parquet("s3://bucket/predictions/")

:func:`run_ray` is that recipe behind ``nin-infer --engine ray``, with the rows written by the driver
to one ``--output`` file as they arrive. Ray is imported only here and only when used; nothing in
this module needs torch.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .bulk import (
    ImageResult,
    InferConfig,
    InferReport,
    classify_window,
    load_classifier,
    prepared_or_error,
    record,
)
from .classifier import Classifier, Prediction, check_top_k
from .core.errors import ConfigError, InputError
from .decoding import Decoder
from .inputs import Item, check_inputs, expand_inputs
from .rows import done_inputs, model_sha256, open_rows, printable_name, row_columns, row_of

RAY_EXTRA = "pip install 'nin-edge[ray]'"


class RayClassifier:
    """One :class:`Classifier` per Ray actor, applied to Ray Data batches (see the module's recipe).

    ``model`` is a path every worker can read, or the model file's bytes (shipped with the actor, so
    workers need no shared file system); ``provider`` and ``precision`` are as for ``Classifier``;
    ``options`` are further :class:`~nin_edge.runtime.RuntimeConfig` fields (``threads``...).
    """

    def __init__(
        self,
        model: str | bytes,
        provider: str = "auto",
        precision: str | None = None,
        top_k: int = 1,
        max_batch: int = 32,
        **options: Any,
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.classifier = Classifier(model, provider, precision=precision, max_batch=max_batch, **options)
        check_top_k(top_k, len(self.classifier.labels))
        self.top_k = top_k
        self.decode = Decoder.of(self.classifier)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = _items(batch)
        window = [(item, prepared_or_error(item, functools.partial(self.decode, item))) for item in items]
        results = []
        for start in range(0, len(window), self.classifier.config.max_batch):
            chunk = window[start : start + self.classifier.config.max_batch]
            results.extend(classify_window(self.classifier, self.classifier, chunk, self.top_k))
        return columns(results, self.top_k, model_sha256(self.classifier))


def _items(batch: dict[str, Any]) -> list[Item]:
    """The batch's images as :class:`Item` s, named by its ``path`` (or ``input``) column when it has one."""
    names = batch["input"] if "input" in batch else batch.get("path")
    if "bytes" in batch:
        data = batch["bytes"]
        names = names if names is not None else [f"row {i}" for i in range(len(data))]
        return [Item(str(n), data=bytes(d)) for n, d in zip(names, data, strict=True)]
    if "image" in batch:
        images = batch["image"]
        names = names if names is not None else [f"row {i}" for i in range(len(images))]
        return [Item(str(n), array=np.asarray(a)) for n, a in zip(names, images, strict=True)]
    if "path" in batch:
        paths = batch["path"]
        return [Item(str(n), path=str(p)) for n, p in zip(batch.get("input", paths), paths, strict=True)]
    raise InputError(f"a batch needs a 'bytes', 'path' or 'image' column; it has {', '.join(batch) or 'none'}")


def columns(results: list[ImageResult], top_k: int, model: str) -> dict[str, Any]:
    """Results as the column dict Ray Data takes back: the rows of ``nin-infer``'s output, ``model``
    (:func:`~nin_edge.runtime.rows.model_sha256`) in each."""
    rows = [row_of(r, top_k, model) for r in results]
    out: dict[str, Any] = {}
    for name in row_columns(top_k):
        values = [row[name] for row in rows]
        if name == "index":
            out[name] = np.array([-1 if v is None else v for v in values], dtype=np.int64)
        elif name.startswith("probability"):
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            out[name] = np.array(["" if v is None else v for v in values], dtype=object)
    return out


def _results(batch: dict[str, Any], labels: tuple[str, ...], top_k: int) -> list[ImageResult]:
    """Rows that came back from the actors, as results again (for the driver's writer)."""
    out = []
    for i, name in enumerate(batch["input"]):
        if batch["error"][i]:
            out.append(ImageResult(str(name), error=str(batch["error"][i])))
            continue
        top = [Prediction(str(batch["label"][i]), int(batch["index"][i]), float(batch["probability"][i]))]
        for k in range(2, top_k + 1):
            label = str(batch[f"label_{k}"][i])
            top.append(Prediction(label, labels.index(label), float(batch[f"probability_{k}"][i])))
        out.append(ImageResult(str(name), tuple(top)))
    return out


def image_paths(config: InferConfig) -> list[str]:
    """The image files ``nin-infer --engine ray`` sends to Ray (as given): folders, patterns, list entries.

    Arrays (``.npy``, IDX) are refused: they live in one file on the driver; run them with the
    local engine.
    """
    paths = []
    for item in expand_inputs(config.inputs, config.from_list):
        if item.path is None:
            raise ConfigError(
                f"--engine ray reads image files; '{item.name}' is an array or unreadable stack: "
                "use the local engine for .npy and IDX files"
            )
        paths.append(item.path)
    return paths


def run_ray(
    config: InferConfig, *, address: str | None = None, actors: int = 1, connect_timeout: float = 10.0
) -> InferReport:
    """``nin-infer --engine ray``: the inputs read by Ray Data, classified by ``actors`` model replicas.

    ``address`` is a running cluster (``auto``, ``HOST:PORT`` of its head, ``ray://HOST:10001``);
    without it a local Ray starts. A ``HOST:PORT`` that does not answer within ``connect_timeout``
    seconds is an error (Ray itself would retry for minutes).
    The model travels to the actors as bytes; the images are read by the workers, so on a real
    cluster they must be on storage every node sees (a shared file system, or ``s3://`` paths with
    the recipe in this module's docstring).
    """
    check_address(address)
    if not 0 < connect_timeout <= 3600:
        raise ConfigError(f"connect_timeout must be more than 0 and at most 3600 seconds, got {connect_timeout}")
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray: {RAY_EXTRA}") from None
    if config.triton_url:
        raise ConfigError("--engine ray computes on the cluster; --triton-url belongs to the local engine")
    config.validate()
    check_inputs(config.inputs)
    paths = image_paths(config)
    # The labels, and a check that it loads (and is as signed, with --verify-key) before the cluster gets its bytes.
    local, notes = load_classifier(config.model, "cpu", precision=config.precision, verify_key=config.verify_key)
    top_k = config.top_k_for(len(local.labels))
    fmt = config.row_format() if config.output else None
    digest = model_sha256(local)
    skip = done_inputs(Path(config.output), fmt or "", top_k, digest) if config.resume and config.output else set()
    todo = [p for p in paths if printable_name(p) not in skip]
    started_here = not ray.is_initialized()
    if started_here:
        _reachable(address, connect_timeout)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ValueError, RuntimeError, ConnectionError, TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot connect to the Ray cluster '{address}': {reason}") from None
    # The rows and the summary line are the output; Ray Data's own progress lines would bury them.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    writer = open_rows(config, top_k, digest) if config.output else None
    kept: list[ImageResult] = []
    images = errors = 0
    first_error: str | None = None
    start = time.perf_counter()
    try:
        if todo:
            ray.data.DataContext.get_current().execution_options.preserve_order = True
            # Workers read the files: absolute paths, so a worker's own working folder does not matter.
            items = ray.data.from_items([{"input": p, "path": os.path.abspath(p)} for p in todo])
            ds = items.map_batches(
                RayClassifier,
                fn_constructor_kwargs={
                    "model": model_bytes(config.model, config.precision),
                    "provider": config.provider,
                    "top_k": top_k,
                    "max_batch": config.max_batch,
                },
                batch_size=config.max_batch,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
            )
            for batch in ds.iter_batches(batch_size=config.max_batch, batch_format="numpy"):
                results = _results(batch, local.labels, top_k)
                images, errors, first_error = record(results, writer, kept, images, errors, first_error)
    finally:
        if writer is not None:
            writer.close()
        if started_here:
            ray.shutdown()
    seconds = time.perf_counter() - start
    return InferReport(
        model=local.metadata.model,
        model_sha256=digest,
        providers=(f"ray, {actors} {'actor' if actors == 1 else 'actors'}, {config.provider}",),
        images=images,
        errors=errors,
        skipped=len(paths) - len(todo),
        seconds=seconds,
        images_per_s=images / seconds if seconds > 0 else 0.0,
        output=config.output,
        format=fmt,
        decode_workers=actors,
        first_error=first_error,
        warnings=notes,
        results=tuple(kept),
    )


#: What ``--address`` takes: ``auto``, ``HOST:PORT`` (the head's GCS port, 6379 by default) or
#: ``ray://HOST:PORT`` (Ray Client, 10001 by default).
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def check_address(address: str | None) -> None:
    """Refuse, before Ray starts, an ``address`` Ray cannot connect to (a dashboard URL, a bare host)."""
    if address is None or address == "auto":
        return
    match = _ADDRESS.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        hint = " (that is the dashboard's or the job server's)" if address.startswith(("http://", "https://")) else ""
        raise ConfigError(
            f"--address '{address}' is not a Ray cluster address{hint}; give auto, HOST:PORT of the head "
            "(port 6379 by default) or ray://HOST:PORT for Ray Client (port 10001 by default)"
        )


def _reachable(address: str | None, timeout: float) -> None:
    """Refuse within ``timeout`` seconds a ``HOST:PORT`` nothing answers on: Ray retries for minutes."""
    match = _ADDRESS.match(address or "")
    if match is None:  # no address (a local Ray starts) or auto (Ray finds the cluster or says none runs)
        return
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"cannot reach the Ray cluster '{address}' within {timeout:g} s ({reason}); check that its head "
            "runs and the port is open, or raise --connect-timeout"
        ) from None


def model_bytes(model: str, precision: str | None = None) -> bytes:
    """The model file's bytes (a bundle folder resolved to its ``precision`` model), to ship to actors."""
    from .bundle import resolve_model

    resolved = resolve_model(model, precision)
    return resolved if isinstance(resolved, bytes) else Path(resolved).read_bytes()
