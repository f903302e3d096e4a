"""``serve``'s protocol refuses what is not a bounded HTTP/1.1 request, in the API's error shape.

Driven with raw bytes in process (``tests/support/raw_http.py``); the same limits
over real sockets, with slow clients, are ``test_serve_slow_clients.py``'s.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fleet_coordinator.protocol import MAX_HEADER_BYTES, MAX_QUEUED, PARSE_SLICE

from tests.support.raw_http import Collector, connect


class _App:
    """Answers 204 to every request it is given, and counts them."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _get(header_bytes: int) -> bytes:
    """A GET whose one ``x-big`` header makes its headers ``header_bytes`` long, about."""
    return b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: %s\r\n\r\n" % (b"a" * header_bytes)


async def _closed_with(data: bytes) -> tuple[int, dict[str, Any], _App]:
    """Feed ``data`` in one read: the status and error the protocol answered before closing."""
    app = _App()
    protocol, wire = connect(app)
    protocol.data_received(data)
    assert wire.closed  # a refusal is written and closed at once, with no turn between
    head, _, body = wire.data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    protocol.connection_lost(None)
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"], app


async def test_headers_over_the_limit_within_one_read_get_431_and_never_reach_the_app() -> None:
    """Headers that end in the same read as they began were not counted (it was a 200)."""
    status, error, app = await _closed_with(_get(MAX_HEADER_BYTES + 1))
    assert (status, error["code"], error["details"]) == (
        431,
        "headers_too_large",
        {"limit": MAX_HEADER_BYTES},
    )
    assert app.calls == 0


async def test_a_url_over_the_limit_gets_431() -> None:
    status, error, app = await _closed_with(
        b"GET /v1/jobs?kind=%s HTTP/1.1\r\nhost: x\r\n\r\n" % (b"k" * MAX_HEADER_BYTES)
    )
    assert (status, error["code"], app.calls) == (431, "headers_too_large", 0)


async def test_headers_under_the_limit_are_served() -> None:
    app = _App()
    protocol, wire = connect(app)
    answer = await wire.answer(protocol, _get(MAX_HEADER_BYTES - 100))
    assert answer.startswith(b"HTTP/1.1 204 ")
    assert app.calls == 1
    assert not wire.closed
    protocol.connection_lost(None)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-hello"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
        pytest.param(b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", id="negative-length"),
        pytest.param(
            b"POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n", id="obs-fold"),
        # httptools reads these versions, and they were served as HTTP/1.1.
        pytest.param(b"GET /healthz HTTP/2.0\r\nhost: x\r\n\r\n", id="version-2.0"),
        pytest.param(b"GET /healthz HTTP/0.9\r\nhost: x\r\n\r\n", id="version-0.9"),
        pytest.param(b"GET /healthz HTTP/1.2\r\nhost: x\r\n\r\n", id="version-1.2"),
    ],
)
async def test_bytes_that_are_not_http_get_400_in_the_error_shape(data: bytes) -> None:
    """uvicorn's own answer here is text/plain; the API's clients expect its error shape."""
    status, error, app = await _closed_with(data)
    assert (status, error["code"], app.calls) == (400, "bad_request", 0)
    assert error["message"] == "the request is not valid HTTP/1.1"


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "over-two-reads"])
async def test_headers_over_the_limit_behind_a_pipelined_request_get_431(split: bool) -> None:
    """A request that begins in the middle of a read, behind another, is bounded too; the
    one before it is answered first."""
    app = _App()
    protocol, wire = connect(app)
    data = _get(10) + _get(MAX_HEADER_BYTES + 1)
    reads = [data[: len(data) // 2], data[len(data) // 2 :]] if split else [data]
    wire.whole = asyncio.get_running_loop().create_future()
    for read in reads:
        protocol.data_received(read)
    assert not wire.closed  # the first request's answer is owed
    assert (await wire.whole).startswith(b"HTTP/1.1 204 ")
    assert wire.closed
    assert wire.data.startswith(b"HTTP/1.1 431 ")
    assert app.calls == 1
    protocol.connection_lost(None)


async def test_bytes_that_are_not_http_in_the_body_being_read_get_400_at_once() -> None:
    """A refusal waits only for answers to whole requests: the request whose body is
    broken gets its 400 at once, its app a disconnect."""
    app = _App()
    protocol, wire = connect(app)
    protocol.data_received(
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n"
    )
    assert wire.closed
    assert wire.data.startswith(b"HTTP/1.1 400 ")
    protocol.connection_lost(None)


async def test_a_read_of_pipelined_requests_is_parsed_only_as_fast_as_they_are_answered() -> None:
    """One read of 2,000 pipelined requests queues about ``MAX_QUEUED`` request cycles
    (~1 KiB each, where the read holds 34 bytes a request; the queue is checked between
    slices of the read); the rest waits as bytes and is parsed as answers make room,
    until every request is answered in order.

    Before, the whole read was parsed at once: 2,000 cycles queued here, and ~9 MiB a
    connection of 256 KiB reads over real sockets.
    """
    done = asyncio.Event()
    total = 2000

    class _Counting(_App):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await super().__call__(scope, receive, send)
            if self.calls == total:
                done.set()

    app = _Counting()
    protocol, wire = connect(app)
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n" * total)
    request = len(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    assert MAX_QUEUED <= len(protocol.pipeline) <= MAX_QUEUED + PARSE_SLICE // request  # not 1,999
    await asyncio.wait_for(done.wait(), 30)
    assert wire.data.count(b"HTTP/1.1 204 ") == total
    assert not protocol.pipeline
    protocol.connection_lost(None)


class _HeadCollector(Collector):
    """Wakes the waiter once an answer's head is written (a HEAD answer has no body)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)
        if b"\r\n\r\n" in self.data and self.whole is not None and not self.whole.done():
            self.whole.set_result(self.data)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/healthz", None, 200),
        ("/v1/queues", "admin-token-for-head-0123456789ab", 200),
        ("/v1/queues", None, 401),
        ("/v1/reports", "admin-token-for-head-0123456789ab", 405),
    ],
)
async def test_head_is_served_as_the_get_of_the_path_without_a_body(
    path: str, token: str | None, status: int
) -> None:
    """RFC 9110: HEAD wherever GET is served (load balancers probe ``/healthz`` so); it was
    a 405 everywhere. The GET's token check holds, and the answer carries no body."""
    from fleet_coordinator import Settings, create_app

    admin = "admin-token-for-head-0123456789ab"
    app: Any = create_app(Settings(store_url="memory://", admin_token=admin, reaper_enabled=False))
    async with app.router.lifespan_context(app):
        protocol, head = connect(app, collector=_HeadCollector())
        auth = b"" if token is None else b"authorization: Bearer %s\r\n" % token.encode()
        answer = await head.answer(
            protocol, b"HEAD %s HTTP/1.1\r\nhost: x\r\n%s\r\n" % (path.encode(), auth)
        )
        protocol.connection_lost(None)
    lines, _, body = answer.partition(b"\r\n\r\n")
    assert int(lines.split(b" ", 2)[1]) == status, answer
    assert body == b""
    if status == 200:
        assert b"content-length: 0" not in lines.lower()  # the GET's length, not the body's
