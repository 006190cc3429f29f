"""Writing files so that a failure never leaves a partial file or clobbers an existing one.

Outputs are written to a temporary file beside the target and renamed over it only when the
work succeeded. The temporary names follow one pattern, ``.NAME.nin-edge-PID-XXXX.tmp``, so a
file left by a process that was killed (``kill -9``, power loss) is recognisable; the next
successful write of the same output removes those whose process is gone.

What is refused: an existing output that is not a regular file (a directory, device, FIFO or
socket) is never replaced. A symbolic link is followed: its target is replaced atomically and the
link stays, so ``--output current.onnx`` pointing at a versioned file updates that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import ConfigError

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.nin-edge-(\d+)-[^.]+\.tmp$")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Validate before any work that ``path`` can be written; returns the file to replace.

    Its folder must exist and be writable, and an existing entry must be a regular file (or a
    link to one, whose target is then returned).
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    if path.is_symlink() and not os.path.lexists(target):
        raise ConfigError(f"{what} '{path}' is a link to '{target}', which does not exist; give a file path")
    if os.path.lexists(target):
        mode = os.stat(target).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise ConfigError(
                f"{what} '{path}' exists and is {kind}, not a regular file; give a file path "
                "(nin-edge replaces only regular files)"
            )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{what} folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} folder '{parent}' is not writable")
    return target


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete ``path``'s temporaries left by processes that no longer run; returns what was removed."""
    pattern = _temp_pattern(path.name)
    removed = []
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic; it is
    removed when the block fails or the process is stopped by SIGINT or SIGTERM (the commands turn
    SIGTERM into an exception, see ``nin_edge.runtime.cli.common``).
    """
    target = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.nin-edge-{os.getpid()}-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        check_writable(path)  # the output may have been replaced by something else meanwhile
        os.replace(tmp_path, target)
        remove_stale_temporaries(target)
    finally:
        tmp_path.unlink(missing_ok=True)


def load_npy(path: str | os.PathLike, what: str = "array file") -> np.ndarray:
    """Read a ``.npy`` array safely: no pickles, the header checked against the file's size before
    anything is allocated (a header may claim petabytes), and empty arrays refused."""
    from .errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist")
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "mmap length is greater than file size" in reason:  # numpy checked the header against the size
            reason = f"its header claims more data than the file's {path.stat().st_size:,} bytes (truncated or corrupt)"
        raise InputError(f"cannot read {what} '{path}': {reason}") from None
    if mapped.size == 0:
        raise InputError(f"{what} '{path}' holds no data: shape {tuple(mapped.shape)}")
    return np.array(mapped)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so a large model is never held in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
