"""FleetClient on the SPEC's endpoints main does not serve yet, through a SPEC-shaped fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fleet_client import (
    CoordinatorUnavailable,
    FleetClient,
    JobSpec,
    NotFound,
    RequestRejected,
    ServerError,
)

from .spec_fake import SpecFake, job


@pytest.fixture
def fake() -> SpecFake:
    """An empty fake coordinator."""
    return SpecFake()


@pytest.fixture
async def fleet(fake: SpecFake) -> AsyncIterator[FleetClient]:
    """A client of the fake."""
    transport = httpx.MockTransport(fake.handle)
    async with FleetClient("http://fake", "token", transport=transport) as client:
        yield client


async def test_a_lock_travels_with_the_job(fleet: FleetClient, fake: SpecFake) -> None:
    """``lock`` is sent in the enqueue body and read back from the answer."""
    made = await fleet.enqueue("deploy", {"app": "web"}, lock="deploy:web", priority=3)
    assert made.lock == "deploy:web"
    assert fake.seen[-1][2] == {
        "kind": "deploy",
        "payload": {"app": "web"},
        "lock": "deploy:web",
        "priority": 3,
    }


async def test_bulk_retry_sends_its_filters_and_answers_the_jobs(
    fleet: FleetClient, fake: SpecFake
) -> None:
    """``retry_jobs`` posts ``{status, queue?, kind?, limit}`` and returns the requeued jobs."""
    fake.jobs = {i: job(i, status="failed") for i in ("a", "b", "c")}
    retried = await fleet.retry_jobs(status="failed", queue="default", limit=2)
    assert [j.id for j in retried] == ["a", "b"]
    assert [j.status for j in retried] == ["queued", "queued"]
    assert fake.seen[-1] == (
        "POST",
        "/v1/jobs/retry",
        {"status": "failed", "queue": "default", "limit": 2},
    )


async def test_bulk_cancel_by_lock(fleet: FleetClient, fake: SpecFake) -> None:
    """``cancel_jobs(lock=…)`` cancels the matching jobs only."""
    fake.jobs = {"a": job("a", lock="l1"), "b": job("b", lock="l2")}
    cancelled = await fleet.cancel_jobs(lock="l1")
    assert [(j.id, j.status) for j in cancelled] == [("a", "cancelled")]
    assert fake.seen[-1] == ("POST", "/v1/jobs/cancel", {"lock": "l1", "limit": 100})


async def test_queues_pause_and_resume(fleet: FleetClient, fake: SpecFake) -> None:
    """Pause answers the queue's entry with ``paused`` set; resume clears it."""
    assert (await fleet.pause_queue("builds")).paused is True
    assert fake.paused == {"builds"}
    assert (await fleet.resume_queue("builds")).paused is False
    assert [s[:2] for s in fake.seen] == [
        ("POST", "/v1/queues/builds/pause"),
        ("POST", "/v1/queues/builds/resume"),
    ]


async def test_schedules_round_trip(fleet: FleetClient, fake: SpecFake) -> None:
    """A schedule is put, listed, paused, resumed, read and deleted (twice without error)."""
    spec = JobSpec(kind="report", payload={"day": "today"}, queue="reports")
    made = await fleet.set_schedule("nightly", "0 3 * * *", spec, timezone="Europe/Paris")
    assert (made.name, made.cron, made.timezone, made.paused) == (
        "nightly",
        "0 3 * * *",
        "Europe/Paris",
        False,
    )
    assert made.job == {"kind": "report", "payload": {"day": "today"}, "queue": "reports"}
    assert [s.name for s in await fleet.list_schedules()] == ["nightly"]
    assert (await fleet.pause_schedule("nightly")).paused is True
    assert (await fleet.resume_schedule("nightly")).paused is False
    assert (await fleet.get_schedule("nightly")).next_run_at is not None
    await fleet.delete_schedule("nightly")
    await fleet.delete_schedule("nightly")
    with pytest.raises(NotFound):
        await fleet.get_schedule("nightly")


async def test_a_bad_cron_is_rejected(fleet: FleetClient) -> None:
    """The coordinator's 422 for a cron without five fields surfaces as RequestRejected."""
    with pytest.raises(RequestRejected) as caught:
        await fleet.set_schedule("bad", "@daily", {"kind": "x"})
    assert caught.value.status == 422


async def test_names_are_escaped_in_paths() -> None:
    """A name with a slash or a question mark stays one path segment."""
    paths: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(204)

    async with FleetClient("http://fake", "t", transport=httpx.MockTransport(answer)) as client:
        await client.delete_schedule("a/b?c")
    assert paths == [b"/v1/schedules/a%2Fb%3Fc"]


async def test_a_503_is_retried_after_its_retry_after() -> None:
    """A read answered 503 with ``Retry-After`` is retried once the coordinator said to."""
    answers = [
        httpx.Response(503, headers={"Retry-After": "0"}, json=_unavailable()),
        httpx.Response(200, json={"items": []}),
    ]
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    async with FleetClient("http://fake", "t", transport=httpx.MockTransport(answer)) as client:
        assert await client.list_agents() == []
    assert seen == ["/v1/agents", "/v1/agents"]


def test_the_wait_is_the_retry_after_when_given() -> None:
    """The hook waits ``Retry-After`` seconds, else backs off as usual, and stops on others."""
    from fleet_client.calls import backoff

    told = CoordinatorUnavailable("503 store_unavailable: …")
    told.retry_after = 1.5
    assert backoff(told) == 1.5
    assert backoff(CoordinatorUnavailable("refused")) is True
    assert backoff(NotFound("404")) is False


@pytest.mark.parametrize(
    ("header", "wait"), [("3600", 2.0), ("1.5", 1.5), ("inf", True), ("nan", True), ("-3", 0.0)]
)
def test_a_retry_after_is_capped_at_the_longest_wait_and_must_be_finite(
    header: str, wait: bool | float
) -> None:
    """A proxy's ``Retry-After: 3600`` froze a call for an hour (stamina waits what the hook
    says, past its cap and the call's budget); ``inf`` hung it and ``nan`` skipped every
    wait (1,700 requests in 10 s). Now capped at the client's ``retry_wait_max``, and a
    value that is not a finite number is ignored (the usual backoff)."""
    from fleet_client.calls import backoff
    from fleet_wire import retry_after

    answered = httpx.Response(429, headers={"Retry-After": header})
    told = CoordinatorUnavailable("429 too_many_requests: …")
    told.retry_after = retry_after(answered)
    assert backoff(told, wait_max=2.0) == wait


async def test_a_long_retry_after_does_not_outlast_the_retry_timeout() -> None:
    """Every read answered 429 with ``Retry-After: 3600``: the call gives up within its
    ``retry_timeout`` and a wait, not after an hour."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(429, headers={"Retry-After": "3600"}, json=_unavailable())

    transport = httpx.MockTransport(answer)
    async with FleetClient(
        "http://fake", "t", transport=transport, retry_timeout=2.0, retry_wait_max=0.1
    ) as client:
        async with asyncio.timeout(10):
            with pytest.raises(CoordinatorUnavailable):
                await client.list_agents()
    assert len(seen) >= 2


async def test_a_500_is_a_server_error_and_not_retried() -> None:
    """A defect (500 internal_error) raises ServerError after one request."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        body = {"error": {"code": "internal_error", "message": "bug", "details": {}}}
        return httpx.Response(500, json=body)

    async with FleetClient("http://fake", "t", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(ServerError):
            await client.list_queues()
    assert len(seen) == 1


def _unavailable() -> dict[str, object]:
    return {"error": {"code": "store_unavailable", "message": "down", "details": {}}}
