"""Training on Fashion-MNIST: the book's recipe by default, better ones as options, torchrun-aware.

``train(TrainConfig(...)) -> TrainResult``. Under ``torchrun`` (its RANK/WORLD_SIZE/LOCAL_RANK
variables set) the model is wrapped in DistributedDataParallel with a DistributedSampler (gloo on
CPU, NCCL on GPU); only rank 0 prints and writes files. We never write our own distribution layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from nin_edge.models.limits import check_limit, check_seed
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.errors import ConfigError, ModelFileError, NinEdgeError
from nin_edge.runtime.core.files import atomic_output, check_writable
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.core.report import Report, format_table
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from .checkpoint import extract_state_dict, load_state_checked, load_weights, read_checkpoint
from .data import load_split, to_model_input
from .distributed import Dist, dist_from_env
from .evaluate import evaluate_model
from .plotting import pyplot, save_png
from .registry import create_model, model_card


class Optimizer(Choice):
    """The optimiser: the book's plain SGD, or AdamW."""

    SGD = "sgd"
    ADAMW = "adamw"


class Schedule(Choice):
    """The learning-rate schedule after warm-up."""

    CONSTANT = "constant"
    COSINE = "cosine"


CHECKPOINT_FORMAT = 1


class TrainingDivergedError(NinEdgeError):
    """The loss became NaN or infinite; nothing was saved for that epoch."""


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; each field is also the ``nin-train`` flag of the same name.

    The defaults are D2L's: Xavier init, plain SGD at lr 0.1, 10 epochs, batch 128, 224x224.
    """

    data_dir: str = ""
    model: str = "nin"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    input_size: int = 224
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    flip: bool = False
    seed: int = 0
    device: str = "auto"
    output: str = "checkpoint.pt"
    resume: str | None = None
    init_from: str | None = None
    amp: bool = False
    channels_last: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    plot: bool = True

    def validate(self) -> None:
        """Check every option before any data is read."""
        if not self.data_dir:
            raise ConfigError("--data-dir is required: a folder with the four Fashion-MNIST IDX files")
        for name in ("epochs", "batch_size", "input_size"):
            value = getattr(self, name)
            if not is_whole_number(value, minimum=1):
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        Optimizer.check(self.optimizer, "optimizer")
        Schedule.check(self.schedule, "schedule")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("momentum must be in [0, 1) and weight decay at least 0")
        if not math.isfinite(self.warmup_epochs) or not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(
                f"warmup epochs must be a finite number from 0 to --epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        check_limit(self.train_limit, "--train-limit")
        check_limit(self.test_limit, "--test-limit")
        check_seed(self.seed)
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
        check_writable(self.output, "checkpoint")


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures."""

    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    examples_per_s: float
    seconds: float
    lr: float
    input_size: int


@dataclass(frozen=True)
class TrainResult(Report):
    """What a run did: its recipe, every epoch and where the checkpoint went."""

    output: str
    recipe: dict
    history: tuple[EpochStats, ...]
    world_size: int = 1
    rank: int = 0
    plot: str | None = None
    notes: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(e) for e in self.history]

    def to_table(self) -> str:
        text = format_table(self.rows())
        lines = [text, f"checkpoint: {self.output}"]
        if self.plot:
            lines.append(f"curves: {self.plot}")
        lines.extend(self.notes)
        return "\n".join(lines)


def init_xavier(model: nn.Module) -> None:
    """D2L's ``init_cnn``: Xavier-uniform weights for every Linear and Conv2d layer."""
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(layer.weight)


def _device(config: TrainConfig, ddp: Dist) -> torch.device:
    if config.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", ddp.local_rank)
        return torch.device("cpu")
    if config.device == "cuda" and ddp.enabled:
        return torch.device("cuda", ddp.local_rank)
    return torch.device(config.device)


def _lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    total = config.epochs * steps_per_epoch
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.lr * (step + 1) / warm
    if config.schedule == "cosine":
        progress = (step - warm) / max(1, total - warm)
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _save(path: str, payload: dict) -> None:
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _check_resumable(config: TrainConfig, recipe: object) -> None:
    """Refuse to continue a run with another model or optimiser: the saved state would not fit."""
    if not isinstance(recipe, dict):
        return  # checkpoints without a recipe are checked key by key when their state loads
    for key in ("model", "optimizer", "input_size"):
        saved = recipe.get(key, recipe.get("image_size")) if key == "input_size" else recipe.get(key)
        if saved is not None and saved != getattr(config, key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"checkpoint '{config.resume}' was trained with {flag} {saved}, not {getattr(config, key)}; "
                f"resume with {flag} {saved}, or start a new run (--init-from takes its weights)"
            )


