"""The deploy-target interface.

A target turns the verified in-memory model (:class:`~nin_edge.export.pipeline.VerifiedModel`:
the serialised ONNX bytes, its card as recorded in the model's metadata, the resolved export
options and the checks' summary) into files at a destination ``out``:

- ``name``: the registry key (``onnx``, ``triton``, ``bundle``; the CLI names it);
- ``options_type``: the frozen dataclass of the target's own options (its flags share the names);
- ``check(options, out)``: refuse bad options or an unusable destination before any work starts;
- ``write(model, options, out) -> Report``: write the files aside and swap them in, so that a
  failure leaves an existing destination as it was (single files through
  :func:`~nin_edge.runtime.core.files.atomic_output`, folders built beside ``out`` and renamed).

A target never re-derives a model fact (input size, preprocessing, labels): it reads them from
``model.metadata``, the card the model carries. A target that ships several precisions asks
``model.at_precision(p)`` for each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nin_edge.runtime.core.report import Report

if TYPE_CHECKING:
    from ..pipeline import VerifiedModel

#: A target's options: a frozen dataclass, one field per option.
TargetOptions = Any


@runtime_checkable
class Target(Protocol):
    """A deploy target; see the module docstring for the contract."""

    name: str
    options_type: type

    def check(self, options: TargetOptions, out: Path) -> None:
        """Refuse bad ``options`` or an unusable ``out`` before any export work starts."""
        ...

    def write(self, model: VerifiedModel, options: TargetOptions, out: Path) -> Report:
        """Write ``model`` to ``out`` (aside, then swapped in) and say what was written."""
        ...
