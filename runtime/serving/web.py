"""``nin-serve --web DIR``: serve a web folder (``nin-export``'s web target) for local use.

A plain file server would do, except for two things the page needs: WebAssembly threads need the
page cross-origin isolated (``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``; without them onnxruntime-web runs on one thread),
and browsers compile ``.wasm`` streaming only when it comes as ``application/wasm``. Standard
library only. It serves regular files whose real path is inside the folder and nothing else: a
symbolic link that leads out of it, a device or pipe, and folder listings are 404 (a folder's
``index.html`` is served for the folder), and a path with a control character (``%00``) is 400.
For production put the folder behind any web server that sends the same headers.
"""

from __future__ import annotations

import functools
import http.server
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from .connections import CLIENT_TIMEOUT_S, GuardedHandler, GuardedServer, check_client_timeout

#: Headers of every answer: cross-origin isolation (WebAssembly threads) and no stale copies.
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".ort": "application/octet-stream",
}
#: The file every web folder has; a folder without it is not one.
PAGE = "index.html"


@dataclass(frozen=True)
class WebServeConfig:
    """Options of ``nin-serve --web``; each field is also its flag."""

    web: str = ""
    host: str = "127.0.0.1"
    http_port: int = 8000
    client_timeout_s: int = CLIENT_TIMEOUT_S

    def validate(self) -> None:
        folder = Path(self.web)
        if not folder.is_dir():
            raise ConfigError(f"--web '{self.web}' is not a folder; give a folder written by nin-export's web target")
        if not (folder / PAGE).is_file():
            raise ConfigError(f"--web '{self.web}' has no {PAGE}; give a folder written by nin-export's web target")
        if not 0 <= self.http_port < 65536:
            raise ConfigError(f"--http-port must be in 0..65535 (0: any free port), got {self.http_port}")
        check_client_timeout(self.client_timeout_s)


class _Handler(GuardedHandler, http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        for key, value in HEADERS.items():
            self.send_header(key, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        pass  # a page load is a dozen requests; errors still reach the browser as HTTP status codes

    def send_head(self):  # the standard library's own (unannotated) signature
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            self.send_error(400, "the path holds a control character (such as %00)")
            return None
        if not self._serves():
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def _serves(self) -> bool:
        """Whether the request names a regular file whose real path (every link followed) is inside the
        served folder; a folder stands for its ``index.html``."""
        root = str(self.directory)  # resolved by make_server
        real = os.path.realpath(self.translate_path(self.path))
        if os.path.isdir(real):
            real = os.path.realpath(os.path.join(real, PAGE))
        return real != root and os.path.commonpath([root, real]) == root and os.path.isfile(real)

    def list_directory(self, path):  # the standard library's own (unannotated) signature
        self.send_error(404, "File not found")  # never a listing, even of a folder that lost its page meanwhile
        return None


def make_server(config: WebServeConfig) -> GuardedServer:
    """A bound (not yet serving) server for ``config.web``; ``server.server_address`` has the port."""
    config.validate()
    handler = functools.partial(_Handler, directory=str(Path(config.web).resolve()))
    try:
        server = GuardedServer((config.host, config.http_port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.http_port}: {exc.strerror or exc}") from None
    server.client_timeout_s = config.client_timeout_s
    return server


def serve_web(config: WebServeConfig, ready: Callable[[str], None] = print) -> None:
    """Serve ``config.web`` until interrupted."""
    server = make_server(config)
    port = server.server_address[1]
    ready(
        f"serving {config.web} at http://{config.host}:{port}/ (cross-origin isolated: COOP same-origin, "
        "COEP require-corp, so WebAssembly gets its threads); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
