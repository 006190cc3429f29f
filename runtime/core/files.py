"""Writing files so that a failure never leaves a partial file or clobbers an existing one.

Outputs are written to a temporary file beside the target and renamed over it only when the
work succeeded. The temporary names follow one pattern, ``.NAME.nin-edge-PID-XXXX.tmp``, so a
file left by a process that was killed (``kill -9``, power loss) is recognisable; the next
successful write of the same output removes those whose process is gone.

What is refused: an existing output that is not a regular file (a directory, device, FIFO or
socket) is never replaced. A symbolic link is followed: its target is replaced atomically and the
link stays, so ``--output current.onnx`` pointing at a versioned file updates that file.

Folder outputs (deploy bundles) follow the same rules through :func:`atomic_folder`, plus one: an
existing folder is replaced only when it is empty or holds nothing but the files its own record
(a bundle's ``manifest.json``) lists, each with the sha256 recorded there; nin-edge never removes a
file it did not write.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelFileError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def kind_of(path: str | os.PathLike) -> str:
    """What ``path`` is, following links: "a regular file", "a directory", "a character device"...
    ("missing" when it, or the target of its link, does not exist)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "missing"
    return "a regular file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _temp_pattern(name: str) -> re.Pattern[str]:
    # Group 2 marks a replaced folder set aside during a swap; the random part is optional because
    # bundles of nin-edge 0.x before this rule named their build folders ``.NAME.nin-edge-PID.tmp``.
    return re.compile(rf"^\.{re.escape(name)}\.nin-edge-(\d+)(?:-[^.]+)?\.tmp(\.old)?$")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Validate before any work that ``path`` can be written; returns the file to replace.

    Its folder must exist and be writable, and an existing entry must be a regular file (or a
    link to one, whose target is then returned).
    """
    path = Path(path)
    target = _resolve_output(path, what, "a file path")
    if os.path.lexists(target):
        mode = os.stat(target).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise ConfigError(
                f"{what} '{path}' exists and is {kind}, not a regular file; give a file path "
                "(nin-edge replaces only regular files)"
            )
    _check_parent(target, what)
    return target


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def make_temporary_folder(target: Path) -> Path:
    """A new, empty build folder beside ``target``, named as every temporary of it is
    (``.NAME.nin-edge-PID-XXXX.tmp``), so that a killed run's is found by :func:`remove_stale_temporaries`."""
    prefix = f".{target.name}.nin-edge-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.absolute().parent))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete ``path``'s temporaries (files or build folders) left by processes that no longer run;
    returns what was removed.

    A replaced folder set aside by a swap that was killed half-way is removed only when ``path``
    exists again: otherwise it is the only copy of the previous output and stays.
    """
    pattern = _temp_pattern(path.name)
    removed = []
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if match.group(2) and not os.path.lexists(path):
                continue
            shutil.rmtree(entry, ignore_errors=True)
        else:
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


def _resolve_output(path: Path, what: str, expected: str) -> Path:
    """``path``, or the target of the link ``path`` (which must exist)."""
    if not path.is_symlink():
        return path
    target = path.resolve()
    if not os.path.lexists(target):
        raise ConfigError(f"{what} '{path}' is a link to '{target}', which does not exist; give {expected}")
    return target


def _check_parent(target: Path, what: str) -> None:
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        # "Create it first" would be wrong advice where a file is in the way (``model.onnx/x.pt``).
        blocker = next((p for p in (parent, *parent.parents) if kind_of(p) != "missing"), None)
        if blocker is not None and not blocker.is_dir():
            where = f"'{parent}'" if blocker == parent else f"'{parent}' cannot be made: '{blocker}'"
            raise ConfigError(f"{what} folder {where} is {kind_of(blocker)}, not a folder; give a path inside a folder")
        raise ConfigError(f"{what} folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} folder '{parent}' is not writable")


@dataclass(frozen=True)
class FolderRules:
    """How to tell a folder the tool wrote: ``record`` is the file in it that lists what was written
    (a bundle's ``manifest.json``) and ``listed(folder)`` reads that list as file name -> sha256;
    ``derived`` names files written from the others after the record (a signature), which go with them, each
    with the test that a file of that name is the tool's (a user's own file of that name is never replaced)."""

    record: str
    listed: Callable[[Path], Mapping[str, str]]
    what: str
    derived: Mapping[str, Callable[[Path], bool]] = field(default_factory=dict)


def check_replaceable_folder(path: str | os.PathLike, rules: FolderRules) -> Path:
    """Validate before any work that the folder ``path`` may be replaced; returns the folder to replace.

    Allowed: a path that does not exist, an empty folder, or a folder whose every entry is ``record``
    (the file where the tool lists what it wrote, a bundle's ``manifest.json``) or a regular file
    that ``listed(folder)`` names with the sha256 the file still has, or one of ``derived``. Anything else (a file the
    record does not list, one changed since it was written, a subfolder, no record at all) is
    refused with its name, so nothing a user put or edited there is ever deleted. A symbolic link
    is followed: the folder it points at is replaced and the link stays.
    """
    path, record, what = Path(path), rules.record, rules.what
    # Absolute: "." has no name to build a sibling from, and its parent is itself.
    target = Path(os.path.abspath(_resolve_output(path, what, "a folder path")))
    cwd, real = Path(os.path.realpath(Path.cwd())), Path(os.path.realpath(target))  # a link to it is it too
    if real == cwd or real in cwd.parents:
        raise ConfigError(
            f"{what} folder '{path}' is the current folder or holds it: nin-edge builds the folder beside it and "
            f"renames it into place, which would move the folder you are working in; give a new folder, e.g. "
            f"'{Path(path) / what}'"
        )
    if os.path.lexists(target):
        mode = os.stat(target).st_mode
        if not stat.S_ISDIR(mode):
            kind = "a regular file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a folder")
            raise ConfigError(f"{what} '{path}' exists and is {kind}, not a folder; give a folder path")
        entries = sorted(target.iterdir())
        refuse = f"{what} folder '{path}'"
        keep = "nin-edge replaces only a folder it wrote; move that away or choose another folder"
        if entries and not (target / record).is_file():
            raise ConfigError(f"{refuse} exists, is not empty and holds no {record}: not replacing it; {keep}")
        files = rules.listed(target) if entries else {}
        for entry in entries:
            ours = rules.derived.get(entry.name)
            if entry.name == record or (ours and entry.is_file() and not entry.is_symlink() and ours(entry)):
                continue
            if entry.name not in files:
                raise ConfigError(
                    f"{refuse} holds '{entry.name}', which its {record} does not list: not replacing it; {keep}"
                )
            if entry.is_symlink() or not entry.is_file():
                raise ConfigError(f"{refuse}: '{entry.name}' is not a regular file: not replacing it; {keep}")
            if sha256_file(entry) != files[entry.name]:
                raise ConfigError(
                    f"{refuse}: '{entry.name}' was changed since it was written (its sha256 differs from "
                    f"{record}'s): not replacing it; {keep}"
                )
    _check_parent(target, f"{what}'s parent")
    return target


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, rules: FolderRules) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    ``path`` is checked by :func:`check_replaceable_folder` before and again just before the swap.
    The previous folder is renamed aside, the new one renamed into place, then the old one removed,
    so a failure at any step leaves one complete folder at ``path``. Build folders of killed runs
    (``.NAME.nin-edge-PID-XXXX.tmp``) are removed after a successful swap.
    """
    target = check_replaceable_folder(path, rules)
    tmp = make_temporary_folder(target)
    try:
        yield tmp
        umask = os.umask(0)  # mkdtemp makes the folder private (0700); give it a plain mkdir's mode
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        check_replaceable_folder(path, rules)
        _swap_folder(tmp, target)
        remove_stale_temporaries(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``; an existing (checked) ``target`` goes only after the rename."""
    if not os.path.lexists(target):
        new.rename(target)
        return
    old = new.with_name(new.name + ".old")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old)


def load_npy(path: str | os.PathLike, what: str = "array file") -> np.ndarray:
    """Read a ``.npy`` array safely: no pickles, the header checked against the file's size before
    anything is allocated (a header may claim petabytes), and empty arrays refused."""
    from .errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist")
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OverflowError):  # numpy maps a negative size claimed by the header
            reason = "its header claims an impossible shape (a negative dimension?); the file is corrupt"
        elif "mmap length is greater than file size" in reason:  # numpy checked the header against the size
            reason = f"its header claims more data than the file's {path.stat().st_size:,} bytes (truncated or corrupt)"
        raise InputError(f"cannot read {what} '{path}': {reason}") from None
    if mapped.size == 0:
        raise InputError(f"{what} '{path}' holds no data: shape {tuple(mapped.shape)}")
    check_memory(mapped.nbytes, f"{what} '{path}' ({mapped.nbytes:,} bytes)")
    return np.array(mapped)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_available() -> int | None:
    """Bytes this process can still allocate, or None when the system does not say.

    The least of the kernel's ``MemAvailable``, the cgroup's memory limit less its usage (a
    container's cap) and the address-space limit (``ulimit -v``) less what the process maps now.
    """
    bounds = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                bounds.append(int(line.split()[1]) * 1024)
    limit, usage = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and usage is not None:
        bounds.append(max(limit - usage, 0))
    try:
        import resource
    except ImportError:  # not on Windows, which has no ulimit -v
        return min(bounds) if bounds else None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        mapped = 0
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
        bounds.append(max(soft - mapped, 0))
    return min(bounds) if bounds else None


def check_memory(needed: int, what: str) -> None:
    """Refuse, before allocating, work that needs more memory than this process can still get
    (a file read whole, a decompressed stream): a clear error instead of an out-of-memory kill."""
    from .errors import InputError

    available = memory_available()
    if available is not None and needed > available:
        raise InputError(
            f"{what} needs about {needed / 1e9:,.2f} GB of memory; this process can get {available / 1e9:,.2f} GB "
            "(free memory, cgroup and ulimit -v limits)"
        )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so a large model is never held in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or raw), checking its magic number and that its length fits its header.

    The file is streamed: the header is read first and the size it claims is checked against the
    memory this process can get before anything is allocated, so a gzip bomb or a lying header is
    one error, not an out-of-memory kill; bytes past what the header claims are never inflated.
    """
    path = Path(path)
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    try:
        with open(path, "rb") as raw_file:
            gzipped = raw_file.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise ModelFileError(f"IDX file '{path}' is truncated: {len(head)} bytes, not even a header")
            found = int.from_bytes(head, "big")
            if found != magic:
                raise ModelFileError(
                    f"IDX file '{path}' has magic number 0x{found:08x}, expected 0x{magic:08x} for {kind}"
                )
            ndim = head[3]
            shape = fh.read(4 * ndim)
            dims = [int.from_bytes(shape[4 * i : 4 * i + 4], "big") for i in range(len(shape) // 4)]
            needed = math.prod(dims)  # Python ints: numpy's product overflows on lying headers
            if len(shape) < 4 * ndim:
                raise ModelFileError(f"IDX file '{path}' is truncated inside its header")
            size = os.stat(path).st_size
            if not gzipped and size != 4 + 4 * ndim + needed:
                raise ModelFileError(
                    f"IDX file '{path}' is truncated or padded: {size:,} bytes, its header {tuple(dims)} needs "
                    f"{4 + 4 * ndim + needed:,}"
                )
            check_memory(needed, f"IDX file '{path}' (its header claims {kind} of shape {tuple(dims)})")
            # bytearray, so the array is writable (torch refuses to wrap read-only memory safely).
            data = bytearray(needed)
            view, got = memoryview(data), 0
            while got < needed:
                n = fh.readinto(view[got : got + (1 << 24)])  # 16 MiB at a time: no second copy
                if not n:
                    break
                got += n
            extra = fh.read(1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ModelFileError(f"cannot read IDX file '{path}': {exc}") from None
    if got != needed or extra:
        state = "holds more data than" if extra else f"inflates to {4 + 4 * ndim + got:,} bytes, less than"
        raise ModelFileError(
            f"IDX file '{path}' is truncated or padded: it {state} its header {tuple(dims)} claims "
            f"({4 + 4 * ndim + needed:,} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)
