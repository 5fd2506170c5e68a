"""Loopback HTTP servers and an in-memory resolver for the http node's tests.

Network rule: these servers bind to loopback only, and ``MapResolver`` answers from its map
or raises: it never falls through to real DNS.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from urllib.parse import parse_qs, urlsplit

from workers.http.addresses import IPAddress


class MapResolver:
    """Names to loopback addresses from a fixed map; unknown names raise ``gaierror``."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = {k.lower().rstrip("."): [ip_address(a) for a in v] for k, v in names.items()}
        for answers in self.names.values():
            assert all(a.is_loopback for a in answers), "tests resolve names to loopback only"
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        try:
            return list(self.names[host.lower().rstrip(".")])
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test map") from None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass
class LoopbackServer:
    """A threaded HTTP server on loopback that records every request it gets.

    Routes: ``/sleep?s=…`` (answers after s seconds), ``/json``, ``/text``, ``/bin``,
    ``/big?n=…``, ``/echo`` (the request as JSON), ``/status/<code>``, ``/to?url=…`` (302 to
    url), ``/chain/<n>?final=…`` (n redirects on this server, then one to ``final``), the
    paths in ``canned`` with their bodies; anything else answers 200 "canary".
    """

    host: str = "127.0.0.1"
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    # Path -> (content type, body): answers a test sets up (``/canned/...``).
    canned: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Open client connections: closed when the server stops, so a client's kept-alive
    # connection cannot reach this server's handler after the next test binds the port.
    connections: set[socket.socket] = field(default_factory=set, repr=False)

    @contextlib.contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type(
            "Server", (ThreadingHTTPServer,), {"address_family": family, "request_queue_size": 128}
        )
        server = server_cls((self.host, self.port), _handler(self))  # 0: any free port
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _handler(owner: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def setup(self) -> None:
            super().setup()
            owner.connections.add(self.connection)

        def finish(self) -> None:
            owner.connections.discard(self.connection)
            super().finish()

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            owner.seen.append(
                Seen(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    body,
                    self.client_address[0],
                )
            )
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            if path in owner.canned:
                ctype, canned = owner.canned[path]
                self._send(200, canned, ctype)
            elif path == "/sleep":  # a slow service: answers after ``s`` seconds
                time.sleep(min(float(query.get("s", "1")), 30.0))
                self._send(200, b'{"slept": true}', "application/json")
            elif path == "/json":
                self._send(200, b'{"items": [1, 2, 3]}', "application/json")
            elif path == "/text":
                self._send(200, "héllo".encode(), "text/plain; charset=utf-8")
            elif path == "/bin":
                self._send(200, b"\x89PNG\r\n\x1a\n\x00\xff", "image/png")
            elif path == "/big":
                self._send(200, b"x" * int(query.get("n", "1000")), "text/plain")
            elif path == "/echo":
                echo = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
                self._send(200, json.dumps(echo).encode(), "application/json")
            elif path.startswith("/status/"):
                code = int(path.rsplit("/", 1)[1])
                extra = {"Retry-After": "7"} if code in (429, 503) else {}
                self._send(code, b"nope " * 10, "text/plain", extra)
            elif path == "/to":
                self._send(302, b"", "text/plain", {"Location": query["url"]})
            elif path.startswith("/chain/"):
                n = int(path.rsplit("/", 1)[1])
                final = query.get("final", "/json")
                nxt = f"/chain/{n - 1}?{parts.query}" if n > 0 else final
                self._send(302, b"", "text/plain", {"Location": nxt})
            else:
                self._send(200, b"canary", "text/plain")

        def _send(
            self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    return Handler