def train(
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on Fashion-MNIST, checkpointing atomically after every epoch.

    ``on_step(step, steps, loss)`` and ``on_epoch(stats)`` are called on rank 0 for progress.
    With ``resume`` the run continues exactly where the checkpoint stopped (same weights,
    optimiser state, RNG state and data order as an uninterrupted run on CPU).
    """
    config.validate()
    ddp = dist_from_env()
    if ddp.enabled and not dist.is_initialized():
        backend = "nccl" if (config.device != "cpu" and torch.cuda.is_available()) else "gloo"
        dist.init_process_group(backend=backend)
    device = _device(config, ddp)
    try:
        return _train(config, ddp, device, on_step, on_epoch)
    finally:
        if ddp.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(config, ddp, device, on_step, on_epoch) -> TrainResult:
    train_split = load_split(config.data_dir, "train", config.train_limit)
    test_split = load_split(config.data_dir, "test", config.test_limit)
    for split, name in ((train_split, "train"), (test_split, "test")):
        if len(split) == 0:
            raise ConfigError(f"the {name} split in '{config.data_dir}' holds no images; nothing to train or test on")
    torch.manual_seed(config.seed)
    model = create_model(config.model, input_size=config.input_size)
    card = model_card(config.model)
    init_xavier(model)
    history: list[EpochStats] = []
    start_epoch = 0
    resume_state = None
    if config.init_from:
        load_weights(model, config.init_from)
    if config.resume:
        resume_state = _read_training_checkpoint(config.resume)
        _check_resumable(config, resume_state.get("recipe"))
        load_state_checked(model, extract_state_dict(resume_state, config.resume), config.resume)
        start_epoch, history = _progress(resume_state, config.resume)
        if start_epoch >= config.epochs:
            raise ConfigError(
                f"checkpoint '{config.resume}' already has {start_epoch} epochs; ask for more with --epochs"
            )
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit this keyword
    optimizer = _make_optimizer(config, model)
    if resume_state is not None:
        _restore_optimizer_and_rng(optimizer, model, resume_state, config.resume)
    net: nn.Module = model
    if ddp.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    dataset = TensorDataset(torch.from_numpy(train_split.images), torch.from_numpy(train_split.labels))
    sampler: DistributedSampler | None = (
        DistributedSampler(dataset, ddp.world_size, ddp.rank, shuffle=True, seed=config.seed) if ddp.enabled else None
    )
    loss_fn = nn.CrossEntropyLoss()
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    per_rank_batch = max(1, config.batch_size // ddp.world_size)

    for epoch in range(start_epoch, config.epochs):
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(
            dataset, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler, generator=generator
        )
        steps = len(loader)
        net.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (images, labels) in enumerate(loader):
            step = epoch * steps + i
            lr = _lr_at(config, step, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = to_model_input(images, config.input_size, card.preprocessing)
            if config.flip:
                flip = torch.rand(len(x), generator=generator) < 0.5
                x[flip] = x[flip].flip(-1)
            x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
            with autocast:
                logits = net(x)
                loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; nothing was saved for this "
                    f"epoch ('{config.output}' keeps the last good one). Lower --lr (now {config.lr:g}) or add "
                    "--warmup-epochs"
                )
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            if on_step and ddp.main:
                on_step(i + 1, steps, loss.item())
        seconds = time.perf_counter() - t0
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
        if ddp.enabled:
            dist.all_reduce(totals)
        preds = evaluate_model(model, test_split, config.input_size, device, card.preprocessing, ddp=ddp)
        stats = EpochStats(
            epoch=epoch + 1,
            train_loss=float(totals[0] / totals[2]),
            train_acc=float(totals[1] / totals[2]),
            test_acc=float(np.mean(preds == test_split.labels)),
            examples_per_s=float(totals[2]) / seconds,
            seconds=seconds,
            lr=lr,
            input_size=config.input_size,
        )
        history.append(stats)
        if ddp.main:
            _save(
                config.output,
                {
                    "format": CHECKPOINT_FORMAT,
                    "model": config.model,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "recipe": dataclasses.asdict(config),
                    "history": [dataclasses.asdict(h) for h in history],
                    "rng": torch.get_rng_state(),
                },
            )
            if on_epoch:
                on_epoch(stats)
    plot: str | None = None
    notes: tuple[str, ...] = ()
    if config.plot and ddp.main:
        plot, notes = plot_curves(history, Path(config.output).with_suffix(".png"))
    return TrainResult(
        output=config.output,
        recipe=dataclasses.asdict(config),
        history=tuple(history),
        world_size=ddp.world_size,
        rank=ddp.rank,
        plot=plot,
        notes=notes,
    )


def _read_training_checkpoint(path: str) -> dict:
    data = read_checkpoint(path)
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


def _progress(state: dict, path: str) -> tuple[int, list[EpochStats]]:
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
        ok = isinstance(entry, dict) and set(entry) == set(fields)
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values())
        if not ok:
            raise _misfit(path, f"history entry {k} is {str(entry)[:80]!r}, expected the fields {', '.join(fields)}")
        history.append(EpochStats(**entry))
    return epoch, history


def _restore_optimizer_and_rng(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict, path: str) -> None:
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


def plot_curves(history: list[EpochStats], path: Path) -> tuple[str | None, tuple[str, ...]]:
    """Draw loss and accuracy per epoch into ``path``; says so when matplotlib is missing."""
    try:
        plt = pyplot()
    except ConfigError as exc:
        return None, (f"curves not plotted: {exc}",)
    epochs = [h.epoch for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h.train_loss for h in history], "o-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h.train_acc for h in history], "o-", label="train acc")
    ax2.plot(epochs, [h.test_acc for h in history], "s-", label="test acc")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    return save_png(fig, path), ()
