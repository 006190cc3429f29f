"""Console-script entry points that import their command only once Ctrl-C can be caught."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
# A runtime-only install has every console script but not what the toolkit's commands import.
_EXTRA_OF = {
    "torch": "toolkit",
    "onnx": "toolkit",
    "onnxsim": "toolkit",
    "onnxruntime": "cpu",
    "PIL": "images",
    "matplotlib": "plot",
    "pytriton": "serve",
    "tritonclient": "serve",
}


def launch(module: str, function: str = "main") -> None:
    """Import ``module`` (torch, onnxruntime: seconds) and run its click command ``function``.

    Ctrl-C while the imports load ends in one line and exit 130, never a traceback; a missing
    third-party package is one ``error:`` line naming the extra that brings it.
    """
    # A KeyboardInterrupt raised inside a C++ extension's import can be swallowed (the command then
    # runs on) or end in std::terminate (torch's pybind11, measured: exit -6 for Ctrl-C 0.5 s after
    # start). Nothing is written while modules load, so Ctrl-C there leaves at once instead.
    # A shell's background job starts with SIGINT ignored: that choice is kept.
    loading = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if loading:
        signal.signal(signal.SIGINT, _leave_while_loading)
    try:
        command = getattr(importlib.import_module(module), function)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in _EXTRA_OF:
            raise
        script = Path(sys.argv[0]).name
        extra = _EXTRA_OF[top]
        hint = (
            "pip install 'nin-edge[cpu]' (or [gpu] with an NVIDIA GPU)"
            if extra == "cpu"
            else (f"pip install 'nin-edge[{extra}]'")
        )
        sys.stderr.write(f"error: {script} needs {top}, which this installation lacks: {hint}\n")
        raise SystemExit(1) from None
    finally:
        if loading:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    command()


def _leave_while_loading(_signum: int, _frame: object) -> None:
    """SIGINT while the command's modules load: one line, exit 130, no exception through C++ code."""
    os.write(2, b"interrupted\n")
    os._exit(INTERRUPTED)
