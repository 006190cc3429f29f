"""Console scripts ``nin-export``, ``nin-inspect`` and ``nin-qat`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def main() -> None:
    """``nin-export``."""
    launch("nin_edge.export.cli")


def inspect() -> None:
    """``nin-inspect``."""
    launch("nin_edge.export.cli", "inspect_main")


def qat() -> None:
    """``nin-qat``."""
    launch("nin_edge.export.cli", "qat_main")
