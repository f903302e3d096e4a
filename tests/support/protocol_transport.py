"""An httpx transport that talks to ``serve``'s HTTP protocol in process, in raw bytes.

Each request is written as HTTP/1.1 bytes into ``GuardedHttpToolsProtocol``
(``tests/support/raw_http.py``: uvicorn's config, the protocol ``serve`` runs, a
transport that keeps what it writes), and the answer is parsed back from the
bytes the protocol wrote. So a test drives the app the way a socket does — the
protocol's direct answers (``api/direct.py``) included — with an ``httpx``
client, and without a socket or a server thread. One connection, kept alive
until the protocol closes it (a new one then).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.raw_http import Collector, connect

__all__ = ["ProtocolTransport"]


class ProtocolTransport(httpx.AsyncBaseTransport):
    """Send each request through ``serve``'s protocol serving ``app``."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.app = app
        self.config = config
        self._protocol: Any = None
        self._collector: Collector | None = None
        self.closed_after = 0  # answers after which the protocol closed the connection

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._protocol is None or self._collector is None or self._collector.closed:
            self._protocol, self._collector = connect(self.app, **self.config)
        body = await request.aread()
        head = [f"{request.method} {request.url.raw_path.decode()} HTTP/1.1".encode()]
        for name, value in request.headers.raw:
            if name.lower() not in (b"content-length", b"transfer-encoding"):
                head.append(name + b": " + value)
        head.append(b"content-length: %d" % len(body))
        raw = await self._collector.answer(self._protocol, b"\r\n".join(head) + b"\r\n\r\n" + body)
        top, _, content = raw.partition(b"\r\n\r\n")
        status_line, *lines = top.split(b"\r\n")
        headers = [(name, value) for name, _, value in (line.partition(b": ") for line in lines)]
        if self._collector.closed:
            self.closed_after += 1
            self._protocol.connection_lost(None)
        return httpx.Response(
            int(status_line.split(b" ")[1]), headers=headers, content=content, request=request
        )

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.connection_lost(None)
