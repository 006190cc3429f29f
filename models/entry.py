"""Console scripts ``nin-train``, ``nin-eval`` and ``nin-prune`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def train() -> None:
    """``nin-train``."""
    launch("nin_edge.models.cli", "train_main")


def evaluate() -> None:
    """``nin-eval``."""
    launch("nin_edge.models.cli", "eval_main")


def prune() -> None:
    """``nin-prune``."""
    launch("nin_edge.models.cli", "prune_main")
