"""This machine's CPU as ``/proc/cpuinfo`` describes it: the one reader of that file.

Read once per process: every ``Classifier(provider="auto")`` consults the flags, and the file is
large on machines with many cores. Where it cannot be read (not Linux), the flags are empty and the
model name is None.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpuinfo() -> str:
    """The text of ``/proc/cpuinfo``, or "" where it cannot be read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def cpu_flags(text: str | None = None) -> frozenset[str]:
    """The CPU feature flags (of ``text``, a cpuinfo, when given; else of this machine)."""
    flags = _field(cpuinfo() if text is None else text, "flags")
    return frozenset(flags.split()) if flags else frozenset()


def cpu_model(text: str | None = None) -> str | None:
    """The CPU's model name (``AMD EPYC ...``), or None where cpuinfo does not say."""
    return _field(cpuinfo() if text is None else text, "model name")
