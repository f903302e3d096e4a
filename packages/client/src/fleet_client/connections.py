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
- the request line, headers and body leave in one ``send`` (as ``http.client``
  does for a bytes body): one segment, one wake-up of the server.

Transport failures are raised as ``ConnectionError`` (refused, reset, closed
without an answer, timed out); the caller translates them once.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from collections.abc import Mapping

from fleet_wire import Answer

__all__ = ["Connections"]

IDLE_MAX = 10
"""Idle connections kept for reuse; more threads at once open more, closed after use."""


class Connections:
    """A thread-safe pool of keep-alive connections to one ``http(s)://host:port``."""

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float) -> None:
        self._kind = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        self._address = (host, port)
        self._timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        """Send one request and read its whole answer; ``ConnectionError`` if none came."""
        conn = self._take()
        try:
            conn.request(method, target, body=body, headers=dict(headers))
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if isinstance(exc, ConnectionError):
                raise
            raise ConnectionError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give(conn)
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, response.reason, headers, content)

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn
                conn.close()
        host, port = self._address
        return self._kind(host, port, timeout=self._timeout)

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (one in use closes when its request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


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
