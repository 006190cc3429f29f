"""Deploy bundles: a folder of verified models with a ``manifest.json`` that programs read.

``nin-export --bundle DIR`` writes the folder; ``Classifier(DIR, precision="int8")`` loads one of
its models after checking every file the manifest lists against its sha256, so a bundle that was
copied incompletely or altered on the way is refused before anything runs. Standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.choices import Precision
from .core.errors import ConfigError, ModelFileError
from .core.files import sha256_file

MANIFEST = "manifest.json"
FORMAT = "nin-edge-bundle"
#: The manifest layout this version writes and the newest it reads.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Bundle:
    """A bundle folder whose files all matched its manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.manifest["models"])

    def model_path(self, precision: str = "fp32", form: str = "onnx") -> Path:
        """The file of the ``precision`` model in ``form`` (``onnx`` or ``ort``)."""
        models = self.manifest["models"]
        if precision not in models:
            raise ConfigError(
                f"bundle '{self.folder}' has no {precision!r} model; it has: {', '.join(models)} "
                f"(expected one of {', '.join(Precision.values())})"
            )
        entry = models[precision]
        if form not in entry:
            raise ConfigError(f"bundle '{self.folder}' has no {form!r} file of its {precision} model")
        return self.folder / entry[form]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's manifest, checked for its format and version."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelFileError(f"'{folder}' is a folder but not a nin-edge bundle: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"bundle manifest '{path}' is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f'\'{path}\' is not a nin-edge bundle manifest (no "format": "{FORMAT}")')
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"bundle manifest '{path}': format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"bundle manifest '{path}' has format version {version}; this nin-edge reads up to {FORMAT_VERSION}: "
            "upgrade nin-edge to load it"
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("models"), dict):
        raise ModelFileError(f'bundle manifest \'{path}\' lacks its "files" or "models" table')
    return manifest


def open_bundle(folder: str | os.PathLike) -> Bundle:
    """Read a bundle and check every file its manifest lists (presence, size, sha256)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        if Path(name).name != name or name == MANIFEST:
            raise ModelFileError(
                f"bundle manifest '{folder / MANIFEST}' lists {name!r}, which is not a plain file name"
            )
        if not path.is_file():
            raise ModelFileError(f"bundle '{folder}' is missing '{name}', which its manifest lists")
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise ModelFileError(
                f"bundle file '{path}' does not match the sha256 in its manifest: it was altered or truncated; "
                "copy the bundle again"
            )
    for precision, entry in manifest["models"].items():
        for form, name in entry.items():
            if form in ("onnx", "ort") and name not in manifest["files"]:
                raise ModelFileError(
                    f"bundle manifest '{folder / MANIFEST}': the {precision} {form} file is not listed"
                )
    return Bundle(folder=folder, manifest=manifest)


def resolve_model(model: str | os.PathLike | bytes, precision: str | None) -> str | os.PathLike | bytes:
    """A bundle folder becomes the path of its ``precision`` model (verified); anything else passes."""
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        return open_bundle(model).model_path(precision or "fp32")
    if precision is not None:
        raise ConfigError(f"precision={precision!r} picks a model of a bundle folder; {model!r} is not a folder")
    return model
