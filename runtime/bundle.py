"""Deploy bundles: a folder of verified models with a ``manifest.json`` that programs read.

``nin-export --bundle DIR`` writes the folder; ``Classifier(DIR, precision="int8")`` loads one of
its models after checking every file the manifest lists against its sha256, so a bundle that was
copied incompletely or altered on the way is refused before anything runs. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.choices import Precision
from .core.errors import ConfigError, ModelFileError
from .core.files import FolderRules, sha256_file
from .int8 import cpu_class, saturates

MANIFEST = "manifest.json"
#: A signed bundle's signature (see ``signing.py``): it signs the manifest, so the manifest cannot list it.
SIGNATURE = "model.sig"
#: The media type of a signature file: a Sigstore bundle, as OpenSSF's model-signing writes it.
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle"


def is_signature(path: Path) -> bool:
    """Whether ``path`` holds a signature as ``nin-sign`` writes it (and not a user's own file of that name)."""
    try:
        return str(json.loads(path.read_text()).get("mediaType", "")).startswith(SIGSTORE_BUNDLE)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


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
        """The file of the ``precision`` model in ``form`` (``onnx`` or ``ort``); ``int8`` in a bundle
        with one INT8 model per machine class takes the one for this CPU (see :meth:`int8_key`)."""
        models = self.manifest["models"]
        if precision == "int8" and precision not in models:
            precision = self.int8_key() or precision
        if precision not in models:
            raise ConfigError(
                f"bundle '{self.folder}' has no {precision!r} model; it has: {', '.join(models)} "
                f"(expected one of {', '.join(Precision.values())})"
            )
        entry = models[precision]
        if form not in entry:
            raise ConfigError(f"bundle '{self.folder}' has no {form!r} file of its {precision} model")
        return self.folder / entry[form]

    def int8_key(self, cpu: str | None = None) -> str | None:
        """Which of the bundle's per-class INT8 models (``int8.<target>``) suits the ``cpu`` class
        (default: this machine's): its own, else one that does not saturate there, with a warning."""
        keys = [k for k in self.manifest["models"] if k.startswith("int8.")]
        if not keys:
            return None
        cpu = cpu or cpu_class()
        if f"int8.{cpu}" in keys:
            return f"int8.{cpu}"
        models = self.manifest["models"]
        safe = [k for k in keys if not _saturates(models[k].get("int8_recipe"), cpu)]
        chosen = (safe or keys)[0]
        warnings.warn(
            f"bundle '{self.folder}' has INT8 models for {', '.join(k.removeprefix('int8.') for k in keys)}, none for "
            f"this CPU's class {cpu}; using {models[chosen].get('onnx', chosen)}",
            RuntimeWarning,
            stacklevel=4,
        )
        return chosen


def _saturates(recipe: object, cpu: str) -> bool:
    if not isinstance(recipe, dict):
        return True  # unknown: not preferred
    return saturates(str(recipe.get("types", "")), bool(recipe.get("reduce_range")), cpu)


#: A manifest is a few KB; one far larger is not ours and is refused before it is read.
MAX_MANIFEST_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's manifest, checked for its format, version and the types of what programs read."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelFileError(f"'{folder}' is a folder but not a nin-edge bundle: it has no {MANIFEST}")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ModelFileError(
            f"bundle manifest '{path}' is {size:,} bytes; a nin-edge manifest is a few KB (at most "
            f"{MAX_MANIFEST_BYTES:,} bytes read): it is not one"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"bundle manifest '{path}' is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f'\'{path}\' is not a nin-edge bundle manifest (no "format": "{FORMAT}")')
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"bundle manifest '{path}': format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"bundle manifest '{path}' has format version {version}; this nin-edge reads up to {FORMAT_VERSION}: "
            "upgrade nin-edge to load it"
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("models"), dict):
        raise ModelFileError(f'bundle manifest \'{path}\' lacks its "files" or "models" table')
    _check_schema(manifest, path)
    return manifest


def _check_schema(manifest: dict[str, Any], path: Path) -> None:
    """Refuse entries of the wrong JSON type, naming the first one, before anything uses them."""

    def bad(where: str, expected: str, got: object) -> ModelFileError:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        return ModelFileError(
            f"bundle manifest '{path}': {where} must be {expected}, got {shown}; the manifest is damaged or was "
            "not written by nin-edge: copy the bundle again"
        )

    for name, entry in manifest["files"].items():
        if Path(name).name != name or name in (MANIFEST, SIGNATURE, ".", ".."):
            raise bad(f"the files entry {name!r}", "a plain file name", name)
        if not isinstance(entry, dict):
            raise bad(f'files["{name}"]', 'an object {"sha256": ..., "bytes": ...}', entry)
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f'files["{name}"].sha256', "64 lowercase hex digits", digest)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f'files["{name}"].bytes', "a whole number >= 0", size)
    for precision, entry in manifest["models"].items():
        if not isinstance(entry, dict):
            raise bad(f'models["{precision}"]', 'an object {"onnx": FILE, "ort": FILE, ...}', entry)
        for form in ("onnx", "ort"):
            if form in entry and not isinstance(entry[form], str):
                raise bad(f'models["{precision}"].{form}', "a file name", entry[form])
            if form in entry and entry[form] not in manifest["files"]:
                raise ModelFileError(f"bundle manifest '{path}': the {precision} {form} file is not listed")
    labels = manifest.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise bad("labels", "a list of strings", labels)


def bundle_files(folder: Path) -> dict[str, str]:
    """What nin-edge wrote into a bundle folder, as its manifest lists it: file name -> sha256."""
    return {name: entry["sha256"] for name, entry in read_manifest(folder)["files"].items()}


#: A bundle folder may be replaced only when it holds nothing but what its manifest lists.
BUNDLE_FOLDER = FolderRules(record=MANIFEST, listed=bundle_files, what="bundle", derived={SIGNATURE: is_signature})


def open_bundle(folder: str | os.PathLike) -> Bundle:
    """Read a bundle and check every file its manifest lists (presence, size, sha256)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"bundle '{folder}' is missing '{name}', which its manifest lists")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ModelFileError(
                f"bundle file '{path}' does not match the sha256 in its manifest: it was altered or truncated; "
                "copy the bundle again"
            )
    return Bundle(folder=folder, manifest=manifest)


def resolve_model(model: str | os.PathLike | bytes, precision: str | None) -> str | os.PathLike | bytes:
    """A bundle folder becomes the path of its ``precision`` model (verified); anything else passes."""
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        return open_bundle(model).model_path(precision or "fp32")
    if precision is not None:
        raise ConfigError(f"precision={precision!r} picks a model of a bundle folder; {model!r} is not a folder")
    return model
