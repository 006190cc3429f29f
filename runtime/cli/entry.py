"""Console scripts of the runtime: ``nin-infer`` and ``nin-serve`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def infer() -> None:
    """``nin-infer``."""
    launch("nin_edge.runtime.cli.infer")


def serve() -> None:
    """``nin-serve``."""
    launch("nin_edge.runtime.cli.serve")
