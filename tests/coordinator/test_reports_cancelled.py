"""Reports cancelled after their lease ended in the store, while its lock is being freed.

A batched report with a long-polling claim is cancelled wherever it is waiting when
its client hangs up (``api/disconnects.py``), also after an item's write ended a
lease, while ``lease_ended`` frees that job's lock. The lease did end: the agent's
slot is free on this replica, the claims waiting here are woken for a requeued job,
and the end is counted and logged, as if the report had not been cancelled. Fails
on the code before the fix: the slot stays taken, the waiters sleep on, and the
metric and the log line are missing.
"""

from __future__ import annotations

import asyncio

import pytest
from fleet_coordinator.services.reports import Action, Report, apply_reports
from structlog.testing import capture_logs

from tests.support.held import GUARD, Held

from .conftest import Api


async def test_a_release_cancelled_while_freeing_its_lock_still_ends_the_lease_here(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot is free, waiters are woken, the end is counted and logged; the job is claimable."""
    agent_id, headers = await api.agent(capacity=1)
    job = await api.enqueue(queue="q", lock="L")
    [leased] = await api.claim(headers, queues=["q"])
    held = Held(api.co.locks, "get")
    monkeypatch.setattr(api.co, "locks", held)
    generation = api.co.notifier.generation
    report = Report(job_id=job["id"], epoch=leased["lease"]["epoch"], action=Action.RELEASE)
    with capture_logs() as logs:
        task = asyncio.create_task(apply_reports(api.co, agent_id, [report]))
        async with asyncio.timeout(GUARD):
            await held.entered.wait()  # the release is written; its lock is being freed
        task.cancel()
        await asyncio.wait([task])
    assert task.cancelled()
    monkeypatch.setattr(api.co, "locks", held.inner)
    held.release.set()

    assert (await api.job(job["id"]))["status"] == "queued"
    r = await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.json()["live_leases"] == 0
    assert api.co.notifier.generation > generation
    sample = api.co.metrics.registry.get_sample_value
    finished = {"op": "released", "status": "queued"}
    assert sample("fleet_jobs_finished_total", finished) == 1
    assert [e for e in logs if e["event"] == "coordinator.job.released"]
    # The lock its holder left behind is free: the job is claimed again at once.
    async with asyncio.timeout(GUARD):
        [again] = await api.claim(headers, queues=["q"])
    assert again["job"]["id"] == job["id"]
    assert again["lease"]["epoch"] == leased["lease"]["epoch"] + 1
