"""A Triton Inference Server model repository for an exported model, validated against the file.

The ``config.pbtxt`` is built as tritonclient's ``ModelConfig`` protobuf message, checked against
the ONNX file (names, element types, dims, and a symbolic batch axis whenever ``max_batch_size >
0``) and written by the one ``config.pbtxt`` writer, :mod:`nin_edge.runtime.serving.model_config`.

The ``triton`` target: a Triton Inference Server model repository (ONNX backend).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import onnx
from nin_edge.runtime.cli.common import CommaList, choice
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.errors import CheckFailedError, ConfigError
from nin_edge.runtime.core.files import atomic_output
from nin_edge.runtime.core.report import Report
from nin_edge.runtime.serving import check_model_name
from nin_edge.runtime.serving.model_config import model_config_pb2, write_model_config

if TYPE_CHECKING:
    from ..config import ExportConfig
    from ..verified import VerifiedModel


class InstanceKind(Choice):
    """Where Triton runs the model's instances."""

    CPU = "cpu"
    GPU = "gpu"


_ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should serve the model; each field is also an export flag."""

    name: str = "nin"
    max_batch: int = 64
    preferred_batch_sizes: tuple[int, ...] = ()
    queue_delay_us: int = 100
    instance_count: int = 1
    instance_kind: str = "cpu"
    tensorrt: bool = False
    tensorrt_fp16: bool = False

    def validate(self) -> None:
        check_model_name(self.name, "--triton-name")
        if self.max_batch < 0:
            raise ConfigError(f"max batch must be 0 (no batching) or positive, got {self.max_batch}")
        if any(b <= 0 or (self.max_batch and b > self.max_batch) for b in self.preferred_batch_sizes):
            raise ConfigError(
                f"preferred batch sizes {list(self.preferred_batch_sizes)} must lie in 1..{self.max_batch} (the max "
                "batch)"
            )
        if self.queue_delay_us < 0 or self.instance_count <= 0:
            raise ConfigError("queue delay must be >= 0 and instance count positive")
        InstanceKind.check(self.instance_kind, "instance kind")
        if self.tensorrt and self.instance_kind != "gpu":
            raise ConfigError("the TensorRT accelerator needs --instance-kind gpu")


@dataclass(frozen=True)
class TritonRepo(Report):
    """What was written into the repository."""

    repository: str
    model_dir: str
    config_path: str
    config_text: str


def _io(model: onnx.ModelProto) -> tuple[list[tuple[str, int, list]], list[tuple[str, int, list]]]:
    """Name, element type and dims of each graph input and output; a symbolic dim is its name."""

    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            out.append((v.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]))
        return out

    return describe(model.graph.input), describe(model.graph.output)


def _triton_dims(dims: list) -> list[int]:
    """Triton writes a variable-size dimension as -1."""
    return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def build_config(model: onnx.ModelProto, options: TritonOptions, labels_file: str | None):
    """The ``ModelConfig`` message for ``model`` served as ``options`` say."""
    pb, _ = model_config_pb2()
    inputs, outputs = _io(model)
    cfg = pb.ModelConfig(name=options.name, platform="onnxruntime_onnx", max_batch_size=options.max_batch)
    skip = 1 if options.max_batch > 0 else 0
    for name, elem, dims in inputs:
        cfg.input.append(
            pb.ModelInput(name=name, data_type=pb.DataType.Value(_ONNX_TO_TRITON[elem]), dims=_triton_dims(dims[skip:]))
        )
    for name, elem, dims in outputs:
        out = pb.ModelOutput(
            name=name, data_type=pb.DataType.Value(_ONNX_TO_TRITON[elem]), dims=_triton_dims(dims[skip:])
        )
        if labels_file:
            out.label_filename = labels_file
        cfg.output.append(out)
    if options.max_batch > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
        cfg.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
    kind = pb.ModelInstanceGroup.Kind.Value("KIND_GPU" if options.instance_kind == "gpu" else "KIND_CPU")
    cfg.instance_group.append(pb.ModelInstanceGroup(count=options.instance_count, kind=kind))
    if options.tensorrt:
        trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = "FP16" if options.tensorrt_fp16 else "FP32"
        trt.parameters["max_workspace_size_bytes"] = str(1 << 30)
        # TensorRT's optimisation profile must cover every batch the dynamic batcher can form.
        for key, batch in (
            ("trt_profile_min_shapes", 1),
            ("trt_profile_opt_shapes", max(1, options.max_batch // 2)),
            ("trt_profile_max_shapes", max(1, options.max_batch)),
        ):
            name, _, dims = inputs[0]
            trt.parameters[key] = f"{name}:{batch}x" + "x".join(str(d) for d in dims[1:])
    return cfg


def check_config(cfg, model: onnx.ModelProto) -> None:
    """Prove that the config agrees with the ONNX file, or raise :class:`CheckFailedError`."""
    pb, _ = model_config_pb2()
    inputs, outputs = _io(model)
    skip = 1 if cfg.max_batch_size > 0 else 0
    pairs = [(c, o, "input") for c, o in zip(cfg.input, inputs, strict=False)] + [
        (c, o, "output") for c, o in zip(cfg.output, outputs, strict=False)
    ]
    if len(cfg.input) != len(inputs) or len(cfg.output) != len(outputs):
        raise CheckFailedError(
            f"config has {len(cfg.input)} inputs / {len(cfg.output)} outputs, the model {len(inputs)} / {len(outputs)}"
        )
    for entry, (name, elem, dims), kind in pairs:
        if entry.name != name:
            raise CheckFailedError(f"config {kind} {entry.name!r} is called {name!r} in the model")
        if pb.DataType.Name(entry.data_type) != _ONNX_TO_TRITON.get(elem):
            raise CheckFailedError(
                f"config {kind} {name!r} has {pb.DataType.Name(entry.data_type)}, the model {_ONNX_TO_TRITON.get(elem)}"
            )
        if skip and (not dims or not isinstance(dims[0], str)):
            raise CheckFailedError(
                f"max_batch_size is {cfg.max_batch_size} but the model's {kind} {name!r} has a fixed first axis "
                f"{dims[:1]}; "
                "export it with a symbolic batch or use --max-batch 0"
            )
        if list(entry.dims) != _triton_dims(dims[skip:]):
            raise CheckFailedError(f"config {kind} {name!r} has dims {list(entry.dims)}, the model {dims[skip:]}")


def check_repository(repository: str | os.PathLike) -> None:
    """Before any work: tritonclient is installed and ``repository`` can be a folder."""
    model_config_pb2()
    root = Path(repository)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"Triton repository '{root}' exists and is not a folder")
    if not root.exists() and not root.parent.is_dir():
        raise ConfigError(f"Triton repository's parent folder '{root.parent}' does not exist")


def write_triton_repo(
    *,
    onnx_model: bytes | str | os.PathLike,
    repository: str | os.PathLike,
    options: TritonOptions,
    labels: tuple[str, ...],
) -> TritonRepo:
    """Write ``repository/<name>/1/model.onnx``, ``config.pbtxt`` and ``labels.txt``, validated.

    ``onnx_model`` is the serialised model (as ``run_export`` holds it) or a path to one.
    """
    options.validate()
    data = onnx_model if isinstance(onnx_model, bytes) else Path(onnx_model).read_bytes()
    model = onnx.load_from_string(data)
    cfg = build_config(model, options, "labels.txt" if labels else None)
    check_config(cfg, model)
    check_repository(repository)
    root = Path(repository)
    version = root / options.name / "1"
    version.mkdir(parents=True, exist_ok=True)
    with atomic_output(version / "model.onnx") as tmp:
        tmp.write_bytes(data)
    if labels:
        with atomic_output(root / options.name / "labels.txt") as tmp:
            tmp.write_text("\n".join(labels) + "\n")
    config_path, text = write_model_config(cfg, root / options.name)
    return TritonRepo(
        repository=str(root), model_dir=str(root / options.name), config_path=str(config_path), config_text=text
    )


_DEFAULTS = TritonOptions()


class TritonTarget:
    """``out/<name>/1/model.onnx``, ``config.pbtxt`` (checked against the model) and ``labels.txt``."""

    name = "triton"
    options_type = TritonOptions
    # The flags share their names with TritonOptions' fields (--triton-name is ``name``).
    cli_options = (
        click.Option(
            ["--triton-repo"],
            type=click.Path(),
            default=None,
            help="Also write a Triton model repository (model.onnx, config.pbtxt, labels.txt) here.",
        ),
        click.Option(
            ["--triton-name", "name"], default=_DEFAULTS.name, show_default=True, help="Model name in the repository."
        ),
        click.Option(
            ["--max-batch"],
            type=int,
            default=_DEFAULTS.max_batch,
            show_default=True,
            help="Triton max_batch_size (0: no batching).",
        ),
        click.Option(
            ["--preferred-batch-sizes"],
            type=CommaList(int, positive=True),
            default=None,
            help="Dynamic batcher's preferred sizes.",
        ),
        click.Option(["--queue-delay-us"], type=int, default=_DEFAULTS.queue_delay_us, show_default=True),
        click.Option(["--instance-count"], type=int, default=_DEFAULTS.instance_count, show_default=True),
        click.Option(
            ["--instance-kind"], type=choice(InstanceKind), default=_DEFAULTS.instance_kind, show_default=True
        ),
        click.Option(
            ["--tensorrt"], is_flag=True, help="Triton: run through the TensorRT accelerator (GPU instances)."
        ),
        click.Option(["--tensorrt-fp16"], is_flag=True, help="Triton: let TensorRT use FP16."),
    )

    def check(self, options: TritonOptions, out: Path) -> None:
        options.validate()
        check_repository(out)

    def write(self, model: VerifiedModel, options: TritonOptions, out: Path) -> TritonRepo:
        return write_triton_repo(onnx_model=model.data, repository=out, options=options, labels=model.metadata.labels)

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        # The export's own fields (``triton_repo``, ``triton``), not a Deploy entry: its report keeps its place.
        repo = values.pop("triton_repo")
        options = TritonOptions(**{**values, "preferred_batch_sizes": values["preferred_batch_sizes"] or ()})
        return replace(config, triton_repo=repo, triton=options)


TARGET = TritonTarget()
