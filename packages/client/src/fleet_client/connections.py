"""Keep-alive HTTP/1.1 connections for ``SyncFleetClient``, on the standard library.

``http.client`` costs the caller about 0.15 ms of CPU per small request here,
urllib3 about 0.26 ms and httpx about 0.47 ms (docs/benchmarks.md); an
application enqueuing one job per call pays that on every job. What urllib3
added that a client of one coordinator needs is kept, in a few lines:

- a pool, so one client serves many threads: a thread takes an idle connection
  or opens one, and gives it back when the answer has been read in full;
- an idle connection the coordinator closed (its keep-alive timeout is 5 s) is
  noticed before it is reused — its socket reads as ready (EOF) — and replaced,
  so a request is never written into a connection already closed;
- the request line, headers and body leave in one ``send``: one segment, one
  wake-up of the server;
- the answer is parsed by httptools (llhttp, the parser uvicorn uses) straight
  off the socket: ``http.client`` parses headers with the ``email`` package, a
  quarter of this client's CPU per call (docs/benchmarks.md). ``http.client``
  still opens each connection, with TLS and a proxy's ``CONNECT`` tunnel.

- a proxy from the environment, as httpx (``FleetClient``) takes it:
  ``HTTP_PROXY``, ``HTTPS_PROXY`` or ``ALL_PROXY`` by the coordinator's scheme,
  unless ``NO_PROXY`` names its host. Plain HTTP goes to the proxy with the
  absolute URL as the request target; HTTPS is tunnelled (``CONNECT``), so TLS
  still ends at the coordinator. Credentials in the proxy URL are sent as
  ``Proxy-Authorization: Basic``. Only ``http://`` proxies.

Transport failures are raised as ``ConnectionError`` (refused, reset, closed
without an answer, timed out); the caller translates them once.
"""

from __future__ import annotations

import base64
import http.client
import re
import select
import socket
import threading
import urllib.request
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import httptools
from fleet_wire import Answer

__all__ = ["Connections"]

IDLE_MAX = 10
"""Idle connections kept for reuse; more threads at once open more, closed after use."""

_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_HEADER = re.compile(r"[\x00\r\n]")

_READ = 65536
"""Bytes asked of the socket per read: a whole answer of this API, nearly always."""


class Connections:
    """A thread-safe pool of keep-alive connections to one ``http(s)://host:port``."""

    def __init__(
        self, scheme: str, host: str, port: int | None, timeout: float, *, trust_env: bool = True
    ) -> None:
        self._kind = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        self._address: tuple[str, int | None] = (host, port)
        self._timeout = timeout
        self._idle: list[tuple[http.client.HTTPConnection, _Gathered]] = []
        self._lock = threading.Lock()
        self._origin = ""  # through an HTTP proxy: the absolute URL's scheme and authority
        self._proxy_headers: dict[str, str] = {}
        self._tunnel: tuple[str, int] | None = None  # through a proxy, HTTPS: CONNECT here
        default = 443 if scheme == "https" else 80
        # As http.client writes it: the port only when it is not the scheme's default.
        self._host = _bracketed(host) + ("" if port in (None, default) else f":{port}")
        proxy = _proxy_for(scheme, host) if trust_env else None
        if proxy is None:
            return
        url = urlsplit(proxy)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"only http:// proxies are supported, not {proxy!r}")
        self._address = (url.hostname, url.port or 80)
        if url.username is not None:
            user = f"{unquote(url.username)}:{unquote(url.password or '')}"
            basic = base64.b64encode(user.encode()).decode()
            self._proxy_headers = {"Proxy-Authorization": f"Basic {basic}"}
        if scheme == "https":
            self._tunnel = (host, port or default)
        else:
            self._origin = f"http://{_bracketed(host)}:{port or default}"

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        """Send one request and read its whole answer; ``ConnectionError`` if none came."""
        if self._origin:
            target = self._origin + target
            headers = {**headers, **self._proxy_headers}
        # Checked as http.client checks them: a line break would start a header of its own.
        # (One search of every name and value run together: the same characters.)
        if _UNSAFE_TARGET.search(target) or _UNSAFE_HEADER.search(
            "".join([text for item in headers.items() for text in item])
        ):
            raise ValueError("a request target or header holds a control character")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        request = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")
        conn, gathered = self._take()
        try:
            if conn.sock is None:
                conn.connect()  # TLS and a proxy's tunnel, by http.client
            sock: socket.socket = conn.sock
            sock.sendall(request)
            answer, keep = _read_answer(sock, gathered)
        except (OSError, http.client.HTTPException, httptools.HttpParserError) as exc:
            conn.close()
            if isinstance(exc, ConnectionError):
                raise
            raise ConnectionError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.close()
            raise
        if keep:
            self._give(conn, gathered)
        else:
            conn.close()
        return answer

    def _take(self) -> tuple[http.client.HTTPConnection, _Gathered]:
        """An idle connection and its parser (at the start of an answer), or a new pair."""
        with self._lock:
            while self._idle:
                conn, gathered = self._idle.pop()
                if not _dropped(conn):
                    return conn, gathered
                conn.close()
        host, port = self._address
        conn = self._kind(host, port, timeout=self._timeout)
        if self._tunnel is not None:
            conn.set_tunnel(*self._tunnel, headers=self._proxy_headers)
        return conn, _Gathered()

    def _give(self, conn: http.client.HTTPConnection, gathered: _Gathered) -> None:
        with self._lock:
            if len(self._idle) < IDLE_MAX:
                self._idle.append((conn, gathered))
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (one in use closes when its request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL the environment names for ``scheme://host``, or None."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):  # NO_PROXY (and the OS settings)
        return None
    return proxy


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (its socket reads as ready)."""
    sock: socket.socket | None = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle connection has nothing to read but its EOF


class _Gathered:
    """One answer, as httptools' callbacks hand it over.

    One per connection, its parser made once (~2.6 µs a request here): after a whole
    answer llhttp is at the start of the next; ``start`` clears what it gathered.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.start()

    def start(self) -> None:
        """Ready for the next answer."""
        self.reason = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headed = False
        self.done = False
        self.keep_alive = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headed = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()  # read before the parser resets


def _read_answer(sock: socket.socket, gathered: _Gathered) -> tuple[Answer, bool]:
    """The answer read off ``sock`` (by its connection's ``gathered``), and whether the
    connection may serve another request."""
    gathered.start()
    parser = gathered.parser
    while not gathered.done:
        chunk = sock.recv(_READ)
        if not chunk:
            # A body delimited by the end of the connection (neither a length nor
            # chunks) ends here; anything else was cut short.
            delimited = "content-length" in gathered.headers or (
                "transfer-encoding" in gathered.headers
            )
            if gathered.headed and not delimited:
                break
            raise ConnectionError("the coordinator closed the connection before its answer ended")
        parser.feed_data(chunk)
    answer = Answer(
        parser.get_status_code(),
        gathered.reason.decode("latin-1"),
        gathered.headers,
        b"".join(gathered.body),
    )
    return answer, gathered.keep_alive
