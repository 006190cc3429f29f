"""Console scripts of the runtime: nin-infer, nin-serve, nin-sign (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def infer() -> None:
    """``nin-infer``."""
    launch("nin_edge.runtime.cli.infer")


def serve() -> None:
    """``nin-serve``."""
    launch("nin_edge.runtime.cli.serve")


def sign() -> None:
    """``nin-sign``."""
    launch("nin_edge.runtime.cli.sign")
