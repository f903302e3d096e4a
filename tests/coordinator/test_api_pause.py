"""Pausing and resuming queues (SPEC semantics 10) over HTTP, on every provider."""

from __future__ import annotations

import asyncio

import pytest
from fleet_coordinator.services import refresh_paused

from .conftest import Api
from .test_api_bulk import two_replicas


async def _pause(api: Api, queue: str, action: str = "pause") -> dict[str, object]:
    r = await api.client.post(f"/v1/queues/{queue}/{action}", headers=api.admin)
    assert r.status_code == 200, r.text
    entry: dict[str, object] = r.json()
    return entry


async def test_a_paused_queue_hands_out_no_leases_until_resumed(api: Api) -> None:
    """Claims naming a paused queue, or naming none, get nothing from it; resume frees its jobs."""
    _, headers = await api.agent(capacity=5)
    held = await api.enqueue(queue="q")
    paused = await _pause(api, "q")
    assert paused["paused"] is True
    assert paused["queued"] == 1
    assert await api.claim(headers, queues=["q"]) == []
    assert await api.claim(headers) == []
    other = await api.enqueue(queue="other")
    assert [lease["job"]["id"] for lease in await api.claim(headers)] == [other["id"]]
    resumed = await _pause(api, "q", "resume")
    assert resumed["paused"] is False
    assert [lease["job"]["id"] for lease in await api.claim(headers)] == [held["id"]]


async def test_enqueues_and_held_leases_go_on_while_paused(api: Api) -> None:
    """A pause accepts enqueues and lets a held lease heartbeat and complete."""
    _, headers = await api.agent()
    job = await api.enqueue(queue="q")
    [lease] = await api.claim(headers)
    await _pause(api, "q")
    again = await api.enqueue(queue="q")
    assert again["status"] == "queued"
    hb = await api.client.post(
        f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers
    )
    assert hb.status_code == 200
    done = await api.client.post(
        f"/v1/jobs/{job['id']}/complete", json={"epoch": lease["lease"]["epoch"]}, headers=headers
    )
    assert done.json()["status"] == "succeeded"
    assert await api.claim(headers) == []


async def test_any_queue_name_may_be_paused_and_is_listed_with_zero_counts(api: Api) -> None:
    """Pausing a queue no job ever used lists it, paused, with zero counts."""
    await _pause(api, "empty-queue")
    items = (await api.client.get("/v1/queues", headers=api.admin)).json()["items"]
    assert items == [
        {
            "queue": "empty-queue",
            "paused": True,
            "queued": 0,
            "leased": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
            "oldest_queued_age_seconds": 0.0,
        }
    ]
    bad = await api.client.post("/v1/queues/no spaces/pause", headers=api.admin)
    assert bad.status_code == 422


async def test_pause_needs_the_admin_token(api: Api) -> None:
    """An agent token gets 403 on pause and nothing is paused."""
    _, headers = await api.agent()
    r = await api.client.post("/v1/queues/q/pause", headers=headers)
    assert r.status_code == 403
    assert (await api.client.get("/v1/queues", headers=api.admin)).json()["items"] == []


async def test_a_long_poll_waiting_on_a_paused_queue_gets_its_job_on_resume(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim long-polling while its queue is paused receives the job once it is resumed."""
    _, headers = await api.agent()
    job = await api.enqueue(queue="q")
    await _pause(api, "q")
    notifier = api.co.notifier
    generation = notifier.generation
    parked = asyncio.Event()
    wait = notifier.wait

    async def observed_wait(seconds: float, since: int, interval: float) -> bool:
        parked.set()  # the claim found nothing and now waits
        return await wait(seconds, since, interval)

    monkeypatch.setattr(notifier, "wait", observed_wait)
    waiting = asyncio.create_task(api.claim(headers, queues=["q"], wait_seconds=10))
    await asyncio.wait_for(parked.wait(), 10)
    assert not waiting.done()
    await _pause(api, "q", "resume")
    assert api.co.notifier.generation > generation
    [lease] = await asyncio.wait_for(waiting, 10)
    assert lease["job"]["id"] == job["id"]


async def test_a_pause_on_one_replica_stops_claims_on_another_after_its_tick(
    api: Api,
) -> None:
    """Replica B stops leasing from a queue paused on replica A once B's reaper tick re-reads."""
    async with two_replicas(api) as (a, b):
        _, headers = await a.agent(capacity=3)
        await a.enqueue(queue="q")
        await _pause(a, "q")
        await refresh_paused(b.co)  # what B's reaper does every interval
        assert await b.claim(headers, queues=["q"]) == []
        assert await b.claim(headers) == []
        await _pause(a, "q", "resume")
        await refresh_paused(b.co)
        assert len(await b.claim(headers)) == 1


async def test_a_pause_written_before_an_outage_is_honoured_and_logged_here(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker is written, then the store fails the refresh: 503, yet this replica pauses.

    Before, the answer was the same 503 but the replica kept handing out the queue's
    jobs until its next reaper tick, and the pause was never logged.
    """
    from fleet_datastore import StoreUnavailableError
    from structlog.testing import capture_logs

    _, headers = await api.agent()
    await api.enqueue(queue="q")
    agents = api.co.agents.inner

    async def outage(*_: object) -> object:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(agents, "query", outage)
    with capture_logs() as logs:
        r = await api.client.post("/v1/queues/q/pause", headers=api.admin)
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert [e["queue"] for e in logs if e["event"] == "coordinator.queue.paused"] == ["q"]
    assert await api.claim(headers, queues=["q"]) == []
    assert await api.claim(headers) == []
