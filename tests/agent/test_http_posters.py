"""The agent's two HTTP paths (its own connections by default, httpx with a transport) behave alike.

Both talk to one scripted server on a real socket: the same answers must give the
same results, the same exceptions and the same retries, and the request must be
the same bytes on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fleet_agent import AgentClient, CoordinatorUnavailable, LeaseLost, ServerError

Script = Callable[[web.Request], web.StreamResponse]


@dataclass
class Scripted:
    """A server answering each request with the next scripted answer."""

    url: str
    answers: list[Callable[[], Any]] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Callable[[], Any]:
    return lambda: web.json_response(body, status=status, headers=headers)


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> Callable[[], Any]:
    return _json(status, {"error": {"code": code, "message": code, "details": {}}}, headers)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """The scripted server, on 127.0.0.1."""
    state = Scripted(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        state.seen.append((request.path, dict(request.headers), await request.read()))
        answer = state.answers.pop(0)()
        if answer == "drop":  # close the connection without a word
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if isinstance(answer, float):  # answer late
            await asyncio.sleep(answer)
            return web.json_response({"leases": []})
        assert isinstance(answer, web.StreamResponse)
        return answer

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


def _client(kind: str, url: str) -> AgentClient:
    if kind == "own":
        return AgentClient(url, "fa.token", retry_timeout=5)
    return AgentClient(url, "fa.token", transport=httpx.AsyncHTTPTransport(), retry_timeout=5)


KINDS = ["own", "httpx"]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_same_request_goes_out_and_the_answer_comes_back(
    kind: str, scripted: Scripted
) -> None:
    """Path, bearer token, JSON content type and compact JSON body; the answer decoded."""
    scripted.answers.append(_json(200, {"leases": []}))
    async with _client(kind, scripted.url) as client:
        assert await client.claim(queues=["é"], max_jobs=2) == []
    [(path, headers, body)] = scripted.seen
    assert path == "/v1/claims"
    assert headers["Authorization"] == "Bearer fa.token"
    assert headers["Content-Type"] == "application/json"
    assert body == '{"max_jobs":2,"wait_seconds":0,"queues":["é"]}'.encode()
    assert json.loads(body) == {"max_jobs": 2, "wait_seconds": 0, "queues": ["é"]}


@pytest.mark.parametrize("kind", KINDS)
async def test_refusals_raise_the_same_errors(kind: str, scripted: Scripted) -> None:
    """500 is a ServerError at once; 409 lease_lost is LeaseLost; neither is retried."""
    scripted.answers += [_error(500, "internal_error"), _error(409, "lease_lost")]
    async with _client(kind, scripted.url) as client:
        with pytest.raises(ServerError):
            await client.claim()
        with pytest.raises(LeaseLost) as lost:
            await client.complete("j1", 1)
    assert (lost.value.status, lost.value.code) == (409, "lease_lost")
    assert len(scripted.seen) == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_an_outage_or_a_dropped_connection_is_retried(kind: str, scripted: Scripted) -> None:
    """503 with Retry-After, then a connection closed unanswered, then the answer."""
    scripted.answers += [
        _error(503, "store_unavailable", {"Retry-After": "0"}),
        lambda: "drop",
        _json(200, {"leases": []}),
    ]
    async with _client(kind, scripted.url) as client:
        assert await client.claim() == []
    assert len(scripted.seen) == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_an_answer_later_than_the_request_timeout_is_unavailable(
    kind: str, scripted: Scripted
) -> None:
    """No answer within the request's time: CoordinatorUnavailable once the budget is spent."""
    scripted.answers += [lambda: 2.0] * 3
    async with _client(kind, scripted.url) as client:
        with pytest.raises(CoordinatorUnavailable, match="cannot reach the coordinator"):
            await client._call("/v1/claims", {}, request_timeout=0.2, retry_timeout=0.3)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_first_try_refused_for_now_waits_retry_after_before_the_next(
    kind: str, scripted: Scripted
) -> None:
    """The first try goes out without the retry loop; its 503 still gets the loop's wait."""
    scripted.answers += [
        _error(503, "store_unavailable", {"Retry-After": "0.3"}),
        _json(200, {"leases": []}),
    ]
    loop = asyncio.get_running_loop()
    arrived: list[float] = []

    def noted(answer: Callable[[], Any]) -> Callable[[], Any]:
        def note() -> Any:
            arrived.append(loop.time())
            return answer()

        return note

    scripted.answers[:] = [noted(a) for a in scripted.answers]
    async with _client(kind, scripted.url) as client:
        assert await client.claim() == []
    assert len(arrived) == 2
    assert arrived[1] - arrived[0] >= 0.3
