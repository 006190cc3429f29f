"""Console scripts ``nin-export`` and ``nin-inspect`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def main() -> None:
    """``nin-export``."""
    launch("nin_edge.export.cli")


def inspect() -> None:
    """``nin-inspect``."""
    launch("nin_edge.export.cli", "inspect_main")
