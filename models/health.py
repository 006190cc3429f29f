"""Is a model's output alive? nin-train's check at step 0 and after each epoch.

A ReLU whose input is negative for every image passes no gradient. When that happens in the last
block, every image gets the same scores and training can never recover; when it happens to one
output unit, that class is never predicted. Both are seen on the logits alone, over a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nin_edge.runtime.core.errors import NinEdgeError

#: Scores that differ by less than this (relative to their size) across a batch count as constant.
CONSTANT_TOLERANCE = 1e-6


class DeadHeadError(NinEdgeError):
    """The model gives every image the same scores, so training cannot learn; nothing more was trained."""


def constant_outputs(logits: torch.Tensor) -> torch.Tensor:
    """One flag per class: its score is the same for every image of the batch (``logits``: images x classes)."""
    logits = logits.detach().float()
    spread = logits.max(0).values - logits.min(0).values
    return spread <= CONSTANT_TOLERANCE * (1 + logits.abs().max())


def check_alive(logits: torch.Tensor, labels: Sequence[str], when: str, hint: str) -> str | None:
    """Raise :class:`DeadHeadError` when no score varies across the images of ``logits``; otherwise the
    note naming the classes whose score never varies (they can never be predicted), or None.

    ``when`` says which check it is ("at step 0 (before training)"); ``hint`` what to try.
    """
    if len(logits) < 2:
        return None  # one image cannot show a spread
    dead = constant_outputs(logits)
    if bool(dead.all()):
        raise DeadHeadError(
            f"{when}, the model gives the same scores to all {len(logits)} images: a layer of ReLUs (usually in the "
            f"last block) outputs zero for every image, so no gradient reaches the layers before it and training "
            f"stays at chance; {hint}"
        )
    if bool(dead.any()):
        names = [labels[i] for i in range(len(labels)) if bool(dead[i])]
        return (
            f"{when}, {len(names)} of {len(labels)} classes get the same score for every image and cannot be "
            f"predicted ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): their output units are dead; "
            f"{hint}"
        )
    return None
