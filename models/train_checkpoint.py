"""Training checkpoints: writing them, reading one back to resume (progress, optimiser and random state),
and starting from another model's weights (``--init-from``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from nin_edge.runtime.core.errors import ConfigError, ModelFileError
from nin_edge.runtime.core.files import atomic_output, kind_of
from torch import nn

from .checkpoint import TrainedCard, extract_state_dict, read_checkpoint
from .datasets import LabelledData, check_same_split

if TYPE_CHECKING:
    from .train_config import TrainConfig


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures."""

    epoch: int
    train_loss: float
    train_acc: float
    held_out_acc: float
    examples_per_s: float
    seconds: float
    lr: float
    input_size: int


CHECKPOINT_FORMAT = 1


def save(path: str, payload: dict) -> None:
    """Write a training checkpoint atomically (a crash mid-write leaves the previous one)."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def check_recipe(config: TrainConfig, saved: dict) -> None:
    """Refuse to continue a run with another model, optimiser, input size, split fraction, backbone lr
    scale or freeze (before any data is read): the saved state would not fit, or other images would be held
    out."""
    recipe = saved.get("recipe")
    if not isinstance(recipe, dict):
        return  # checkpoints without a recipe are checked key by key when their state loads
    for key in ("model", "optimizer", "input_size", "val_fraction", "backbone_lr_scale", "freeze_epochs"):
        value = recipe.get(key, recipe.get("image_size")) if key == "input_size" else recipe.get(key)
        if value is not None and value != getattr(config, key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"checkpoint '{config.resume}' was trained with {flag} {value}, not {getattr(config, key)}; "
                f"resume with {flag} {value}, or start a new run (--init-from takes its weights)"
            )


def check_resumable(config: TrainConfig, saved: dict, data: LabelledData, card: TrainedCard | None) -> None:
    """Refuse to continue a run on other classes, channels or held-out images than it was trained on."""
    if card is not None:
        data.check_classes(card.labels, f"checkpoint '{config.resume}'")
        if config.channels is not None and config.channels != card.in_channels:
            raise ConfigError(
                f"checkpoint '{config.resume}' takes {card.in_channels} channel(s), not --channels {config.channels}"
            )
    check_same_split(data, saved.get("data"), f"checkpoint '{config.resume}'", strict=True)


def init_from(model: nn.Module, source: dict, path: str) -> tuple[list[str], list[str]]:
    """Load the layers of ``source`` that fit ``model``; returns the layers kept and those left new.

    A tensor of the same shape is kept. The first convolution of a one-channel model is adapted to
    three channels by repeating the grey kernel, scaled by 1/3 so that a grey image gives the same
    response. Layers of another shape (the last NiN block for a new class count) keep their fresh
    initialisation, and so does the rest of that block. Every other difference is an error.
    """
    state = extract_state_dict(source, path)
    own = model.state_dict()
    kept, new = [], []
    extra = [k for k in state if k not in own]
    if extra:
        raise ConfigError(f"--init-from '{path}' does not fit {config_name(model)}: unexpected key {extra[0]!r}")
    first = next(k for k in own if k.endswith("weight"))
    loaded = {}
    for key, tensor in own.items():
        if key not in state:
            raise ConfigError(f"--init-from '{path}' does not fit {config_name(model)}: key {key!r} is missing")
        given = state[key]
        if given.shape == tensor.shape:
            loaded[key] = given
            kept.append(key)
        elif key == first and given.shape[1] == 1 and given.shape[0] == tensor.shape[0]:
            loaded[key] = given.repeat(1, tensor.shape[1], 1, 1) / tensor.shape[1]
            kept.append(f"{key} (grey kernel repeated over {tensor.shape[1]} channels, scaled by 1/{tensor.shape[1]})")
        elif key.split(".")[0] == last_block(own):
            new.append(key)
        else:
            raise ConfigError(
                f"--init-from '{path}': {key!r} has shape {tuple(given.shape)}, the model needs {tuple(tensor.shape)}; "
                "only the first convolution (channels) and the last block (classes) may differ"
            )
    head = last_block(own)
    if any(key.split(".")[0] == head for key in new):
        # A last block with any new tensor is new as a whole: a tensor that only happens to keep its shape
        # (the wide head's final bias for 10 classes) would carry the old classes' values into the new ones.
        for key in [k for k in loaded if k.split(".")[0] == head]:
            del loaded[key]
            kept.remove(key)
            new.append(key)
    model.load_state_dict({**own, **loaded})
    return kept, new


def config_name(model: nn.Module) -> str:
    """The model's registered name (its class name for an unregistered network)."""
    return str(getattr(model, "model_name", type(model).__name__))


def last_block(state: dict) -> str:
    """The top-level index of the last layer with weights (NiN: its last block, 7)."""
    return max((k.split(".")[0] for k in state if k.endswith("weight")), key=int)


