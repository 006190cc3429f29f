"""A file kept with its sha256 recorded beside it: the optimised-graph cache and the bench's export cache.

An entry is used only when its digest matches the recorded one (``<file>.sha256``); a damaged entry
(a kill mid-write, a full disk, a flipped byte) is removed with a warning and rebuilt, never used.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .files import atomic_output, sha256_file


class DigestedFile:
    """``path`` and its recorded sha256; ``damaged`` words the warning (``{path}`` and ``{why}`` filled in)."""

    def __init__(self, path: Path, damaged: str) -> None:
        self.path = path
        self.digest_path = path.with_name(path.name + ".sha256")
        self.damaged = damaged

    def usable(self) -> bool:
        """Whether the entry exists and matches its recorded digest (a damaged one is removed)."""
        if not self.path.is_file():
            return False
        recorded = self.digest_path.read_text().strip() if self.digest_path.is_file() else None
        if recorded is not None and recorded == sha256_file(self.path):
            return True
        self.discard("no recorded digest" if recorded is None else "its sha256 does not match the recorded one")
        return False

    def record_digest(self) -> None:
        """Record the entry's sha256 beside it, atomically (after the entry itself is complete)."""
        with atomic_output(self.digest_path) as tmp:
            tmp.write_text(sha256_file(self.path) + "\n")

    def discard(self, why: str) -> None:
        """Warn and remove the entry and its digest."""
        warnings.warn(self.damaged.format(path=self.path, why=why), RuntimeWarning, stacklevel=3)
        self.path.unlink(missing_ok=True)
        self.digest_path.unlink(missing_ok=True)
