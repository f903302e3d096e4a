"""FleetClient against the coordinator app in-process: every endpoint that exists on main."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fleet_client import (
    Conflict,
    CoordinatorUnavailable,
    FleetClient,
    JobSpec,
    NotFound,
    RequestRejected,
    Unauthorized,
)
from pydantic import ValidationError

from .conftest import client_of


async def test_enqueue_returns_a_typed_job_with_its_fields(fleet: FleetClient) -> None:
    """An enqueue answers a ``Job`` carrying queue, priority, requires and run_after."""
    later = datetime.now(UTC) + timedelta(hours=1)
    job = await fleet.enqueue(
        "resize",
        {"width": 640},
        queue="images",
        priority=5,
        max_attempts=2,
        run_after=later,
        requires={"gpu": "yes"},
    )
    assert (job.kind, job.payload, job.queue, job.priority) == (
        "resize",
        {"width": 640},
        "images",
        5,
    )
    assert (job.status, job.max_attempts, job.requires) == ("queued", 2, {"gpu": "yes"})
    assert abs((job.run_after - later).total_seconds()) < 0.001
    assert not job.is_terminal


async def test_an_idempotency_key_returns_the_same_job_and_a_different_body_conflicts(
    fleet: FleetClient,
) -> None:
    """The same key and body give the same job; the same key with another body is Conflict."""
    first = await fleet.enqueue("mail", {"to": "a"}, idempotency_key="order-1")
    again = await fleet.enqueue("mail", {"to": "a"}, idempotency_key="order-1")
    assert again.id == first.id
    with pytest.raises(Conflict) as caught:
        await fleet.enqueue("mail", {"to": "b"}, idempotency_key="order-1")
    assert (caught.value.status, caught.value.code) == (409, "idempotency_conflict")


async def test_a_naive_run_after_is_refused_before_anything_is_sent(fleet: FleetClient) -> None:
    """``run_after`` must carry a time zone: a naive datetime fails validation locally."""
    with pytest.raises(ValidationError):
        await fleet.enqueue("x", run_after=datetime(2030, 1, 1))


async def test_enqueue_many_sends_batches_of_a_thousand(app: FastAPI) -> None:
    """1,500 jobs go out as two batch requests and come back in order."""
    client, transport = client_of(app)
    async with client:
        jobs = await client.enqueue_many(
            JobSpec(kind="n", payload={"i": i}, queue="many") for i in range(1500)
        )
    assert [j.payload["i"] for j in jobs] == list(range(1500))
    assert [r.url.path for r in transport.requests] == ["/v1/jobs/batch"] * 2


async def test_an_invalid_job_rejects_the_whole_batch(fleet: FleetClient) -> None:
    """One job the coordinator refuses fails the batch with 422 and enqueues nothing."""
    with pytest.raises(RequestRejected) as caught:
        await fleet.enqueue_batch(
            [{"kind": "ok", "queue": "b"}, {"kind": "bad", "max_attempts": 0}]
        )
    assert caught.value.status == 422
    assert [q.queue for q in await fleet.list_queues() if q.queued] == []


async def test_get_job_has_runs_and_an_unknown_id_is_not_found(fleet: FleetClient) -> None:
    """``get_job`` answers a JobDetail; an unknown id raises NotFound (a RequestRejected)."""
    job = await fleet.enqueue("x")
    detail = await fleet.get_job(job.id)
    assert (detail.id, detail.runs) == (job.id, [])
    with pytest.raises(NotFound) as caught:
        await fleet.get_job("no-such-job")
    assert isinstance(caught.value, RequestRejected)
    assert caught.value.code == "not_found"


async def test_list_jobs_iterates_over_every_page(app: FastAPI) -> None:
    """The iterator follows cursors: 5 jobs in pages of 2 take 3 requests, oldest first."""
    client, transport = client_of(app)
    async with client:
        made = [(await client.enqueue("p", {"i": i}, queue="paged")).id for i in range(5)]
        transport.requests.clear()
        seen = [job.id async for job in client.list_jobs(queue="paged", page_size=2)]
    assert seen == made
    assert len(transport.requests) == 3
    assert transport.requests[0].url.params["queue"] == "paged"


async def test_list_jobs_filters_by_status(fleet: FleetClient) -> None:
    """A status filter returns only jobs in that status."""
    keep = await fleet.enqueue("s", queue="st")
    gone = await fleet.enqueue("s", queue="st")
    await fleet.cancel_job(gone.id)
    queued = [j.id async for j in fleet.list_jobs(queue="st", status="queued")]
    page = await fleet.list_jobs_page(queue="st", status="cancelled", limit=10)
    assert (queued, [j.id for j in page.items], page.next_cursor) == ([keep.id], [gone.id], None)


async def test_cancel_then_retry_and_the_conflicts_scripts_can_catch(fleet: FleetClient) -> None:
    """Cancel ends a queued job, retry requeues it; repeating either is Conflict."""
    job = await fleet.enqueue("c")
    assert (await fleet.cancel_job(job.id)).status == "cancelled"
    with pytest.raises(Conflict):
        await fleet.cancel_job(job.id)
    retried = await fleet.retry_job(job.id)
    assert retried.status == "queued"
    with pytest.raises(Conflict):
        await fleet.retry_job(job.id)


async def test_queues_list_their_counts(fleet: FleetClient) -> None:
    """``list_queues`` answers typed entries with counts per status."""
    await fleet.enqueue("q", queue="counted")
    await fleet.enqueue("q", queue="counted")
    [entry] = [q for q in await fleet.list_queues() if q.queue == "counted"]
    assert (entry.queued, entry.leased, entry.paused) == (2, 0, False)


async def test_agents_are_created_listed_drained_and_deleted(fleet: FleetClient) -> None:
    """An agent's token comes once and is not in its repr; delete twice is not an error."""
    created = await fleet.create_agent("builder", labels={"os": "linux"}, capacity=4, queues=["b"])
    assert created.token
    assert created.token not in repr(created)
    agent = created.agent
    assert (agent.name, agent.capacity, agent.labels, agent.queues) == (
        "builder",
        4,
        {"os": "linux"},
        ["b"],
    )
    assert [a.id for a in await fleet.list_agents()] == [agent.id]
    assert (await fleet.drain_agent(agent.id)).draining is True
    assert (await fleet.get_agent(agent.id)).draining is True
    await fleet.delete_agent(agent.id)
    await fleet.delete_agent(agent.id)
    with pytest.raises(NotFound):
        await fleet.get_agent(agent.id)


