"""A digest of an ONNX model's graph (its nodes and weights), read without the onnx package.

``nin-export`` records it in the model's metadata; :class:`~nin_edge.runtime.Classifier` checks
it on load, so a file whose weight bytes were damaged or altered is refused instead of answering
confidently wrong. The graph is field 7 of the ``ModelProto`` message; the metadata (field 14)
lives outside it, so recording the digest does not change what it covers. Reading it needs only a
walk over the top-level protobuf fields, not a parse of the graph.
"""

from __future__ import annotations

import hashlib

from .errors import ModelFileError

_GRAPH_FIELD = 7


def _varint(data: bytes, pos: int) -> tuple[int, int]:
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


def _graph_slices(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    pos, parts = 0, []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError(f"field {number} runs past the end of the file")
            if number == _GRAPH_FIELD:
                parts.append(view[pos : pos + length])  # no copy: the file may be hundreds of MB
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if not parts:
        raise ValueError("no graph in the file")
    return parts


def graph_digest(model: bytes, source: str = "<bytes>") -> str:
    """sha256 (hex) of the graph inside a serialised ONNX model."""
    try:
        digest = hashlib.sha256()
        for part in _graph_slices(model):
            digest.update(part)
        return digest.hexdigest()
    except ValueError as exc:
        raise ModelFileError(f"model '{source}' is not a readable ONNX file: {exc}") from None