def init_note(kept: list[str], new: list[str], path: str) -> str:
    """What ``--init-from`` kept, adapted and re-initialised, in one line."""
    layers = sorted({k.split(" ")[0].rsplit(".", 1)[0] for k in kept})
    adapted = [k for k in kept if " (" in k]
    text = f"initialised from '{path}': kept {len(kept)} tensors ({', '.join(layers)})"
    if adapted:
        text += "; adapted " + "; ".join(adapted)
    if new:
        text += f"; new (re-initialised for the new classes): {', '.join(sorted({k.rsplit('.', 1)[0] for k in new}))}"
    return text


#: The title nin-train's curves PNG carries, so that a run can tell its own PNG from a user's.
CURVES_TITLE = "nin-train curves"


def curves_path(output: str) -> Path:
    """Where the curves PNG goes: ``name.png`` beside ``name.pt``."""
    return Path(output).with_suffix(".png")


def check_outputs(output: str, *, plot: bool) -> None:
    """Refuse before any work to replace a file nin-train did not write: ``output`` and its
    ``.best.pt`` must be nin-train checkpoints (or absent), the curves PNG nin-train's."""
    own = [
        (output, _is_checkpoint, "a nin-train checkpoint"),
        (best_path(output), _is_checkpoint, "a nin-train checkpoint"),
    ]
    if plot:
        own.append((str(curves_path(output)), _is_curves, "nin-train's curves PNG"))
    for path, is_own, kind in own:
        if kind_of(path) == "a regular file" and not is_own(path):
            raise ConfigError(
                f"'{path}' exists and is not {kind}: this run would replace it; give another --output, or "
                "--overwrite to replace it"
            )


def _is_checkpoint(path: str) -> bool:
    try:
        data = read_checkpoint(path)
    except ModelFileError:
        return False
    return all(k in data for k in ("state_dict", "optimizer", "epoch"))


def _is_curves(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Title") == CURVES_TITLE
    except Exception:  # Pillow raises many types for files that are not images: not ours
        return False


def best_path(output: str) -> str:
    """Where the best checkpoint by held-out accuracy goes: ``name.best.pt`` beside ``name.pt``."""
    path = Path(output)
    return str(path.with_name(f"{path.stem}.best{path.suffix or '.pt'}"))


def read_training_checkpoint(path: str) -> dict:
    """A checkpoint to resume from, with the state a resume needs (else a clear error)."""
    data = read_checkpoint(path, wants="--resume takes the .pt checkpoint that nin-train wrote for the run")
    needed = ("state_dict", "optimizer", "epoch", "rng")
    missing = [k for k in needed if k not in data]
    if missing:
        raise ConfigError(
            f"'{path}' is not a nin-train checkpoint (no {', '.join(missing)}); use --weights for bare weights"
        )
    if not isinstance(data["state_dict"], Mapping):
        raise _misfit(path, f"its state_dict is a {type(data['state_dict']).__name__}, not a dict of tensors")
    return data


def _misfit(path: str, what: str) -> ModelFileError:
    return ModelFileError(
        f"checkpoint '{path}' does not fit this run: {what}; resume from a checkpoint nin-train wrote"
    )


def renamed_epoch(entry: dict) -> dict:
    """A history entry with ``test_acc`` (its name in checkpoints and records before 2026-12, whichever split
    it was scored on) called ``held_out_acc``, as nin-train writes it now."""
    if "test_acc" in entry and "held_out_acc" not in entry:
        return {("held_out_acc" if key == "test_acc" else key): v for key, v in entry.items()}
    return entry


def progress(state: dict, path: str) -> tuple[int, list[EpochStats]]:
    """The epochs done and their history, checked: a crafted value is one error, not a traceback."""
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise _misfit(path, f"its epoch is {epoch!r}, expected a whole number >= 0")
    entries = state.get("history", [])
    if not isinstance(entries, list):
        raise _misfit(path, f"its history is a {type(entries).__name__}, expected a list of epochs")
    fields = {f.name: f.type for f in dataclasses.fields(EpochStats)}
    history = []
    for k, entry in enumerate(entries):
        if isinstance(entry, dict):
            entry = renamed_epoch(entry)
        ok = isinstance(entry, dict) and set(entry) == set(fields)
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values())
        if not ok:
            raise _misfit(path, f"history entry {k} is {str(entry)[:80]!r}, expected the fields {', '.join(fields)}")
        history.append(EpochStats(**entry))
    return epoch, history


def restore_optimizer_and_rng(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict, path: str) -> None:
    """Load the optimiser's state and the RNG state, refusing what does not fit the model's parameters."""
    saved = state["optimizer"]
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise _misfit(path, f"its optimizer state cannot be loaded ({type(exc).__name__}: {exc})") from None
    for name, param in model.named_parameters():
        for key, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise _misfit(
                    path,
                    f"its optimizer's {key} for {name!r} has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(param.shape)}",
                )
    rng = state["rng"]
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        shown = f"{rng.dtype} {tuple(rng.shape)}" if isinstance(rng, torch.Tensor) else type(rng).__name__
        raise _misfit(path, f"its rng state is {shown}, expected torch.get_rng_state()'s uint8 tensor")
    try:
        torch.set_rng_state(rng)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _misfit(path, f"its rng state is not one torch can restore ({exc})") from None