async def test_a_wrong_token_is_unauthorized(app: FastAPI) -> None:
    """An unknown token raises Unauthorized with the status the coordinator gave."""
    client, _ = client_of(app, token="not-the-admin-token")
    async with client:
        with pytest.raises(Unauthorized) as caught:
            await client.list_queues()
    assert caught.value.status == 401


async def test_an_agent_token_is_unauthorized_on_admin_calls(
    fleet: FleetClient, app: FastAPI
) -> None:
    """An agent's token on an admin endpoint is refused (403) as Unauthorized."""
    token = (await fleet.create_agent("a")).token
    client, _ = client_of(app, token=token)
    async with client:
        with pytest.raises(Unauthorized) as caught:
            await client.enqueue("x")
    assert caught.value.status == 403


async def test_a_keyed_enqueue_is_retried_through_refused_connections(app: FastAPI) -> None:
    """With an idempotency key, refused connections are retried until the job is enqueued."""
    client, transport = client_of(app, refuse=2)
    async with client:
        job = await client.enqueue("r", idempotency_key="retry-me")
    assert len(transport.requests) == 3
    assert job.status == "queued"


async def test_an_enqueue_without_a_key_is_sent_once(app: FastAPI) -> None:
    """Without an idempotency key a failed enqueue is not repeated: it could land twice."""
    client, transport = client_of(app, refuse=1)
    async with client:
        with pytest.raises(CoordinatorUnavailable):
            await client.enqueue("r")
    assert len(transport.requests) == 1


async def test_a_batch_is_retried_only_when_every_job_has_a_key(app: FastAPI) -> None:
    """A batch with one unkeyed job is sent once; a fully keyed one is retried."""
    client, transport = client_of(app, refuse=1)
    async with client:
        with pytest.raises(CoordinatorUnavailable):
            await client.enqueue_batch([{"kind": "a", "idempotency_key": "k1"}, {"kind": "b"}])
        transport.refuse = 1
        jobs = await client.enqueue_batch([{"kind": "a", "idempotency_key": "k1"}])
    assert len(transport.requests) == 3
    assert jobs[0].kind == "a"


async def test_cancel_is_not_retried(app: FastAPI) -> None:
    """A cancel whose connection failed is not repeated (a landed cancel would then conflict)."""
    client, transport = client_of(app)
    async with client:
        job = await client.enqueue("c")
        transport.refuse = 1
        with pytest.raises(CoordinatorUnavailable):
            await client.cancel_job(job.id)
    assert len(transport.requests) == 2


async def test_reads_are_retried(app: FastAPI) -> None:
    """A read retries refused connections."""
    client, transport = client_of(app, refuse=3)
    async with client:
        assert await client.list_agents() == []
    assert len(transport.requests) == 4
