"""Training on the user's images (or Fashion-MNIST): the book's recipe by default, better ones as options,
fine-tuning from the shipped weights, torchrun-aware.

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
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from nin_edge.runtime.core.errors import ConfigError, NinEdgeError
from nin_edge.runtime.core.report import Report, format_table
from torch import nn
from torch.utils.data import DistributedSampler, WeightedRandomSampler

from .augment import augment
from .batches import Batches, channel_stats
from .chance import chance_check
from .checkpoint import TrainedCard, checkpoint_card, extract_state_dict, load_state_checked, read_checkpoint
from .curves import plot_curves
from .datasets import LabelledData, Progress, open_data
from .distributed import Dist, dist_from_env
from .evaluate import predict_logits
from .health import check_alive
from .registry import create_model, model_card, model_options, pretrained_path
from .schedule import group_lr, lr_at, make_optimizer
from .train_checkpoint import (
    CHECKPOINT_FORMAT,
    EpochStats,
    best_path,
    check_recipe,
    check_resumable,
    curves_path,
    init_from,
    init_note,
    last_block,
    progress,
    read_training_checkpoint,
    restore_optimizer_and_rng,
    save,
)
from .train_config import AUTO_BATCH_MAX, Head, TrainConfig, auto_batch_size
from .zoo import WIDE_HEAD_WIDTH, init_head

#: What --init-from takes, said when it is given an ONNX model.
INIT_WANTS = "--init-from takes a PyTorch checkpoint (.pt: nin-train's, or a state_dict) or 'pretrained'"


class TrainingDivergedError(NinEdgeError):
    """The loss became NaN or infinite; nothing was saved for that epoch."""


def amp_dtype(device: torch.device) -> torch.dtype:
    """Mixed precision's compute type: float16 (with loss scaling) on CUDA, bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


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
    best: str | None = None
    classes: tuple[str, ...] = ()
    #: The split each epoch's ``held_out_acc`` was scored on: ``val`` where the data has one, else ``test``.
    held_out: str = "test"

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(e) for e in self.history]

    def to_table(self) -> str:
        text = format_table(self.rows())
        lines = [text, f"checkpoint: {self.output}"]
        if self.best:
            lines.append(f"best by held-out accuracy: {self.best}")
        if self.classes:
            lines.append(f"classes ({len(self.classes)}): {', '.join(self.classes)}")
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


def _head(config: TrainConfig, data: LabelledData, init_card: TrainedCard | None) -> dict[str, Any]:
    """The model options of the head: NiN's wide head (``WIDE_HEAD_WIDTH`` hidden units, or C if more)
    unless asked for the book's or trained on the Fashion-MNIST IDX files (where the book's recipe and
    the shipped weights' seed stay as they are). A wide checkpoint fine-tuned on its own classes keeps
    its head as it is (a card without ``head_width`` has the first wide head's width)."""
    if "head" not in model_options(config.model):
        return {}
    wide_kept = (
        init_card is not None
        and init_card.model_options.get("head") == Head.WIDE
        and len(init_card.labels) == len(data.classes)
        and config.head in (Head.AUTO, Head.WIDE)
    )
    if wide_kept and init_card is not None:  # before the IDX rule: a wide checkpoint keeps its head anywhere
        return {k: v for k, v in init_card.model_options.items() if k in ("head", "head_width")}
    head = config.head if config.head != Head.AUTO else (Head.BOOK if data.kind == "idx" else Head.WIDE)
    if head == Head.BOOK:
        return {}
    return {"head": str(head), "head_width": max(len(data.classes), WIDE_HEAD_WIDTH)}


def _card(config: TrainConfig, data: LabelledData, init: dict | None) -> TrainedCard:
    """The new model's card: the data's classes and channels, the registered model's preprocessing
    (or the fine-tuned checkpoint's) with its colour and per-channel mean/std for those channels,
    and the head layout and (from a pruned ``init_from``) block widths it is built with."""
    channels = data.channels
    base = model_card(config.model).preprocessing
    trained = checkpoint_card(init, config.init_from or "") if init is not None else None
    options: dict[str, Any] = dict(_head(config, data, trained))
    if init is not None:
        base = trained.preprocessing if trained is not None else base
        if trained is not None and "widths" in trained.model_options:  # a pruned model fine-tunes at its widths
            options["widths"] = trained.model_options["widths"]
    pre = dataclasses.replace(
        base,
        color="rgb" if channels == 3 else "grayscale",
        mean=_per_channel(base.mean, channels),
        std=_per_channel(base.std, channels),
    )
    if config.normalize == "data":
        pre = channel_stats(data.split("train"), channels, config.input_size, pre, config.seed)
    return TrainedCard(
        labels=data.classes,
        in_channels=channels,
        input_size=config.input_size,
        preprocessing=pre,
        model_options=options,
    )


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """One value per channel: a single (grey) value repeated, or the luma-weighted mean of three."""
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    return (float(np.dot(values, (0.299, 0.587, 0.114))),)


