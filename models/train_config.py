"""nin-train's options: :class:`TrainConfig` (each field a ``nin-train`` flag), the choices its fields take,
what ``auto`` resolves to, and the checks that run before any data is read."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from nin_edge.models.limits import check_limit, check_seed
from nin_edge.runtime.core.choices import Choice
from nin_edge.runtime.core.cpu import cpu_flags
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.files import check_writable
from nin_edge.runtime.core.numbers import is_whole_number

from .registry import model_options
from .train_checkpoint import check_outputs


class Optimizer(Choice):
    """The optimiser: the book's plain SGD, or AdamW; auto: see :data:`AUTO_RECIPES`."""

    AUTO = "auto"
    SGD = "sgd"
    ADAMW = "adamw"


class Schedule(Choice):
    """The learning-rate schedule after warm-up; auto: see :data:`AUTO_RECIPES`."""

    AUTO = "auto"
    CONSTANT = "constant"
    COSINE = "cosine"


#: What ``--optimizer``, ``--lr``, ``--schedule`` and ``--epochs`` left at auto mean: from scratch, the
#: book's SGD at lr 0.1 for 10 epochs; with --init-from, AdamW at 5e-4 on a cosine schedule for 15 epochs
#: (the book's lr 0.1 wrecks pretrained weights on a few hundred new images: the loss turns NaN or every
#: output dies; 15 epochs with the staged start beat 10 on 10 classes of photographs: docs/few-classes.md).
@dataclass(frozen=True)
class AutoRecipe:
    optimizer: str
    lr: float
    schedule: str
    epochs: int


AUTO_RECIPES = {
    "scratch": AutoRecipe(optimizer="sgd", lr=0.1, schedule="constant", epochs=10),
    "fine-tune": AutoRecipe(optimizer="adamw", lr=0.0005, schedule="cosine", epochs=15),
}


class Augment(Choice):
    """Geometric augmentation of training images: ``auto`` is none on Fashion-MNIST (the book's
    recipe) and ``crop`` on image folders and manifests."""

    AUTO = "auto"
    NONE = "none"
    TRANSLATE = "translate"
    CROP = "crop"


class Balance(Choice):
    """For imbalanced classes: loss weights (inverse class frequency) or a balanced sampler."""

    NONE = "none"
    WEIGHTS = "weights"
    SAMPLER = "sampler"


class Normalize(Choice):
    """Mean and std of the model's input: the model card's (``card``) or the training images' (``data``)."""

    CARD = "card"
    DATA = "data"


class Head(Choice):
    """NiN's last block (models/zoo.py): auto is the book's for the Fashion-MNIST IDX files (the book's
    recipe, unchanged), else ``wide``, which learns 2 or 3 classes where the book's dies (docs/few-classes.md)."""

    AUTO = "auto"
    BOOK = "book"
    WIDE = "wide"


#: With --batch-size left out: the largest batch, and at least this many steps per epoch below it.
AUTO_BATCH_MAX = 128
AUTO_BATCH_STEPS = 8
AUTO_BATCH_MIN = 16


def auto_batch_size(images: int) -> int:
    """nin-train's batch when none is given: 128 (the book's), or for a small folder the power of two
    from 16 that gives about 8 steps per epoch (15 epochs of 1 step each at 128 do not learn 2 classes)."""
    fitting = 2 ** int(math.log2(max(1.0, images / AUTO_BATCH_STEPS)))
    return min(AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, fitting))


