"""What both of ``nin-serve``'s HTTP servers (the inference front and ``--web``) do with clients that
misbehave or vanish: standard library only.

- A request line without an HTTP version (``GET /``, HTTP/0.9's form) is answered 400 and closed;
  the standard library would wait for headers that such a client never sends.
- A client that sends nothing for ``client_timeout_s`` seconds (while the server waits for a
  request line, a header or the next piece of a body) is closed. The clock restarts at every read,
  as nginx's ``client_header_timeout``/``client_body_timeout`` do.
- A client that goes away mid-request is one line on stderr, not a traceback.
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..core.errors import ConfigError
from ..core.numbers import is_whole_number

#: Default seconds a client may stay silent before its connection is closed (``--client-timeout-s``).
CLIENT_TIMEOUT_S = 30


def check_client_timeout(value: object) -> None:
    """Refuse a ``--client-timeout-s`` that is not a whole number of seconds >= 1."""
    if not is_whole_number(value, minimum=1):
        raise ConfigError(f"--client-timeout-s must be a whole number of seconds >= 1, got {value!r}")


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler with the rules above; put it before the standard handler class it guards."""

    server: GuardedServer
    raw_requestline: bytes
    # Answers to malformed request lines get a real status line (HTTP/0.9's default sends none).
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.client_timeout_s)  # every read and write of this client

    def parse_request(self) -> bool:
        words = str(self.raw_requestline, "iso-8859-1").split()
        if len(words) == 2:
            self.command, self.request_version = "", self.default_request_version
            self.requestline = " ".join(words)
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, "the request line has no HTTP version; send HTTP/1.0 or HTTP/1.1")
            return False
        return super().parse_request()


class GuardedServer(ThreadingHTTPServer):
    """A threading HTTP server whose clients' disconnects are one line on stderr."""

    daemon_threads = True
    client_timeout_s: int = CLIENT_TIMEOUT_S

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            host, port = client_address if isinstance(client_address, tuple) else (client_address, "")
            sys.stderr.write(f"nin-serve: client {host}:{port} went away mid-request ({type(exc).__name__})\n")
            return
        super().handle_error(request, client_address)  # a bug of ours: its traceback is worth having
