"""Deploy targets: what ``nin-export`` writes a verified model as.

Every target is one module of this package that defines ``TARGET``, an object following the
:class:`~nin_edge.export.targets.base.Target` protocol: the verified in-memory model and its card
(:class:`~nin_edge.export.verified.VerifiedModel`) in, files out, written aside and swapped in.
The registry finds the modules itself, so adding a target is adding one module (and re-running
the editable install, which links new modules). First implementations: ``onnx`` (one file),
``triton`` (a Triton model repository) and ``bundle`` (a deploy folder with a manifest).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from nin_edge.runtime.core.errors import ConfigError

from .base import Target, TargetOptions

__all__ = ["Target", "TargetOptions", "get_target", "targets"]


@functools.cache
def targets() -> dict[str, Target]:
    """Every target of this package by name (modules are imported on first use, not with the package:
    the bundle target pulls in the whole export pipeline)."""
    found: dict[str, Target] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        target = getattr(module, "TARGET", None)
        if not isinstance(target, Target):
            raise TypeError(f"deploy-target module {module.__name__} defines no TARGET following the Target protocol")
        found[target.name] = target
    return dict(sorted(found.items()))


def get_target(name: str) -> Target:
    """The target called ``name``, or a :class:`ConfigError` listing the known ones."""
    known = targets()
    if name not in known:
        raise ConfigError(f"deploy target {name!r} is not known; expected one of {', '.join(known)}")
    return known[name]
