"""A long-poll's claim cancelled mid-round (its client hung up) answers nobody: it gives back.

A claim that may wait is cancelled when its client disconnects
(``api/disconnects.py``), wherever it is: also with one of its lease writes landed
and another still in flight. The leases written then would be answered to
nobody; each would wait out its lease and spend an attempt (with one attempt
allowed, the job would fail without ever running). The round now runs to its
end, and the jobs it leased are released: requeued at once, the attempt not
counted. Fails on the code before the fix: the first job stays leased to an
agent that was never told.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_coordinator.services.claims import wait_and_claim

from tests.support.held import GUARD

from .conftest import Api


async def test_a_long_poll_cancelled_mid_round_releases_the_jobs_it_leased(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both jobs end up queued, no attempt counted; the agent's slots are free."""
    agent_id, headers = await api.agent(capacity=2)
    first = (await api.enqueue(max_attempts=1))["id"]
    api.clock.advance(0.01)
    second = (await api.enqueue(max_attempts=1))["id"]
    store = api.co.jobs.inner  # below the boundary, looked up per call
    update = store.update_if_match
    first_written, second_entered, second_go = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def the_second_waits(doc_id: str, *args: Any) -> Any:
        if doc_id == second:
            second_entered.set()
            await second_go.wait()
        result = await update(doc_id, *args)
        if doc_id == first:
            first_written.set()
        return result

    monkeypatch.setattr(store, "update_if_match", the_second_waits)
    agent = await api.co.agent_docs.read(agent_id, fresh=True)
    assert agent is not None
    task = asyncio.create_task(wait_and_claim(api.co, agent, None, 2, wait_seconds=5))
    async with asyncio.timeout(GUARD):
        await first_written.wait()
        await second_entered.wait()
    task.cancel()  # the client hung up: the first lease is written, the second in flight
    second_go.set()
    async with asyncio.timeout(GUARD):
        await asyncio.wait([task])
    assert task.cancelled()
    monkeypatch.setattr(store, "update_if_match", update)

    for job_id in (first, second):
        job = await api.job(job_id)
        assert job["status"] == "queued", job
        assert job["attempts"] == 0, job
    r = await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.json()["live_leases"] == 0
    # Claimed again at once, by the agent that asks next.
    again = await api.claim(headers, max_jobs=2)
    assert sorted(lease["job"]["id"] for lease in again) == sorted([first, second])
