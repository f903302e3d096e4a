"""``serve``'s HTTP protocol driven with raw bytes, in process: no socket, no client.

``Collector`` is the transport: it keeps what the protocol writes, wakes a waiter
once an answer is whole and notes a close. ``connect`` builds the protocol as
``serve`` does (uvicorn's config, ``GuardedHttpToolsProtocol`` unless told
otherwise) around any ASGI app. The protocol tests and ``python -m bench requests``
(whose CPU figures include this transport's work, so it stays lean) share them.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Collector", "connect"]


class Collector(asyncio.Transport):
    """A transport that keeps what is written and wakes the caller once an answer is whole."""

    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self.closed = False
        self.whole: asyncio.Future[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) >= length and self.whole is not None and not self.whole.done():
            answer, self.data = head + sep + body[:length], body[length:]
            self.whole.set_result(answer)

    async def answer(self, protocol: Any, request: bytes) -> bytes:
        """Feed ``request`` to ``protocol``; the whole answer it writes."""
        self.whole = asyncio.get_running_loop().create_future()
        protocol.data_received(request)
        return await self.whole

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False  # no half-close here: a lingering close only stops reading

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def connect(
    app: Any,
    protocol_class: type | None = None,
    collector: Collector | None = None,
    **config: Any,
) -> tuple[Any, Collector]:
    """A protocol of ``protocol_class`` serving ``app`` on ``collector`` (a fresh one)."""
    import uvicorn
    from fleet_coordinator.protocol import GuardedHttpToolsProtocol

    cls = GuardedHttpToolsProtocol if protocol_class is None else protocol_class
    # log_config None, as serve passes it: uvicorn's default would configure the
    # process's logging (its loggers' handlers) for every later test.
    options = {
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "log_config": None,
        **config,
    }
    loaded = uvicorn.Config(app, http=cls, **options)
    loaded.load()
    protocol = cls(config=loaded, server_state=uvicorn.server.ServerState(), app_state={})
    collector = Collector() if collector is None else collector
    protocol.connection_made(collector)
    return protocol, collector
