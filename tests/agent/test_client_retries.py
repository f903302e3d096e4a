"""What the agent client retries: outages (429/503, refused connections), never a bug (500)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fleet_agent import AgentClient, CoordinatorUnavailable, ServerError, Worker
from fleet_agent.errors import raise_for_answer, retry_unavailable


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": code, "details": {}}}
    return httpx.Response(status, json=body, headers=headers)


def _scripted(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


async def test_an_internal_error_is_raised_at_once_and_not_retried() -> None:
    """A 500 internal_error is a coordinator bug: one request, then ServerError."""
    seen: list[httpx.Request] = []
    transport = _scripted([_error(500, "internal_error"), httpx.Response(200)], seen)
    async with AgentClient("http://coordinator", "t", transport=transport) as client:
        with pytest.raises(ServerError) as raised:
            await client.claim()
    assert (raised.value.status, raised.value.code) == (500, "internal_error")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("status", "code"), [(503, "store_unavailable"), (429, "too_many_long_polls")]
)
async def test_an_outage_is_retried_until_it_answers(status: int, code: str) -> None:
    """503 and 429 are retried (here after the Retry-After of 0 they carry) until a 200."""
    seen: list[httpx.Request] = []
    answers = [_error(status, code, {"Retry-After": "0"}), httpx.Response(200, json={"leases": []})]
    async with AgentClient("http://coordinator", "t", transport=_scripted(answers, seen)) as client:
        claimed = await client.claim()
    assert claimed == []
    assert len(seen) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_the_wait_before_a_retry_is_the_answers_retry_after(status: int) -> None:
    """An outage answer with Retry-After is waited for that long; without one, backoff."""
    with pytest.raises(CoordinatorUnavailable) as raised:
        raise_for_answer(_error(status, "unavailable", {"Retry-After": "7"}))
    assert raised.value.retry_after == 7.0
    assert retry_unavailable(raised.value) == 7.0
    with pytest.raises(CoordinatorUnavailable) as plain:
        raise_for_answer(_error(status, "unavailable"))
    assert retry_unavailable(plain.value) is True


def test_a_bug_or_a_refusal_is_never_a_reason_to_retry() -> None:
    """ServerError and other refusals answer False to the retry predicate."""
    with pytest.raises(ServerError) as raised:
        raise_for_answer(_error(500, "internal_error"))
    assert retry_unavailable(raised.value) is False
    assert retry_unavailable(ValueError("x")) is False


async def test_a_worker_keeps_claiming_after_an_internal_error() -> None:
    """A 500 on a claim is not retried by the client, but the Worker claims again after it."""
    claims = 0
    third = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal claims
        claims += 1
        # An empty answer at once is a busy loop without a real server's I/O: yield to
        # the test's task as a socket read would.
        await asyncio.sleep(0)
        if claims == 3:
            third.set()
        if claims == 2:
            return _error(500, "internal_error")
        return httpx.Response(200, json={"leases": []})

    transport = httpx.MockTransport(handle)
    async with AgentClient("http://coordinator", "t", transport=transport) as client:
        worker = Worker(client, {}, wait_seconds=0)
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(third.wait(), 10)
        worker.stop()
        await asyncio.wait_for(running, 10)  # stopped cleanly: the 500 did not end it
    assert claims >= 3