def train(
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_scan: Progress | None = None,
    prepare: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data``, checkpointing atomically after every epoch.

    ``on_step(step, steps, loss)``, ``on_epoch(stats)``, ``on_note(text)`` (what was decided: layers
    kept, files skipped) and ``on_scan(done, total)`` (the up-front file check) are called on rank 0
    for progress. With ``resume`` the run continues exactly where the checkpoint stopped (same weights,
    optimiser state, RNG state and data order as an uninterrupted run on CPU). ``prepare(model)`` is
    called once the weights are loaded, before the optimiser is made (nin-qat attaches its fake
    quantization there); it must keep the model's state_dict keys.
    """
    config.validate()
    ddp = dist_from_env()
    if ddp.enabled and not dist.is_initialized():
        backend = "nccl" if (config.device != "cpu" and torch.cuda.is_available()) else "gloo"
        dist.init_process_group(backend=backend)
    device = _device(config, ddp)
    try:
        return _train(config, ddp, device, on_step, on_epoch, on_note or (lambda _: None), on_scan, prepare)
    finally:
        if ddp.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(config, ddp, device, on_step, on_epoch, on_note, on_scan, prepare) -> TrainResult:
    resume_state = read_training_checkpoint(config.resume) if config.resume else None
    recipe = resume_state.get("recipe") if resume_state is not None else None
    config = config.resolved(recipe if isinstance(recipe, Mapping) else None)
    if resume_state is not None:
        check_recipe(config, resume_state)
    resumed_card = checkpoint_card(resume_state, config.resume) if resume_state is not None else None
    init = None
    init_path = None
    if config.init_from:  # read before the data is scanned: a wrong file is refused at once
        init_path = str(pretrained_path(config.model)) if config.init_from == "pretrained" else config.init_from
        init = read_checkpoint(init_path, wants=INIT_WANTS)
    recorded = resume_state.get("data") if resume_state is not None else None
    split_options = recorded if isinstance(recorded, dict) and "val_fraction" in recorded else {}
    data = open_data(
        config.data,
        val_fraction=split_options.get("val_fraction", config.val_fraction),
        seed=split_options.get("seed", config.seed),
        channels=config.channels or (resumed_card.in_channels if resumed_card else None),
        strict=config.strict,
        progress=on_scan if ddp.main else None,
    )
    notes = list(data.notes)
    if data.kind == "idx" and "train" not in data.splits:
        data.split("train")  # the clear "no train split" error
    train_samples = data.split("train").head(config.train_limit)
    held_samples = data.split(data.held_out).head(config.test_limit)
    for samples in (train_samples, held_samples):
        if len(samples) == 0:
            raise ConfigError(
                f"the {samples.name} split in '{config.data}' holds no images; nothing to train or test on"
            )
    batch_size = config.batch_size or auto_batch_size(len(train_samples))
    if config.batch_size is None:
        config = dataclasses.replace(config, batch_size=batch_size)  # the recipe records the batch used
        if batch_size != AUTO_BATCH_MAX and resume_state is None:
            notes.append(f"batch size {batch_size} for {len(train_samples)} training images (--batch-size)")
    torch.manual_seed(config.seed)
    card = resumed_card or _card(config, data, init)
    model = create_model(
        config.model,
        in_channels=card.in_channels,
        num_classes=len(card.labels),
        input_size=config.input_size,
        **card.model_options,
    )
    init_xavier(model)
    if card.model_options.get("head") == Head.WIDE:
        init_head(model[int(last_block(model.state_dict()))])
    history: list[EpochStats] = []
    start_epoch = 0
    best_acc = -1.0
    new: list[str] = []
    if init is not None and init_path is not None and resume_state is None:
        kept, new = init_from(model, init, init_path)
        notes.append(init_note(kept, new, config.init_from or init_path))
    config, chosen = config.with_fine_tune_defaults(
        new_layers=bool(new), steps_per_epoch=math.ceil(len(train_samples) / batch_size)
    )
    notes += [chosen] if chosen else []
    if resume_state is not None:
        check_resumable(config, resume_state, data, resumed_card)
        load_state_checked(model, extract_state_dict(resume_state, config.resume or ""), config.resume or "")
        start_epoch, history = progress(resume_state, config.resume or "")
        best_acc = max((h.held_out_acc for h in history), default=-1.0)
        if start_epoch >= config.planned_epochs:
            raise ConfigError(
                f"checkpoint '{config.resume}' already has {start_epoch} epochs; ask for more with --epochs"
            )
    for note in notes:
        if ddp.main:
            on_note(note)
    if prepare is not None:
        prepare(model)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit this keyword
    # A resumed run keeps the parameter groups it saved (two for a fine-tune run with a backbone scale).
    fine_tune = bool(config.init_from) if resume_state is None else _saved_groups(resume_state) == 2
    optimizer = make_optimizer(config, model, fine_tune=fine_tune)
    if resume_state is not None:
        restore_optimizer_and_rng(optimizer, model, resume_state, config.resume)
    net: nn.Module = model
    if ddp.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    files = data.kind != "idx"
    kind = config.augment if config.augment != "auto" else ("crop" if files else "none")
    flip = config.flip if config.flip is not None else files
    counts = np.bincount(train_samples.labels, minlength=len(card.labels)).astype(np.float64)
    class_weight = None
    if config.balance == "weights":
        class_weight = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    if config.balance == "sampler" and ddp.enabled:
        raise ConfigError("--balance sampler cannot be used under torchrun; use --balance weights")
    loss_fn = nn.CrossEntropyLoss(weight=None if class_weight is None else class_weight.to(device))
    # bf16 keeps float32's exponent range, so only float16 on CUDA needs loss scaling.
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    if config.amp and ddp.main:
        on_note(f"mixed precision: {str(amp_dtype(device)).removeprefix('torch.')} autocast on {device.type}")
    per_rank_batch = max(1, batch_size // ddp.world_size)
    batch_options = {
        "channels": card.in_channels,
        "size": config.input_size,
        "pre": card.preprocessing,
        "workers": config.workers,
        "strict": config.strict,
        "cache": config.cache_dir,
    }
    held_index = list(range(ddp.rank, len(held_samples), ddp.world_size))
    held_batches = Batches(held_samples, batch_size=256, sampler=held_index, **batch_options)
    if ddp.main:  # the history's field is held_out_acc for every split; say which split it is this time
        on_note(f"each epoch is scored on the {data.held_out} split ({len(held_samples)} images)")
    stale = 0
    best_file = best_path(config.output)
    stopped = None
    lr = config.learning_rate

    for epoch in range(start_epoch, config.planned_epochs):
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        sampler: DistributedSampler | WeightedRandomSampler | None = None
        if ddp.enabled:
            sampler = DistributedSampler(
                range(len(train_samples)),  # type: ignore[arg-type]  # any sized sequence works
                ddp.world_size,
                ddp.rank,
                shuffle=True,
                seed=config.seed,
            )
            sampler.set_epoch(epoch)
        elif config.balance == "sampler":
            weights = 1.0 / np.maximum(counts, 1)[train_samples.labels]
            sampler = WeightedRandomSampler(
                weights.tolist(), num_samples=len(train_samples), replacement=True, generator=generator
            )
        loader = Batches(
            train_samples,
            batch_size=per_rank_batch,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            **batch_options,
        )
        steps = len(loader)
        net.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, (x, labels) in enumerate(loader):
            step = epoch * steps + i
            lr = lr_at(config, step, steps)
            for group in optimizer.param_groups:
                group["lr"] = group_lr(config, group, lr, epoch)
            x = augment(x, kind, flip, generator)
            x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if step == 0:
                _check_step_zero(model, x, card, on_note if ddp.main else (lambda _: None))
                net.train()
            optimizer.zero_grad(set_to_none=True)
            autocast = torch.autocast(device.type, dtype=amp_dtype(device)) if config.amp else contextlib.nullcontext()
            with autocast:
                logits = net(x)
                loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; nothing was saved for this "
                    f"epoch ('{config.output}' keeps the last good one). Lower --lr (now {config.learning_rate:g}) "
                    "or add --warmup-epochs"
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
        logits, truth = predict_logits(model, held_batches, device)
        preds = logits.argmax(1).numpy()
        totals = torch.tensor([loss_sum, correct, seen, float(np.sum(preds == truth)), len(truth)], dtype=torch.float64)
        if ddp.enabled:
            dist.all_reduce(totals)
        for note in filter(None, (loader.failure_note(), held_batches.failure_note())):
            if ddp.main:
                on_note(note)
        held_batches.failed.clear()
        stats = EpochStats(
            epoch=epoch + 1,
            train_loss=float(totals[0] / totals[2]),
            train_acc=float(totals[1] / totals[2]),
            held_out_acc=float(totals[3] / max(1.0, float(totals[4]))),
            examples_per_s=float(totals[2]) / seconds,
            seconds=seconds,
            lr=lr,
            input_size=config.input_size,
        )
        history.append(stats)
        improved = stats.held_out_acc > best_acc
        chance = chance_check(preds, truth, card.labels, f"held-out split ({data.held_out})")
        if ddp.main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "model": config.model,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "recipe": dataclasses.asdict(config),
                "history": [dataclasses.asdict(h) for h in history],
                "rng": torch.get_rng_state(),
                "card": card.to_dict(),
                "data": {"source": data.source, **data.split_record},
                "chance": chance.to_dict(),  # nin-export's gate reads it (this rank's share under torchrun)
            }
            save(config.output, payload)
            if improved:
                save(best_file, payload)
            if on_epoch:
                on_epoch(stats)
        # After saving, so that the checkpoint of a dead run is there to inspect.
        check_alive(logits, card.labels, f"after epoch {epoch + 1}", _dead_hint(card))
        if improved:
            best_acc, stale = stats.held_out_acc, 0
        else:
            stale += 1
        if config.patience and stale >= config.patience:
            stopped = (
                f"stopped early after epoch {epoch + 1}: {data.held_out} accuracy has not improved for "
                f"{config.patience} epoch(s) (best {best_acc:.4f})"
            )
            break
    warning = chance.line()
    if warning:
        notes.append(f"warning: {warning}; {NEAR_CHANCE_HINT}")
    plot: str | None = None
    plot_notes: tuple[str, ...] = ()
    if config.plot and ddp.main:
        plot, plot_notes = plot_curves(history, curves_path(config.output), held_out=data.held_out)
    return TrainResult(
        output=config.output,
        recipe=dataclasses.asdict(config),
        history=tuple(history),
        world_size=ddp.world_size,
        rank=ddp.rank,
        plot=plot,
        notes=tuple(notes) + ((stopped,) if stopped else ()) + plot_notes,
        best=best_file if Path(best_file).exists() else None,
        classes=card.labels,
        held_out=data.held_out,
    )


def _saved_groups(state: dict) -> int:
    """How many parameter groups a training checkpoint's optimiser state has (0 if it has none)."""
    saved = state.get("optimizer")
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    return len(groups) if isinstance(groups, list) else 0


#: What to try when the last block is dead or the model ends near chance.
def _dead_hint(card: TrainedCard) -> str:
    """What to try when the head died: the wide head only where the run does not have it already."""
    wide = card.model_options.get("head") == Head.WIDE
    return f"try {'' if wide else '--head wide (the default for image folders), '}a lower --lr, or another --seed " + (
        "(see docs/few-classes.md)"
    )


NEAR_CHANCE_HINT = (
    "more epochs, more images per class, --init-from pretrained or a lower --lr may help; "
    "nin-export refuses to bundle it without --allow-chance"
)


def _check_step_zero(model: nn.Module, x: torch.Tensor, card: TrainedCard, on_note: Callable) -> None:
    """One forward pass on the first batch before any step: a dead last block stops the run here."""
    if bool((x == x[:1]).all()):
        return  # identical images must get identical scores: they say nothing about the head
    model.eval()  # no dropout: the scores a trained model would give (no random numbers are drawn)
    with torch.no_grad():
        note = check_alive(model(x), card.labels, "at step 0 (before training)", _dead_hint(card))
    if note:
        on_note(note)
