"""Console-script entry points that import their command only once Ctrl-C can be caught."""

from __future__ import annotations

import importlib
import sys

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def launch(module: str, function: str = "main") -> None:
    """Import ``module`` (torch, onnxruntime: seconds) and run its click command ``function``.

    Ctrl-C while the imports load ends in one ``error:`` line and exit 130, never a traceback.
    """
    try:
        command = getattr(importlib.import_module(module), function)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    command()
