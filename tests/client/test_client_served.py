"""Both clients against a real ``fleet-coordinator serve`` process on SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fleet_client import Conflict, FleetClient, JobSpec, NotFound, SyncFleetClient

from tests.support.served import Served


def test_the_sync_client_enqueues_reads_lists_and_cancels(served: Served) -> None:
    """The blocking twin does over a socket what the async client does."""
    queue = f"sync{uuid.uuid4().hex[:8]}"
    with SyncFleetClient(served.base_url, served.admin_token) as fleet:
        later = datetime.now(UTC) + timedelta(minutes=5)
        job = fleet.enqueue(
            "mail", {"to": "a"}, queue=queue, run_after=later, idempotency_key=queue
        )
        assert (
            fleet.enqueue(
                "mail", {"to": "a"}, queue=queue, run_after=later, idempotency_key=queue
            ).id
            == job.id
        )
        second = fleet.enqueue_spec({"kind": "mail", "queue": queue, "priority": 9})
        assert [j.id for j in fleet.list_jobs(queue=queue, page_size=1)] == [job.id, second.id]
        assert fleet.get_job(job.id).runs == []
        assert fleet.cancel_job(job.id).status == "cancelled"
        with pytest.raises(Conflict):
            fleet.cancel_job(job.id)
        [entry] = [q for q in fleet.list_queues() if q.queue == queue]
        assert (entry.queued, entry.cancelled) == (1, 1)
        agent = fleet.create_agent("sync-agent", capacity=2).agent
        assert fleet.drain_agent(agent.id).draining
        fleet.delete_agent(agent.id)
        with pytest.raises(NotFound):
            fleet.get_agent(agent.id)


async def test_the_async_client_enqueues_thousands_and_pages_through_them(served: Served) -> None:
    """2,500 jobs go in three batches and come back through the cursor pages in order."""
    queue = f"bulk{uuid.uuid4().hex[:8]}"
    async with FleetClient(served.base_url, served.admin_token) as fleet:
        made = await fleet.enqueue_many(
            JobSpec(kind="n", payload={"i": i}, queue=queue) for i in range(2500)
        )
        seen = [job.id async for job in fleet.list_jobs(queue=queue, page_size=1000)]
    assert seen == [job.id for job in made]
