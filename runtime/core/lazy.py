"""Packages whose public names are imported on first use (PEP 562).

A command-line entry point can catch Ctrl-C only once its own code runs, and that happens after
its package's ``__init__`` has been imported: if the ``__init__`` pulled in torch or onnxruntime,
an interrupt during those seconds would end in a traceback. Lazy packages also let
``import nin_edge.models`` cost nothing until a name is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, Iterable[str]], install_hints: dict[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` for ``package``; ``exports`` maps a submodule to the names it gives.

    ``install_hints`` maps a third-party module to the message that says how to install it.
    """
    hints = install_hints or {}
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module, package), name)
        except ModuleNotFoundError as exc:
            if exc.name in hints:
                raise ImportError(hints[exc.name]) from exc
            raise
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
