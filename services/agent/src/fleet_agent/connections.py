"""Keep-alive HTTP/1.1 connections to one coordinator, answers parsed by httptools.

An agent sends one kind of request, a JSON ``POST`` to its one coordinator, and
reads a JSON answer with a ``Content-Length`` (or chunked, behind some proxies).
For that, a general client is mostly overhead an agent pays on every job:

- aiohttp's import costs an agent process ~0.1 s of CPU at start (it builds two
  TLS contexts at import, the CA bundle parsed for the first), and with eight
  agents on two cores that is part of every drain a fleet starts;
- each of its requests builds a request object, a response object, a stream
  reader, a timer handle and a header multidict.

This is the rest: a pool of ``asyncio`` connections, the request written as one
prepared block of bytes, the answer parsed by httptools (the C parser uvicorn
uses, llhttp). TLS comes from ``loop.create_connection(ssl=…)`` with the
default context, made at the first ``https`` connection. Measured against aiohttp
in ``docs/benchmarks.md`` ("The agent's own HTTP client").

Errors are the standard library's: ``OSError`` (refused, reset, TLS),
``TimeoutError``, and ``ConnectionError`` for an answer that is not HTTP or a
connection closed before its answer ended. ``errors.translate_transport_errors``
turns them into ``CoordinatorUnavailable``. Nothing is retried here: the client
retries whole calls, and every write it retries is fenced.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import httptools
from fleet_wire import Answer

__all__ = ["ConnectionPool"]

IDLE_SECONDS = 4.0
"""An idle connection older than this is closed instead of reused: uvicorn closes
its side after 5 s (``--timeout-keep-alive``), and a request sent on a connection
the server is closing at that moment is lost to a reset."""

_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"
"""What a path keeps unquoted: RFC 3986's path characters, ``%`` and the query's ``?``."""

MAX_IDLE = 16
"""Idle connections kept at most (an agent has a few requests in flight at once)."""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time, its answer gathered by the parser's callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.open = True
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the coordinator's answer is not HTTP/1.1: {exc}"))

    def eof_received(self) -> bool | None:
        self._fail(ConnectionResetError("the coordinator closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the coordinator closed the connection"))

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        # Lower-case names: Answer.headers is read by lower-case names (retry-after).
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        if not self._parser.should_keep_alive():
            self.close()
        if answer is not None and not answer.done():
            answer.set_result(
                Answer(
                    self._parser.get_status_code(),
                    self._reason.decode("latin-1"),
                    self._headers,
                    b"".join(self._body),
                )
            )

    # the pool's side
    def send(self, request: bytes) -> asyncio.Future[Answer]:
        """Write ``request``; its answer, when it has come."""
        assert self._transport is not None
        assert self._answer is None  # one request at a time
        self._reason, self._headers, self._body = b"", {}, []
        self._answer = self._loop.create_future()
        self._transport.write(request)
        return self._answer

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: BaseException) -> None:
        self.close()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)


class ConnectionPool:
    """``POST``s to one coordinator over pooled keep-alive connections (``Poster``)."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/")
        host = url.netloc.rpartition("@")[2]  # no credentials in a Host header
        fields = {"Host": host, **headers, "Content-Type": "application/json"}
        for name, value in fields.items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} holds a line break")
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None

    async def post(self, path: str, body: bytes, time_limit: float) -> Answer:
        """The answer to ``POST path`` with ``body`` within ``time_limit`` seconds."""
        target = self._prefix + path
        if " " in target or not (target.isascii() and target.isprintable()):
            # Quoted as a URL library sends it (a job id is the caller's string): a space
            # or a line break must never end the request line or start a header.
            target = quote(target, safe=_PATH_SAFE)
        request = b"".join(
            (
                f"POST {target} HTTP/1.1\r\n".encode("latin-1"),
                self._head,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        loop = asyncio.get_running_loop()
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(time_limit):
                connection = self._reuse(loop.time()) or await self._connect(loop)
                answer = await connection.send(request)
        except BaseException:
            # Timed out, cancelled or failed mid-answer: the connection's state is unknown.
            if connection is not None:
                connection.close()
            raise
        if connection.open and len(self._idle) < MAX_IDLE:
            connection.idle_since = loop.time()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _reuse(self, now: float) -> _Connection | None:
        """The most recently used idle connection still open and fresh enough."""
        while self._idle:
            connection = self._idle.pop()
            if connection.open and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, connection = await loop.create_connection(
            lambda: _Connection(loop),
            self._host,
            self._port,
            ssl=self._ssl if self._tls else None,
        )
        return connection

    async def aclose(self) -> None:
        """Close every idle connection (those in use close when their request ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
