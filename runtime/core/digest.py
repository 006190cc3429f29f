"""A digest of an ONNX model's graph (its nodes and weights), read without the onnx package.

``nin-export`` records it in the model's metadata; :class:`~nin_edge.runtime.Classifier` checks
it on load, so a file whose weight bytes were damaged or altered is refused instead of answering
confidently wrong. The graph is field 7 of the ``ModelProto`` message; the metadata (field 14)
lives outside it, so recording the digest does not change what it covers. Reading it needs only a
walk over the top-level protobuf fields, not a parse of the graph.

The digest covers the tensor values, not how they are stored: a model re-saved with its weights in
external files (``onnx.save(..., save_as_external_data=True)``) has the digest of the same model
with the weights inside, because each external initializer is hashed as the ``TensorProto`` it
would be with its bytes in ``raw_data`` (read in chunks from the data file, never whole).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ModelFileError

_GRAPH_FIELD = 7
_INITIALIZER = 5  # GraphProto.initializer
_RAW_DATA, _EXTERNAL_DATA, _DATA_LOCATION = 9, 13, 14  # TensorProto fields
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or malformed varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """Each top-level field of a protobuf message: (number, wire type, start, value start, end)."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value = pos
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, value = _varint(data, pos)
            pos = value + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError(f"field {number} runs past the end of the file")
        yield number, wire, start, value, pos


def _graph_slices(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    parts = [view[value:end] for number, wire, _, value, end in _fields(view) if number == _GRAPH_FIELD and wire == 2]
    if not parts:
        raise ValueError("no graph in the file")
    return parts


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _External:
    """Where an initializer's bytes live outside the model file (its ``external_data`` entries)."""

    def __init__(self, tensor: memoryview, base_dir: Path | None) -> None:
        entries: dict[str, str] = {}
        kept: list[tuple[int, memoryview]] = []
        for number, wire, start, value, end in _fields(tensor):
            if number == _EXTERNAL_DATA and wire == 2:
                pair = {n: bytes(tensor[value:end][v:e]).decode() for n, _w, _, v, e in _fields(tensor[value:end])}
                entries[pair.get(1, "")] = pair.get(2, "")
            elif number != _DATA_LOCATION:
                kept.append((number, tensor[start:end]))
        self.kept = kept
        if base_dir is None:
            raise ValueError("its weights are stored in external files; load it from its path, not from bytes")
        location = entries.get("location", "")
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise ValueError(f"external data location {location!r} is not a path inside the model's folder")
        self.path = base_dir / location
        if not self.path.is_file():
            raise ValueError(f"its external data file '{self.path}' does not exist")
        size = os.stat(self.path).st_size
        self.offset = int(entries.get("offset") or 0)
        self.length = int(entries["length"]) if entries.get("length") else size - self.offset
        if self.offset < 0 or self.length < 0 or self.offset + self.length > size:
            raise ValueError(
                f"its external data file '{self.path}' has {size:,} bytes; a tensor claims bytes "
                f"{self.offset:,} to {self.offset + self.length:,}"
            )

    def feed(self, digest: Any) -> None:
        """Hash the tensor as it would be serialised with its bytes in ``raw_data`` (field order kept)."""
        raw_key = _encode_varint(_RAW_DATA << 3 | 2) + _encode_varint(self.length)
        before = [part for number, part in self.kept if number < _RAW_DATA]
        after = [part for number, part in self.kept if number > _RAW_DATA]
        total = sum(len(p) for p in before) + len(raw_key) + self.length + sum(len(p) for p in after)
        digest.update(_encode_varint(_INITIALIZER << 3 | 2) + _encode_varint(total))
        for part in before:
            digest.update(part)
        digest.update(raw_key)
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            left = self.length
            while left:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    raise ValueError(f"its external data file '{self.path}' ended early")
                digest.update(chunk)
                left -= len(chunk)
        for part in after:
            digest.update(part)


def _is_external(tensor: memoryview) -> bool:
    for number, wire, _, value, _end in _fields(tensor):
        if number == _DATA_LOCATION and wire == 0:
            return _varint(tensor, value)[0] == _EXTERNAL
    return False


def graph_digest(model: bytes, source: str = "<bytes>", base_dir: str | os.PathLike | None = None) -> str:
    """sha256 (hex) of the graph inside a serialised ONNX model.

    ``base_dir`` is the model's folder, where initializers stored as external data are read from.
    """
    try:
        digest = hashlib.sha256()
        for graph in _graph_slices(model):
            for number, wire, start, value, end in _fields(graph):
                if number == _INITIALIZER and wire == 2 and _is_external(graph[value:end]):
                    _External(graph[value:end], Path(base_dir) if base_dir else None).feed(digest)
                else:
                    digest.update(graph[start:end])
        return digest.hexdigest()
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"model '{source}' is not a readable ONNX file: {exc}") from None


def external_data_bytes(model: bytes, source: str, base_dir: str | os.PathLike | None) -> int:
    """How many bytes of the model's initializers lie in external files (read from their entries,
    not from the files)."""
    try:
        return sum(
            _External(graph[value:end], Path(base_dir) if base_dir else None).length
            for graph in _graph_slices(model)
            for number, wire, _, value, end in _fields(graph)
            if number == _INITIALIZER and wire == 2 and _is_external(graph[value:end])
        )
    except (ValueError, OSError) as exc:
        raise ModelFileError(f"model '{source}' is not a readable ONNX file: {exc}") from None


def uses_external_data(model: bytes) -> bool:
    """Whether any initializer of the model's graph keeps its bytes in an external file."""
    try:
        return any(
            number == _INITIALIZER and wire == 2 and _is_external(graph[value:end])
            for graph in _graph_slices(model)
            for number, wire, _, value, end in _fields(graph)
        )
    except ValueError:
        return False
