"""Console script ``nin-bench`` (see :mod:`nin_edge.runtime.core.launch`)."""

from nin_edge.runtime.core.launch import launch


def main() -> None:
    """``nin-bench``."""
    launch("nin_edge.benchmarks.cli")
