"""Signed bundles: a bundle folder signed and checked with OpenSSF's model-signing library.

``sign_bundle(DIR, KEY)`` writes ``DIR/model.sig``, a Sigstore bundle (model-signing's format, so
``model_signing verify key`` checks it too) that signs the sha256 of every other file in the
folder, ``manifest.json`` included: the labels, the preprocessing and every model file's digest
are covered. It signs offline with an elliptic-curve private key (PEM): no network, no
transparency log. ``verify_bundle(DIR, PUB)`` refuses a folder that is unsigned, signed by another
key, or whose files differ from what was signed (changed, added or removed), naming the file.

Both sides hash the folder with :func:`_hashing`, so they cannot disagree on what is covered. The
library is the optional ``sign`` extra; the runtime imports it only when a key is given. Both
functions need a folder whose files match its manifest (:func:`~nin_edge.runtime.bundle.open_bundle`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .bundle import SIGNATURE, is_signature, open_bundle
from .core.errors import ConfigError, ModelFileError

SIGN_EXTRA = "pip install 'nin-edge[sign]'"
#: The signature's media type: how a ``model.sig`` that nin-sign may replace is recognised.


class SignatureError(ModelFileError):
    """A bundle is unsigned, signed by another key, or differs from what was signed."""


def _library() -> Any:
    try:
        import model_signing
    except ImportError:
        raise ConfigError(f"signed bundles need OpenSSF's model-signing library: {SIGN_EXTRA}") from None
    return model_signing


def _hashing(ms: Any) -> Any:
    """What is signed: every file of the folder but the signature, by sha256; a symbolic link is an
    error (model-signing's default), so nothing outside the folder is ever covered or read."""
    return ms.hashing.Config().use_file_serialization(hashing_algorithm="sha256").set_ignored_paths(paths=[SIGNATURE])


def _check_key(key: str | os.PathLike, what: str) -> Path:
    path = Path(key)
    if not path.is_file():
        raise ConfigError(f"{what} '{key}' is not a file; give an elliptic-curve key in PEM form")
    return path


def _check_folder(folder: str | os.PathLike, flag: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{flag} checks a signed bundle folder; '{folder}' is not a folder (sign bundles, not files)")
    return path


def _signer(key: str | os.PathLike, password: str | None) -> tuple[Any, Any]:
    """model-signing and its signing configuration with the private ``key`` loaded."""
    key_path = _check_key(key, "signing key")
    ms = _library()
    try:
        return ms, ms.signing.Config().use_elliptic_key_signer(private_key=key_path, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing key '{key}' is not an elliptic-curve private key in PEM form: {exc}") from None


def check_signing_key(key: str | os.PathLike, password: str | None = None) -> None:
    """Refuse, before any work, a signing ``key`` that is missing or unreadable, or a missing library."""
    _signer(key, password)


def sign_bundle(folder: str | os.PathLike, key: str | os.PathLike, password: str | None = None) -> Path:
    """Sign the bundle ``folder`` with the PEM private ``key``; returns the signature's path.

    An existing ``model.sig`` is replaced only when it is a signature (a Sigstore bundle); it is
    written beside its final name and renamed into place, so a reader never sees half of one.
    """
    path = _check_folder(folder, "signing")
    ms, config = _signer(key, password)
    open_bundle(path)  # sign only a bundle whose files match its manifest
    signature = path / SIGNATURE
    if signature.is_symlink() or (signature.exists() and not is_signature(signature)):
        raise ConfigError(
            f"'{signature}' exists and is not a model-signing signature: not replacing it; move it away and sign again"
        )
    temporary = path / f".{SIGNATURE}.{os.getpid()}.tmp"
    try:
        # Hashed before the temporary file exists (model-signing hashes, then writes).
        config.set_hashing_config(_hashing(ms)).sign(path, temporary)
        os.replace(temporary, signature)
    except ValueError as exc:  # model-signing's refusal of a symbolic link (it names the path)
        raise ConfigError(f"cannot sign bundle '{folder}': {' '.join(str(exc).split())}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return signature


def verify_bundle(folder: str | os.PathLike, key: str | os.PathLike) -> None:
    """Raise :class:`SignatureError` unless every file of ``folder`` is as the holder of the private
    key matching the PEM public ``key`` signed it (no file changed, added or removed)."""
    path, key_path = _check_folder(folder, "verify_key"), _check_key(key, "verify key")
    signature = path / SIGNATURE
    if not signature.is_file() or signature.is_symlink():
        raise SignatureError(
            f"bundle '{folder}' is not signed (it has no {SIGNATURE}); sign it with `nin-sign sign` or "
            "`nin-export --bundle DIR --sign-key KEY`, or load it without a verify key"
        )
    ms = _library()
    try:
        config = ms.verifying.Config().use_elliptic_key_verifier(public_key=key_path)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"verify key '{key}' is not an elliptic-curve public key in PEM form: {exc}") from None
    try:
        config.set_hashing_config(_hashing(ms)).verify(path, signature)
    except Exception as exc:  # noqa: BLE001  model-signing raises ValueError and the crypto and parser errors under it
        raise SignatureError(
            f"bundle '{folder}' {_why(str(exc))}; do not use it: copy it again from its source"
        ) from None


def _why(message: str) -> str:
    """model-signing's reason as one short clause that names the first file that differs."""
    # The reason is the repr of a list of lines: a quote inside one is escaped when a digest's bytes
    # hold a double quote, so the file names are matched with the escapes taken out.
    message = message.replace("\\'", "'")
    if found := re.search(r"Hash mismatch for '([^']+)'", message):
        return f"fails its signature: '{found[1]}' changed after signing"
    if found := re.search(r"Extra files found in model '[^']*': ([^'\]\"]+)", message):
        return f"fails its signature: '{found[1].split(', ')[0]}' was added after signing"
    if found := re.search(r"Missing files in model '[^']*': ([^'\]\"]+)", message):
        return f"fails its signature: '{found[1].split(', ')[0]}' was removed after signing"
    if "symbolic link" in message.lower() or "symlink" in message.lower():
        return "holds a symbolic link, which a signed bundle may not"
    first = " ".join(message.split())[:200] or "no reason given"
    return f"is not signed by this key or its {SIGNATURE} is damaged ({first})"
