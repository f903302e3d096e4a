"""``serve``'s protocol tells the guard when a request's body was parsed whole before the app ran.

With ``BODY_COMPLETE`` in the scope the guard reads the body without a deadline
(``api/middleware.py``); without it (a body still arriving) the read keeps the
``FLEET_BODY_TIMEOUT_SECONDS`` deadline, which ``test_serve_slow_clients.py``
holds to its 408 over real HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fleet_coordinator.api.middleware import BODY_COMPLETE

from tests.support.raw_http import connect

_BODY = b'{"kind": "k"}'
_HEAD = b"POST /v1/jobs HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(_BODY)


class _App:
    """Records whether each request's scope said its body was complete when the app began."""

    def __init__(self) -> None:
        self.seen: list[bool] = []
        self.bodies: list[bytes] = []
        self.started = asyncio.Event()
        self.answered = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(bool(scope.get(BODY_COMPLETE)))
        self.started.set()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        self.answered.set()


def _protocol(app: _App) -> Any:
    protocol, _ = connect(app, proxy_headers=False)
    return protocol


async def _answered(app: _App) -> None:
    await asyncio.wait_for(app.answered.wait(), 5)
    app.answered.clear()


async def test_a_request_read_in_one_piece_starts_with_its_body_complete() -> None:
    app = _App()
    protocol = _protocol(app)
    protocol.data_received(_HEAD + _BODY)
    await _answered(app)
    assert app.seen == [True]
    assert app.bodies == [_BODY]
    protocol.connection_lost(None)


async def test_a_body_still_arriving_starts_without_the_mark() -> None:
    """The app starts on the headers; the rest of the body comes later, read as usual."""
    app = _App()
    protocol = _protocol(app)
    protocol.data_received(_HEAD + _BODY[:3])
    await asyncio.wait_for(app.started.wait(), 5)  # its task starts on what came
    assert app.seen == [False]
    protocol.data_received(_BODY[3:])
    await _answered(app)
    assert app.bodies == [_BODY]
    # The next request on the connection, whole in one read, has the mark again.
    protocol.data_received(_HEAD + _BODY)
    await _answered(app)
    assert app.seen == [False, True]
    protocol.connection_lost(None)