#: With --init-from, a new last block and at least AUTO_BATCH_STEPS steps an epoch, --freeze-epochs and
#: --backbone-lr-scale left out mean: the loaded layers wait this share of the epochs while the new block
#: learns alone, then learn at lr x this scale (the README's recipe, measured in docs/few-classes.md).
AUTO_FREEZE_SHARE = 0.2
AUTO_BACKBONE_LR_SCALE = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; each field is also the ``nin-train`` flag of the same name.

    The defaults are D2L's: Xavier init, plain SGD at lr 0.1, 10 epochs, batch 128, 224x224 (with
    ``init_from``, AdamW at lr 5e-4 on a cosine schedule: :data:`AUTO_RECIPES`); with
    ``batch_size`` None a small folder gets a smaller batch (:func:`auto_batch_size`), and ``head``
    auto gives NiN a wide last block except on the Fashion-MNIST IDX files. With ``init_from`` and
    ``backbone_lr_scale`` below 1 the loaded layers before the last block learn at lr x
    ``backbone_lr_scale``, the new last block at lr; with ``freeze_epochs`` the loaded layers do not
    learn at all for that many first epochs. Left None (auto), both are chosen once the data is known
    (:meth:`with_fine_tune_defaults`; docs/few-classes.md).
    """

    data: str = ""
    model: str = "nin"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    input_size: int = 224
    optimizer: str = "auto"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "auto"
    warmup_epochs: float = 0.0
    backbone_lr_scale: float | None = None
    freeze_epochs: int | None = None
    flip: bool | None = None
    augment: str = "auto"
    balance: str = "none"
    normalize: str = "card"
    val_fraction: float = 0.1
    channels: int | None = None
    workers: int = 2
    strict: bool = False
    cache_dir: str | None = None
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    output: str = "checkpoint.pt"
    resume: str | None = None
    init_from: str | None = None
    head: str = "auto"
    amp: bool = False
    channels_last: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    plot: bool = True
    overwrite: bool = False

    def resolved(self, recorded: Mapping | None = None) -> TrainConfig:
        """The recipe with every auto optimiser, lr, schedule and epoch count filled in: a resumed run's
        from the ``recorded`` recipe (its batch size too), else :data:`AUTO_RECIPES` (fine-tune with
        ``init_from``, else scratch)."""
        filled: dict[str, object] = {}
        for name in ("optimizer", "lr", "schedule", "epochs"):
            if getattr(self, name) in (None, "auto"):
                given = (recorded or {}).get(name)
                filled[name] = given if given not in (None, "auto") else getattr(self._auto, name)
        if self.batch_size is None and recorded and recorded.get("batch_size"):
            filled["batch_size"] = recorded["batch_size"]  # else chosen from the data (auto_batch_size)
        if recorded is not None:  # runs from before these options had one lr and no freeze
            for name, before in (("backbone_lr_scale", 1.0), ("freeze_epochs", 0)):
                if getattr(self, name) is None:
                    filled[name] = before if recorded.get(name) is None else recorded[name]
        config = dataclasses.replace(self, **filled)  # type: ignore[arg-type]  # each filled as its field's type
        recorded_freeze = recorded is not None and self.freeze_epochs is None and "freeze_epochs" in filled
        if recorded_freeze and config.planned_epochs <= (config.freeze_epochs or 0):
            raise ConfigError(
                f"this run freezes its loaded layers for its first {config.freeze_epochs} epochs (recorded); "
                f"ask for more than {config.freeze_epochs} with --epochs"
            )
        config.check_epoch_bounds()
        return config

    def with_fine_tune_defaults(self, *, new_layers: bool, steps_per_epoch: int) -> tuple[TrainConfig, str | None]:
        """The recipe with an auto (None) ``freeze_epochs`` and ``backbone_lr_scale`` filled in, and a note
        saying what auto chose when it matters (weights loaded with a new last block).

        With ``init_from``, a new last block and at least :data:`AUTO_BATCH_STEPS` steps an epoch, the
        loaded layers wait the first fifth of the epochs and then learn at half the lr (the README's recipe;
        on 5 classes of photographs it raised held-out accuracy by 0.16 over one lr). With fewer steps
        (a tiny folder) every layer learns at one lr from the start: a frozen start then leaves too few
        steps to adapt the loaded layers (the tests' colour folder stayed at chance).
        """
        auto_freeze, auto_scale = self.freeze_epochs is None, self.backbone_lr_scale is None
        if not (auto_freeze or auto_scale):
            return self, None
        staged = bool(self.init_from) and new_layers and steps_per_epoch >= AUTO_BATCH_STEPS
        epochs = self.planned_epochs
        freeze = min(epochs - 1, max(1, round(epochs * AUTO_FREEZE_SHARE))) if staged else 0
        scale = AUTO_BACKBONE_LR_SCALE if staged else 1.0
        config = dataclasses.replace(
            self,
            freeze_epochs=freeze if auto_freeze else self.freeze_epochs,
            backbone_lr_scale=scale if auto_scale else self.backbone_lr_scale,
        )
        if not (self.init_from and new_layers):
            return config, None
        chosen = [
            f"--{name.replace('_', '-')} {getattr(config, name)}"
            for name, auto in (("freeze_epochs", auto_freeze), ("backbone_lr_scale", auto_scale))
            if auto
        ]
        if staged:
            why = f"a new last block and {steps_per_epoch} steps an epoch"
        else:
            why = f"only {steps_per_epoch} steps an epoch (under {AUTO_BATCH_STEPS})"
        frozen = config.freeze_epochs or 0
        alone = (
            f"the new last block learns alone for {frozen} epoch(s)" if frozen else "every layer learns from the start"
        )
        return config, f"fine-tuning with {' '.join(chosen)} (auto: {why}; {alone})"

    @property
    def _auto(self) -> AutoRecipe:
        return AUTO_RECIPES["fine-tune" if self.init_from else "scratch"]

    @property
    def planned_epochs(self) -> int:
        """``epochs``, or what auto means for this run (a resumed run's: the recorded count, see :meth:`resolved`)."""
        return self.epochs if self.epochs is not None else self._auto.epochs

    @property
    def learning_rate(self) -> float:
        """``lr``, or what auto means for this run (see :meth:`resolved`)."""
        return self.lr if self.lr is not None else self._auto.lr

    def check_epoch_bounds(self) -> None:
        """Refuse a warm-up longer than the run, or a freeze that leaves no epoch for the loaded layers."""
        epochs = self.planned_epochs
        if not math.isfinite(self.warmup_epochs) or not 0 <= self.warmup_epochs <= epochs:
            raise ConfigError(
                f"warmup epochs must be a finite number from 0 to --epochs ({epochs}), got {self.warmup_epochs}"
            )
        if self.freeze_epochs is not None and (
            not is_whole_number(self.freeze_epochs, minimum=0) or self.freeze_epochs >= epochs
        ):
            raise ConfigError(
                f"freeze epochs must be a whole number from 0 to --epochs - 1 ({epochs - 1}): the loaded "
                f"layers learn after them; got {self.freeze_epochs!r}"
            )

    def validate(self) -> None:
        """Check every option before any data is read."""
        if not self.data:
            raise ConfigError(
                "--data is required: a folder with one subfolder per class, a CSV/JSONL manifest, "
                "or a folder with the Fashion-MNIST IDX files"
            )
        for name in ("epochs", "batch_size", "input_size"):
            value = getattr(self, name)
            if not (value is None and name != "input_size") and not is_whole_number(value, minimum=1):
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        Optimizer.check(self.optimizer, "optimizer")
        Schedule.check(self.schedule, "schedule")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("momentum must be in [0, 1) and weight decay at least 0")
        if self.epochs is not None or not self.resume:  # a resumed run's auto count is known once it is read
            self.check_epoch_bounds()
        scale = self.backbone_lr_scale
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 <= scale <= 1):
            raise ConfigError(
                f"backbone lr scale must be a number from 0 (backbone frozen) to 1 (one lr for every layer), "
                f"got {scale!r}"
            )
        if self.freeze_epochs and not (self.init_from or self.resume):
            raise ConfigError(
                "--freeze-epochs keeps the layers loaded with --init-from fixed while the new last block learns; "
                "give --init-from, or leave --freeze-epochs out"
            )
        Augment.check(self.augment, "augment")
        Balance.check(self.balance, "balance")
        Normalize.check(self.normalize, "normalize")
        Head.check(self.head, "head")
        if self.resume and (self.init_from or self.head != "auto"):
            given = "--init-from" if self.init_from else "--head"
            raise ConfigError(
                f"--resume continues '{self.resume}' with the weights and head it saved; {given} only starts a new "
                f"run: leave {given} out to resume, or leave --resume out to start again"
            )
        if self.head in (Head.BOOK, Head.WIDE) and "head" not in model_options(self.model):
            raise ConfigError(f"--head {self.head} is for nin; {self.model} has one head layout (leave --head auto)")
        for name in ("workers", "patience"):
            if not is_whole_number(getattr(self, name), minimum=0):
                raise ConfigError(f"{name} must be a whole number from 0, got {getattr(self, name)!r}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ConfigError(f"val fraction must be between 0 and 1 (e.g. 0.1), got {self.val_fraction!r}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        check_limit(self.train_limit, "--train-limit")
        check_limit(self.test_limit, "--test-limit")
        check_seed(self.seed)
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
        if self.amp and _resolve_device_type(self.device) == "cpu":
            check_cpu_bf16()
        check_writable(self.output, "checkpoint")
        if not self.overwrite:
            check_outputs(self.output, plot=self.plot)


# The CPU flags whose instructions compute in bfloat16; without them PyTorch emulates bf16 and mixed
# precision runs slower than FP32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def check_cpu_bf16(flags: frozenset[str] | None = None) -> None:
    """Refuse --amp on a CPU without bfloat16 instructions (emulated bf16 is slower than FP32)."""
    have = cpu_flags() if flags is None else flags
    if not any(flag in have for flag in BF16_FLAGS):
        raise ConfigError(
            f"--amp on CPU trains in bfloat16, but this CPU has none of {', '.join(BF16_FLAGS)}: bf16 would be "
            "emulated and slower than FP32. Drop --amp (or train on a CUDA GPU)"
        )


def _resolve_device_type(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"
