"""``serve``'s protocol closes a connection at its header deadline and its keep-alive, as moved.

Both deadlines are moved on every request (``protocol.Deadline``), and one timer
serves each: these tests pin that a deadline moved since the timer was started is
kept, not the one the timer was started for, and that a cleared one closes nothing.
Driven with raw bytes in process on an event loop whose clock the test moves: no
waiting on the real clock.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from fleet_coordinator.protocol import GuardedHttpToolsProtocol

from tests.support.raw_http import Collector, connect

KEEP_ALIVE = 5.0
HEADERS = GuardedHttpToolsProtocol.header_timeout
GET = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"


class _Clock(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it."""

    now = 1000.0

    def time(self) -> float:
        return self.now


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """204 to every request."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _run(test: Callable[[_Clock], Awaitable[None]]) -> None:
    loop = _Clock()
    try:
        loop.run_until_complete(test(loop))
    finally:
        loop.close()


async def _at(loop: _Clock, seconds: float) -> None:
    """Move the clock to ``seconds`` after the start and run what is due by then."""
    loop.now = 1000.0 + seconds
    for _ in range(3):  # the timers due, then what they scheduled
        await asyncio.sleep(0)


async def _connect(loop: _Clock) -> tuple[Any, Collector]:
    return connect(_app, timeout_keep_alive=KEEP_ALIVE)


def test_the_keep_alive_runs_from_the_last_answer_not_the_first() -> None:
    async def test(loop: _Clock) -> None:
        protocol, wire = await _connect(loop)
        assert (await wire.answer(protocol, GET)).startswith(b"HTTP/1.1 204 ")
        await _at(loop, KEEP_ALIVE - 1)
        assert (await wire.answer(protocol, GET)).startswith(b"HTTP/1.1 204 ")
        await _at(loop, KEEP_ALIVE + 1)  # past the first answer's keep-alive
        assert not wire.closed
        await _at(loop, 2 * KEEP_ALIVE - 1.1)
        assert not wire.closed
        await _at(loop, 2 * KEEP_ALIVE - 0.9)  # past the second answer's
        assert wire.closed
        protocol.connection_lost(None)

    _run(test)


def test_the_header_deadline_runs_from_each_requests_first_byte() -> None:
    async def test(loop: _Clock) -> None:
        protocol, wire = await _connect(loop)  # armed now, for a request that never comes
        await _at(loop, 1)
        assert (await wire.answer(protocol, GET)).startswith(b"HTTP/1.1 204 ")
        answered = len(wire.data)
        await _at(loop, 4)
        protocol.data_received(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # never ends
        await _at(loop, HEADERS + 1.5)  # past the connection's and the first request's
        assert not wire.closed  # and past the keep-alive, cleared by the second request
        await _at(loop, HEADERS + 3.9)
        assert not wire.closed
        await _at(loop, HEADERS + 4.1)
        assert wire.closed
        assert len(wire.data) == answered  # closed with no answer
        protocol.connection_lost(None)

    _run(test)


def test_deadlines_cleared_close_nothing() -> None:
    async def test(loop: _Clock) -> None:
        protocol, wire = await _connect(loop)
        for second in range(3 * int(HEADERS)):
            await _at(loop, second)  # a request a second: each clears what the last set
            assert not wire.closed
            assert (await wire.answer(protocol, GET)).startswith(b"HTTP/1.1 204 ")
        await _at(loop, 3 * HEADERS - 1 + KEEP_ALIVE - 0.1)
        assert not wire.closed
        await _at(loop, 3 * HEADERS - 1 + KEEP_ALIVE + 0.1)
        assert wire.closed  # the last answer's keep-alive
        protocol.connection_lost(None)

    _run(test)


def test_a_closed_connection_leaves_no_timer_holding_its_protocol() -> None:
    async def test(loop: _Clock) -> None:
        protocol, wire = await _connect(loop)
        assert (await wire.answer(protocol, GET)).startswith(b"HTTP/1.1 204 ")
        protocol.data_received(b"GET /healthz HTTP/1.1\r\n")  # a header deadline armed
        protocol.connection_lost(None)
        gone = weakref.ref(protocol)
        del protocol
        gc.collect()
        assert gone() is None

    _run(test)
