"""The deploy-target interface.

A target turns the verified in-memory model (:class:`~nin_edge.export.verified.VerifiedModel`:
the serialised ONNX bytes, its card as recorded in the model's metadata, the resolved export
options and the checks' summary) into files at a destination ``out``:

- ``name``: the registry key (``onnx``, ``triton``, ``bundle``; the CLI names it);
- ``options_type``: the frozen dataclass of the target's own options (its flags share the names);
- ``check(options, out)``: refuse bad options or an unusable destination before any work starts;
- ``write(model, options, out) -> Report``: write the files aside and swap them in, so that a
  failure leaves an existing destination as it was (single files through
  :func:`~nin_edge.runtime.core.files.atomic_output`, folders built beside ``out`` and renamed);
- ``cli_options``: the target's own ``nin-export`` flags (``click.Option`` objects; ``nin-export``
  adds every registered target's, so a new target's flags need no edit of ``export/cli.py``);
- ``from_cli(config, values) -> ExportConfig``: the export with the target's parsed flags applied
  (``values``: its options' values by parameter name); usually one more
  :class:`~nin_edge.export.config.Deploy` entry, unchanged when its main flag is not given.
  ``nin-export`` calls the targets in name order, each on the config the previous ones returned.

A target never re-derives a model fact (input size, preprocessing, labels): it reads them from
``model.metadata``, the card the model carries. A target that ships several precisions asks
``nin_edge.export.pipeline.verify_at_precision(model, p, ...)`` for each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import click
from nin_edge.runtime.core.report import Report

if TYPE_CHECKING:
    from ..config import ExportConfig
    from ..verified import VerifiedModel

#: A target's options: a frozen dataclass, one field per option.
TargetOptions = Any


@runtime_checkable
class Target(Protocol):
    """A deploy target; see the module docstring for the contract."""

    name: str
    options_type: type
    cli_options: tuple[click.Option, ...]

    def check(self, options: TargetOptions, out: Path) -> None:
        """Refuse bad ``options`` or an unusable ``out`` before any export work starts."""
        ...

    def write(self, model: VerifiedModel, options: TargetOptions, out: Path) -> Report:
        """Write ``model`` to ``out`` (aside, then swapped in) and say what was written."""
        ...

    def from_cli(self, config: ExportConfig, values: dict[str, Any]) -> ExportConfig:
        """``config`` with this target's parsed ``nin-export`` flags (``values``) applied."""
        ...
