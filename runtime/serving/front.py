"""A small HTTP front in ``nin-serve`` that refuses inference requests whose claimed shape is too big.

Triton's HTTP JSON parser allocates the tensor a request claims (``"shape": [2147483648, 1, 28,
28]``) before it reads the data, so one such request kills the server with ``std::bad_alloc``
before any model code runs; neither Triton nor PyTriton has an option to bound it (checked:
``tritonserver --help`` of the build PyTriton 0.7.0 bundles). ``nin-serve`` therefore binds the HTTP
port itself, checks every request's JSON header against what the model can take at most (``--max-batch``
images of its input shape) and its body against the most bytes such a request can need, answers a
400 or 413 in KServe v2's error form (``{"error": "..."}``) for one that claims more, and forwards the
rest unchanged to Triton on a private loopback port. The checks read only the request's JSON, never
run the model, and refuse nothing that Triton would have answered.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import urllib.parse
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .connections import GuardedHandler, GuardedServer

#: Bytes a JSON request may spend on one value ("-1.2345678901234567e-38, " is 26) plus its header.
JSON_BYTES_PER_VALUE = 32
HEADER_BYTES = 1 << 20
# Headers that belong to one connection (and Expect: this front has answered "100 Continue" itself).
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_HOP_BY_HOP |= {"expect"}


@dataclass(frozen=True)
class Limits:
    """What one inference request may claim: ``max_values`` per input tensor, ``max_body`` bytes."""

    max_values: int
    described: str

    @property
    def max_body(self) -> int:
        return self.max_values * JSON_BYTES_PER_VALUE + HEADER_BYTES


class RequestRefused(Exception):
    """An inference request that the front answers itself; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Triton's parser takes the first of two equal keys and Python's the last: a request could show
    # us a small shape and Triton a huge one, so a repeated key is refused.
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"the key {next(k for k in keys if keys.count(k) > 1)!r} appears twice in one object")
    return dict(pairs)


def check_infer_request(body: bytes, headers: Any, limits: Limits) -> None:
    """Raise :class:`RequestRefused` when an inference request claims more than the model takes."""
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limits.max_body + 1)
        except zlib.error as exc:
            raise RequestRefused(400, f"the request body is not valid {encoding} data: {exc}") from None
        if len(body) > limits.max_body or inflater.unconsumed_tail:
            raise RequestRefused(413, f"the request body inflates to more than {limits.max_body:,} bytes")
    elif encoding != "identity":
        raise RequestRefused(400, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    header_length = headers.get("Inference-Header-Content-Length")
    if header_length is not None:
        try:
            body = body[: int(header_length)]
        except ValueError:
            raise RequestRefused(400, f"Inference-Header-Content-Length {header_length!r} is not a number") from None
    try:
        request = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise RequestRefused(400, f"the request's JSON cannot be read: {exc}") from None
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list):
        raise RequestRefused(400, 'the request has no "inputs" list')
    for tensor in inputs:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise RequestRefused(400, f"input {name!r}: shape must be a list of whole numbers, got {shape!r}")
        if any(d < 0 for d in shape) or len(shape) > 8:
            raise RequestRefused(400, f"input {name!r}: shape {shape} is not a tensor shape")
        if math.prod(shape) > limits.max_values:
            raise RequestRefused(
                400,
                f"input {name!r}: shape {shape} claims {math.prod(shape):,} values; this server takes at most "
                f"{limits.described} ({limits.max_values:,} values) per request",
            )


def _may_carry_tensors(path: str, body: bytes, headers: Any) -> bool:
    """Whether a POST must pass :func:`check_infer_request`: any path that names inference (also
    percent-encoded, or with a suffix Triton's routing might still take), or any body whose JSON has
    an "inputs" list; other requests (repository, shared memory) pass unchanged."""
    if "infer" in urllib.parse.unquote(path).lower():
        return True
    if (headers.get("Content-Encoding") or "identity").strip().lower() != "identity":
        return True  # compressed: inflated and checked rather than guessed at
    try:
        request = json.loads(body[: int(headers.get("Inference-Header-Content-Length") or len(body))])
    except (ValueError, RecursionError):
        return False
    return isinstance(request, dict) and "inputs" in request


class _Handler(GuardedHandler, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the client's delayed ACK
    # held every answer back by about 40 ms (measured: 52 ms p50 against Triton's 6.5 ms).
    disable_nagle_algorithm = True
    server: _FrontServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  stdlib's name
        pass  # Triton logs requests itself; a line per request here would flood nin-serve's stderr

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]], close: bool = False) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self._answer(status, body, [("Content-Type", "application/json")], close)

    def _forward(self) -> None:
        limits = self.server.limits
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._error(411, "chunked request bodies are not accepted; send a Content-Length", close=True)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._error(400, "Content-Length is not a number", close=True)
        if length < 0 or length > limits.max_body:
            return self._error(
                413, f"the request body is {length:,} bytes; at most {limits.max_body:,} are read", close=True
            )
        body = self.rfile.read(length) if length else b""
        if self.command == "POST" and _may_carry_tensors(self.path, body, self.headers):
            try:
                check_infer_request(body, self.headers, limits)
            except RequestRefused as exc:
                return self._error(exc.status, str(exc))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, reason, answer_headers, answer = self.server.backend(self.command, self.path, body, headers)
        except OSError:
            return self._error(503, "the Triton server behind nin-serve is not answering (starting or stopped)")
        kept = [(k, v) for k, v in answer_headers if k.lower() not in _HOP_BY_HOP | {"content-length"}]
        self.send_response_only(status, reason)
        for key, value in kept:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


class _FrontServer(GuardedServer):
    allow_reuse_address = True
    # socketserver's default backlog of 5 reset connections when 32 clients connected at once.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], backend_port: int, limits: Limits, client_timeout_s: int) -> None:
        super().__init__(address, _Handler)
        self.client_timeout_s = client_timeout_s
        self.limits = limits
        self.backend_port = backend_port
        self._local = threading.local()

    def backend(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        """Send one request to Triton on this thread's kept-alive connection (reopened once if stale)."""
        try:
            return self._send(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            self._local.conn = None  # Triton closed an idle connection: one retry on a fresh one
        try:
            return self._send(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self._local.conn = None
            raise OSError(f"Triton is not answering: {exc}") from None

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=600)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        except BaseException:
            conn.close()
            raise


class Front:
    """The front server: listening on ``host:port`` once built, forwarding to Triton's ``backend_port``;
    a client silent for ``client_timeout_s`` seconds is closed (see ``connections.py``)."""

    def __init__(self, host: str, port: int, backend_port: int, limits: Limits, client_timeout_s: int) -> None:
        self._server = _FrontServer((host, port), backend_port, limits, client_timeout_s)
        self._thread = threading.Thread(target=self._server.serve_forever, name="nin-serve-front", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for Triton's private HTTP endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
