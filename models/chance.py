"""Is a model clearly better than guessing? The chance-level gate of nin-train, nin-eval and nin-export.

A classifier that answers one class for every image scores that class's share of the images: that
share is the chance level here (1/C for balanced classes). Accuracy counts as clearly above it only
when it exceeds it by more than :data:`MARGIN_SIGMAS` binomial standard deviations for that many
images, so a small held-out split needs a larger lead. A model that gives one class nearly every
answer (:data:`COLLAPSE_SHARE`) when that class is not nearly every image is flagged as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from nin_edge.runtime.core.errors import ModelFileError, NinEdgeError

#: How many binomial standard deviations above chance accuracy must be (one-sided, about 97.7 %).
MARGIN_SIGMAS = 2.0
#: A model whose most frequent answer takes this share of the predictions has collapsed onto it...
COLLAPSE_SHARE = 0.95
#: ...unless that class really is at least this share of the images.
COLLAPSE_TRUE_SHARE = 0.8
#: The flag, config field and keyword that lets nin-export package such a model anyway.
OVERRIDE = "allow_chance"


class ChanceLevelError(NinEdgeError):
    """A model is not clearly better than always answering one class, and was not let through."""


@dataclass(frozen=True)
class ChanceCheck:
    """Accuracy against chance on ``images`` labelled images, measured on ``measured_on``."""

    measured_on: str
    accuracy: float
    images: int
    chance: float
    top_class: str
    top_share: float
    top_true_share: float

    @property
    def margin(self) -> float:
        """How far above chance accuracy must be for this many images."""
        return MARGIN_SIGMAS * math.sqrt(self.chance * (1 - self.chance) / max(1, self.images))

    @property
    def near_chance(self) -> bool:
        return self.accuracy <= self.chance + self.margin

    @property
    def collapsed(self) -> bool:
        return self.top_share >= COLLAPSE_SHARE and self.top_true_share < COLLAPSE_TRUE_SHARE

    @property
    def passed(self) -> bool:
        return not (self.near_chance or self.collapsed)

    def line(self) -> str:
        """One line naming the numbers; empty when the check passed."""
        problems = []
        if self.near_chance:
            problems.append(
                f"{self.measured_on} accuracy {self.accuracy:.4f} on {self.images} images is not clearly above "
                f"chance {self.chance:.4f} (it needs more than {self.chance + self.margin:.4f}: "
                f"{MARGIN_SIGMAS:g} binomial standard deviations for {self.images} images)"
                + ("; that many images cannot tell, hold out more" if self.chance + self.margin >= 1 else "")
            )
        if self.collapsed:
            problems.append(
                f"class {self.top_class!r} takes {self.top_share:.0%} of the predictions on the {self.measured_on} "
                f"but is {self.top_true_share:.0%} of its images"
            )
        return "; ".join(problems)

    def to_dict(self) -> dict:
        """Plain numbers and strings (what ``torch.load(weights_only=True)`` and JSON read back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, where: str = "the checkpoint") -> ChanceCheck | None:
        """A recorded check, or None for a checkpoint written before the gate. A record that is there but
        malformed is refused (a :class:`ModelFileError` naming ``where``): the gate must not pass silently."""
        if data is None:
            return None
        fields = cls.__dataclass_fields__
        texts = ("measured_on", "top_class")

        def fits(name: str, value: object) -> bool:
            if name in texts:
                return isinstance(value, str)
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not isinstance(data, Mapping) or any(k not in data or not fits(k, data[k]) for k in fields):
            raise ModelFileError(
                f"{where} holds a malformed chance-level record ({data!r:.200}); expected "
                f"{', '.join(fields)} as nin-train writes them (numbers and text); the file was changed after training"
            )
        return cls(**{k: data[k] for k in fields})


def chance_check(preds: np.ndarray, truth: np.ndarray, labels: Sequence[str], measured_on: str) -> ChanceCheck:
    """Compare predicted with true classes of the same images (``labels`` names the class indices)."""
    n = len(truth)
    counts = np.bincount(np.asarray(truth, dtype=np.int64), minlength=len(labels))
    answers = np.bincount(np.asarray(preds, dtype=np.int64), minlength=len(labels))
    top = int(answers.argmax())
    return ChanceCheck(
        measured_on=measured_on,
        accuracy=float(np.mean(preds == truth)) if n else 0.0,
        images=int(n),
        chance=float(counts.max() / n) if n else 1.0,
        top_class=str(labels[top]) if top < len(labels) else str(top),
        top_share=float(answers[top] / n) if n else 0.0,
        top_true_share=float(counts[top] / n) if n else 0.0,
    )


def refuse_near_chance(check: ChanceCheck | None, what: str, allowed: bool) -> str | None:
    """Raise :class:`ChanceLevelError` when ``check`` failed and ``allowed`` is off; with ``allowed``,
    the note to print instead. ``what`` is what is being refused ("--bundle")."""
    if check is None or check.passed:
        return None
    if allowed:
        return f"--{OVERRIDE.replace('_', '-')}: packaged although {check.line()}"
    raise ChanceLevelError(
        f"{what} refused: {check.line()}; train further (nin-train prints what to try) or pass "
        f"--{OVERRIDE.replace('_', '-')} to package it anyway"
    )
