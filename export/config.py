"""The export's options: :class:`ExportConfig` (each field a ``nin-export`` flag) and :class:`Deploy`,
one more deploy target of an export. The pipeline and every target read them from here."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from nin_edge.models import model_card
from nin_edge.models.chance import ChanceCheck, refuse_near_chance
from nin_edge.models.checkpoint import TrainedCard, checkpoint_card, read_checkpoint
from nin_edge.models.limits import check_input_budget, check_input_size, check_seed
from nin_edge.runtime.core.choices import Precision
from nin_edge.runtime.core.errors import ConfigError
from nin_edge.runtime.core.numbers import is_whole_number
from nin_edge.runtime.providers import parse_providers

from .precision import (
    MIN_INT8_OPSET,
    CalibrationMethod,
    Int8Recipe,
    choose_recipe,
    qat_recipe,
    recipe_for_weights,
)
from .steps import (
    check_opset,
)
from .targets import Target, TargetOptions, get_target
from .targets.onnx import OnnxOptions
from .targets.triton import TritonOptions


@dataclass(frozen=True)
class Deploy:
    """One more deploy target of an export: a registered target's name (``export/targets/``), the
    destination it writes (``out``) and its options (None: the target's defaults)."""

    target: str
    out: str
    options: Any = None


#: The deploy targets that package a model for users, and so refuse one whose training ended near chance.
PACKAGING_TARGETS = ("bundle", "web")

#: The agreement gate where no other is given: 99% of top-1 predictions as FP32's.
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class ExportConfig:
    """Options of an export; each field is also the ``nin-export`` flag of the same name, except
    ``deploy``: more deploy targets, for library callers (a target's own flag wires it into the CLI)."""

    model: str = "nin"
    opset: int = 17
    weights: str | None = None
    random_init: bool = False
    output: str | None = None
    input_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    simplify: bool = True
    check_batch_sizes: tuple[int, ...] = (1, 2, 7)
    atol: float = 1e-4
    seed: int = 0
    precision: str = "fp32"
    calibration_data: str | None = None
    calibration_size: int = 300
    calibration_method: str = "minmax"
    int8_target: str = "auto"
    int8_types: str = "auto"
    int8_reduce_range: str = "auto"
    int8_fp32_layers: str = "auto"
    eval_data: str | None = None
    eval_size: int = 1000
    #: None: 0.99, unless ``max_accuracy_drop`` makes the accuracy drop the gate (see :attr:`agreement_gate`).
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None
    provider: str = "cpu"
    #: Let --bundle and --web package a model whose training ended near chance (see :meth:`check_chance`).
    allow_chance: bool = False
    triton_repo: str | None = None
    triton: TritonOptions = field(default_factory=TritonOptions)
    deploy: tuple[Deploy, ...] = ()

    @property
    def uses_pretrained(self) -> bool:
        return (
            not self.weights
            and not self.random_init
            and model_card(self.model).weights_fit(self.in_channels, self.num_classes)
        )

    def trained_card(self) -> TrainedCard | None:
        """The card a nin-train checkpoint given as ``weights`` carries (classes, channels, size,
        preprocessing), or None for bare weights, the shipped weights and random init."""
        if not self.weights:
            return None
        return checkpoint_card(read_checkpoint(self.weights), self.weights)

    def split_record(self) -> dict[str, Any]:
        """How the nin-train checkpoint given as ``weights`` split its data (``val_fraction``, ``seed``),
        so that calibration and evaluation on that data use the same held-out images; else empty."""
        if not self.weights:
            return {}
        record = read_checkpoint(self.weights).get("data")
        return record if isinstance(record, dict) else {}

    def check_chance(self, what: str) -> str | None:
        """Refuse (:class:`ChanceLevelError`) to package a nin-train checkpoint whose held-out accuracy
        at the end of training was not clearly above chance, unless ``allow_chance``; returns the note
        to record when it was let through. Checkpoints without the record (older ones, bare weights,
        the shipped weights) pass."""
        if not self.weights:
            return None
        check = ChanceCheck.from_dict(read_checkpoint(self.weights).get("chance"), f"checkpoint '{self.weights}'")
        return refuse_near_chance(check, what, self.allow_chance)

    def card(self) -> TrainedCard:
        """What the exported model's metadata says: the trained checkpoint's card, else the registered
        model's labels and preprocessing for the resolved channels, classes and size."""
        config = self.resolved()
        trained = config.trained_card()
        if trained is not None:
            return replace(trained, input_size=config.size)
        registered = model_card(config.model)
        return TrainedCard(
            labels=registered.labels_for(config.num_classes or registered.num_classes),
            in_channels=config.in_channels or registered.in_channels,
            input_size=config.size,
            preprocessing=registered.preprocessing,
            model_options=dict(registered.model_options),
        )

    def resolved(self) -> ExportConfig:
        """This config with channels, classes and ``input_size`` filled in: as given, else from a
        nin-train checkpoint's card, else the registered model's (input size: the size the shipped
        weights were trained at when they are used, else 224, the book's size)."""
        registered = model_card(self.model)
        trained = self.trained_card()
        filled = {
            "in_channels": trained.in_channels if trained else registered.in_channels,
            "num_classes": len(trained.labels) if trained else registered.num_classes,
        }
        for key, value in filled.items():
            given = getattr(self, key)
            if trained is not None and given is not None and given != value:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(
                    f"{flag} {given} contradicts '{self.weights}', trained with {key.replace('_', ' ')} {value}; "
                    f"leave {flag} out (the checkpoint says it)"
                )
        config = replace(
            self,
            in_channels=filled["in_channels"] if self.in_channels is None else self.in_channels,
            num_classes=filled["num_classes"] if self.num_classes is None else self.num_classes,
        )
        if config.input_size is None:
            size = trained.input_size if trained else registered.export_size(config.uses_pretrained)
            config = replace(config, input_size=size)
        return config

    @property
    def size(self) -> int:
        """The input size the model is exported at (see :meth:`resolved`)."""
        if self.input_size is not None:
            return self.input_size
        return cast(int, self.resolved().input_size)  # resolved() always fills it

    @property
    def agreement_gate(self) -> float | None:
        """The top-1 agreement with FP32 a reduced precision must reach: ``min_agreement`` when given;
        else 0.99, unless ``max_accuracy_drop`` makes the accuracy drop (labels at hand) the gate."""
        if self.min_agreement is not None:
            return self.min_agreement
        return None if self.max_accuracy_drop is not None else DEFAULT_MIN_AGREEMENT

    def int8_recipe(self) -> Int8Recipe:
        """The INT8 recipe these options choose (``int8_target`` auto: this machine's CPU class); for a
        nin-qat checkpoint, the recipe it was fine-tuned for unless an ``int8_*`` option is given."""
        chosen = choose_recipe(
            self.int8_target,
            types=self.int8_types,
            reduce_range=self.int8_reduce_range,
            fp32_layers=self.int8_fp32_layers,
        )
        trained = qat_recipe(read_checkpoint(self.weights), self.weights) if self.weights else None
        given = any(
            value != "auto"
            for value in (self.int8_target, self.int8_types, self.int8_reduce_range, self.int8_fp32_layers)
        )
        return recipe_for_weights(chosen, trained, options_given=given)

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(f"{self.model}.onnx")

    def validate(self) -> None:
        """Check every option that can be checked before any work starts."""
        check_opset(self.opset)
        parse_providers(self.provider)
        if not self.check_batch_sizes or any(not is_whole_number(n, minimum=1) for n in self.check_batch_sizes):
            raise ConfigError(
                f"check batch sizes must be positive whole numbers, got {list(self.check_batch_sizes)}; e.g. 1,2,7"
            )
        if not isinstance(self.atol, (int, float)) or not math.isfinite(self.atol) or self.atol <= 0:
            raise ConfigError(f"atol must be a positive number, got {self.atol!r}")
        check_seed(self.seed)
        if self.weights and self.random_init:
            raise ConfigError("--weights and --random-init exclude each other; give one")
        resolved = self.resolved()
        channels = resolved.in_channels
        if isinstance(channels, int) and channels > 0:  # else the model builder says what is wrong
            size = resolved.size
            check_input_size(size, channels)  # the exporter traces a batch of 2
            for n in self.check_batch_sizes:
                check_input_budget(n, channels, size, "--check-batch-sizes")
        Precision.check(self.precision, "precision")
        if self.precision == "int8":
            if not self.calibration_data:
                raise ConfigError(
                    "INT8 needs calibration images: --calibration-data DIR (Fashion-MNIST IDX files, images or .npy), "
                    "or --calibration-data synthetic to accept uniform noise (recorded in the model)"
                )
            if self.opset < MIN_INT8_OPSET:
                raise ConfigError(
                    f"INT8 with per-channel weights needs opset {MIN_INT8_OPSET} or newer, got {self.opset}"
                )
            CalibrationMethod.check(self.calibration_method, "calibration method")
            self.int8_recipe()
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"min agreement must be in [0, 1], got {self.min_agreement!r}")
        if self.max_accuracy_drop is not None:
            if not (isinstance(self.max_accuracy_drop, (int, float)) and 0 <= self.max_accuracy_drop <= 100):
                raise ConfigError(
                    f"max accuracy drop is in points of accuracy, 0 to 100 (e.g. 0.5), got {self.max_accuracy_drop!r}"
                )
            if not self.eval_data:
                raise ConfigError(
                    "--max-accuracy-drop needs labelled images to measure accuracy on: give --eval-data "
                    "(class folders, a manifest or a Fashion-MNIST IDX folder), or gate on agreement with "
                    "--min-agreement"
                )
        for target, options, out in self.deploy_targets():
            target.check(options, out)
        if any(extra.target in PACKAGING_TARGETS for extra in self.deploy):
            self.check_chance("--bundle/--web")  # before the export's work, not after it
        onnx_file = self.output_path.absolute()
        for extra in self.deploy:  # folders replaced whole: the ONNX file in one would make it not theirs
            if Path(os.path.abspath(extra.out)) in onnx_file.parents:
                raise ConfigError(
                    f"the ONNX file '{self.output_path}' would be written inside the {extra.target} folder "
                    f"'{extra.out}', which nin-export then could not replace; give the {extra.target} folder "
                    "another path"
                )

    def deploy_targets(self) -> list[tuple[Target, TargetOptions, Path]]:
        """The targets this export writes, with their options and destinations: the ONNX file, and
        the Triton repository when ``triton_repo`` is given."""
        chosen: list[tuple[Target, TargetOptions, Path]] = [(get_target("onnx"), OnnxOptions(), self.output_path)]
        if self.triton_repo:
            chosen.append((get_target("triton"), self.triton, Path(self.triton_repo)))
        for extra in self.deploy:
            target = get_target(extra.target)
            options = target.options_type() if extra.options is None else extra.options
            if not isinstance(options, target.options_type):
                raise ConfigError(
                    f"deploy target {extra.target!r} takes {target.options_type.__name__}, got {type(options).__name__}"
                )
            chosen.append((target, options, Path(extra.out)))
        return chosen
