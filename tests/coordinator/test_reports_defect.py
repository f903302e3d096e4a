"""A defect in one report of a batch answers 500 only once the other reports settled.

Store errors are answered in each report's place; anything else is a defect, and
the request is a 500. Before, the first defect was raised at once while the
other reports' writes ran on unawaited: a completion could land after the 500 was
answered. Fails on the old code on memory, SQLite and the Cosmos-protocol server
(the batch is over while the other completion is still held).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_coordinator.services.reports import Action, Report, apply_reports

from tests.support.held import GUARD

from .conftest import Api

_TURNS = 5
"""Loop turns after which the old code had raised (it needs two); asyncio runs FIFO."""


async def test_a_defect_in_one_report_waits_for_the_others(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch raises the defect after the other completion landed, not before."""
    agent_id, headers = await api.agent(capacity=2)
    first = (await api.enqueue())["id"]
    api.clock.advance(0.01)
    second = (await api.enqueue())["id"]
    leases = {lease["job"]["id"]: lease for lease in await api.claim(headers, max_jobs=2)}
    store = api.co.jobs.inner
    update = store.update_if_match
    held, go = asyncio.Event(), asyncio.Event()

    async def first_held_second_broken(doc_id: str, *args: Any) -> Any:
        if doc_id == second:
            raise RuntimeError("a defect")
        held.set()
        await go.wait()
        return await update(doc_id, *args)

    monkeypatch.setattr(store, "update_if_match", first_held_second_broken)
    reports = [
        Report(job_id=job_id, epoch=leases[job_id]["lease"]["epoch"], action=Action.COMPLETE)
        for job_id in (first, second)
    ]
    task = asyncio.create_task(apply_reports(api.co, agent_id, reports))
    async with asyncio.timeout(GUARD):
        await held.wait()
    for _ in range(_TURNS):
        await asyncio.sleep(0)
    assert not task.done(), "the batch ended while a report's write was still running"
    go.set()
    with pytest.raises(RuntimeError):
        async with asyncio.timeout(GUARD):
            await task
    monkeypatch.setattr(store, "update_if_match", update)
    assert (await api.job(first))["status"] == "succeeded"
