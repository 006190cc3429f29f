"""Loading weights safely: ``torch.load(weights_only=True)``, clear errors, the book's layouts.

A checkpoint may be a bare ``state_dict`` or a dict holding one under ``state_dict`` or ``model``
(what training scripts usually save). Keys written by D2L's class API (``net.`` prefix) or by
DistributedDataParallel (``module.`` prefix) are accepted as well.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from nin_edge.runtime.core.errors import ModelFileError
from nin_edge.runtime.core.files import sha256_file
from nin_edge.runtime.core.metadata import Preprocessing, check_labels
from torch import nn

_PREFIXES = ("module.", "net.")


#: What a command that reads weights wants, said when it was given something else.
WANTS_WEIGHTS = "give a PyTorch checkpoint (.pt): one nin-train wrote, or a state_dict"


def read_checkpoint(path: str | os.PathLike, wants: str = WANTS_WEIGHTS) -> dict:
    """Read ``path`` with ``torch.load(weights_only=True)``; any failure is a :class:`ModelFileError`.

    ``weights_only=True`` means a pickle that would run code is refused rather than executed.
    ``wants`` ends the error for a file that is an ONNX model (what the option takes instead).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file '{path}' does not exist or is not a file")
    stat = path.stat()
    try:
        # One export asks the same file for its weights, card, split, chance record and training record: the
        # last file read is remembered (a VGG checkpoint is 0.5 GB), keyed so that a rewritten file is read again.
        data = _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except Exception as exc:  # torch raises many unrelated types for bad files
        if _is_onnx(path):
            raise ModelFileError(
                f"'{path}' is an ONNX model (what nin-export writes), not a PyTorch checkpoint; {wants}"
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds pickled Python objects other than tensors, which are refused so that no code runs"
        raise ModelFileError(f"cannot read weights file '{path}': {reason}") from None
    if not isinstance(data, Mapping):
        raise ModelFileError(
            f"weights file '{path}' holds a {type(data).__name__}, expected a state_dict (a dict of tensors)"
        )
    return _containers_copied(data)


def _containers_copied(value: Any) -> Any:
    """``value`` with every dict and list copied (tensors shared): a caller that edits what it was given
    cannot change what the next caller of :func:`read_checkpoint` reads."""
    if isinstance(value, Mapping):
        return {k: _containers_copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_containers_copied(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)
def _load(path: str, mtime_ns: int, size: int) -> object:
    """``torch.load`` of ``path`` as it is at (``mtime_ns``, ``size``); failures are not remembered."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_onnx(path: Path) -> bool:
    """Whether ``path`` parses as an ONNX model with a graph (asked only of files torch cannot read)."""
    import onnx

    try:
        return len(onnx.load_model(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # protobuf's DecodeError and friends: not ONNX
        return False


def extract_state_dict(data: Mapping, source: str) -> dict[str, torch.Tensor]:
    """Find the state_dict in a checkpoint dict and normalise its key prefixes."""
    for key in ("state_dict", "model"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    state = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(
                f"weights file '{source}': entry {key!r} is a {type(value).__name__}, not a tensor; "
                "expected a state_dict, or a dict with one under 'state_dict' or 'model'"
            )
        state[key] = value
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


@dataclass(frozen=True)
class LoadedWeights:
    """Where a model's weights came from."""

    path: str
    sha256: str
    tensors: int


def load_weights(model: nn.Module, path: str | os.PathLike) -> LoadedWeights:
    """Load the checkpoint at ``path`` into ``model`` strictly, after checking every key and shape.

    The first key that is missing, unexpected or of another shape is named in the error.
    """
    data = read_checkpoint(path)
    state = extract_state_dict(data, str(path))
    load_state_checked(model, state, path)
    return LoadedWeights(path=str(path), sha256=sha256_file(path), tensors=len(state))


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load ``state`` into ``model`` strictly, after checking every key, shape and dtype; the first
    that does not fit is named in the error."""
    expected = model.state_dict()
    describe = getattr(model, "model_name", type(model).__name__)
    for key, tensor in expected.items():
        if key not in state:
            raise ModelFileError(
                f"weights file '{path}' does not fit {describe}: key {key!r} is missing "
                f"(expected shape {_shape(tensor)}); the file has {len(state)} of the {len(expected)} tensors"
            )
        if state[key].shape != tensor.shape:
            raise ModelFileError(
                f"weights file '{path}' does not fit {describe}: key {key!r} has shape {_shape(state[key])}, "
                f"expected {_shape(tensor)}; check --in-channels, --num-classes and --input-size"
            )
        if tensor.is_floating_point() and not state[key].is_floating_point():
            # Integer weights load without complaint and answer the same for every image; refuse them.
            raise ModelFileError(
                f"weights file '{path}' does not fit {describe}: key {key!r} holds {state[key].dtype} values, "
                f"expected floating point ({tensor.dtype}); it is not a trained weights file"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise ModelFileError(f"weights file '{path}' does not fit {describe}: unexpected key {extra[0]!r}")
    model.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class TrainedCard:
    """What a trained checkpoint says about its model's data: class names, channels, input size and
    preprocessing. nin-train writes it under ``card``; nin-export copies it into the ONNX metadata,
    which the runtime, the bundle and Triton's labels read. Nothing downstream re-derives it.

    ``model_options`` are the ``create_model`` keywords the weights need beyond channels, classes and
    size (NiN's ``head`` layout and ``head_width``, a pruned NiN's ``widths``); checkpoints written before it have none
    and build the book's model.
    """

    labels: tuple[str, ...]
    in_channels: int
    input_size: int
    preprocessing: Preprocessing
    model_options: dict[str, Any] = field(default_factory=dict)  # Any: they are create_model's **kwargs

    def to_dict(self) -> dict:
        """Plain lists, strings and numbers (what ``torch.load(weights_only=True)`` reads back)."""
        card = {
            "labels": list(self.labels),
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.preprocessing).items()},
        }
        if self.model_options:  # absent for the book's layout, so such cards read as they always did
            card["model_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_options.items()}
        return card

    @classmethod
    def from_dict(cls, data: object, source: str) -> TrainedCard:
        """Parse a checkpoint's ``card``; a malformed one is a :class:`ModelFileError`."""
        try:
            if not isinstance(data, Mapping):
                raise TypeError(f"expected a dict, got {type(data).__name__}")
            pre = dict(data["preprocessing"])
            for key in ("mean", "std"):
                pre[key] = tuple(float(x) for x in pre[key])
            options = data.get("model_options", {})
            if not isinstance(options, Mapping):
                raise TypeError(f"model_options: expected a dict, got {type(options).__name__}")
            return cls(
                labels=check_labels(data["labels"], "its card's labels"),
                in_channels=int(data["in_channels"]),
                input_size=int(data["input_size"]),
                preprocessing=Preprocessing(**pre),
                model_options={str(k): _option(v) for k, v in options.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"checkpoint '{source}' has an unreadable card: {exc}") from None


def _option(value: object) -> str | int | tuple[int, ...]:
    """A card's model option: a string (``head``), a whole number (``head_width``) or a list of whole
    numbers (``widths``), read as a tuple."""
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value)


def checkpoint_card(data: Mapping, source: str) -> TrainedCard | None:
    """The card a nin-train checkpoint carries, or None for bare weights and older checkpoints."""
    if "card" not in data:
        return None
    return TrainedCard.from_dict(data["card"], source)
