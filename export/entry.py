"""Console script ``nin-export`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def main() -> None:
    """``nin-export``."""
    launch("nin_edge.export.cli")
