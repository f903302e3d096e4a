"""Concurrent claims lease a lock's jobs in SPEC order (SPEC 9: order 5 within one lock).

Found by a black-box audit on the Cosmos-protocol server: a claim handed a lock's
older job waited on the store while a concurrent claim, handed the lock's next job,
took the lock first; the first then found the lock held and left its job queued,
so the younger job ran first. Each test holds one claim at the lock's read
(``Held``) to make that interleaving certain, and fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from fleet_coordinator.errors import UnavailableError
from fleet_coordinator.services.locks import head_query
from fleet_coordinator.store import JOBS_SPEC
from fleet_datastore import Page, Query
from fleet_datastore.providers.sqlite_sql import query_branches, schema_sql
from fleet_datastore.query import plan_query

from tests.support.held import GUARD, Held

from .conftest import Api
from .replicas import PROVIDERS, replicas
from .test_api_costs import count_requests


async def _complete(api: Api, headers: dict[str, str], lease: dict[str, Any]) -> None:
    body = {"epoch": lease["lease"]["epoch"]}
    r = await api.client.post(f"/v1/jobs/{lease['job']['id']}/complete", json=body, headers=headers)
    assert r.status_code == 200, r.text


async def _claim_held_at_lock_read(
    api: Api, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> tuple[asyncio.Task[list[dict[str, Any]]], Held]:
    """A claim of ``headers``' agent, started and held at its read of a lock document.

    Only that claim's read is held: ``api.co.locks`` is put back once it waits, so the
    caller's next requests run freely. Set the returned ``Held``'s ``release`` to let it on.
    """
    held = Held(api.co.locks, "get")
    monkeypatch.setattr(api.co, "locks", held)
    claim = asyncio.create_task(api.claim(headers))
    async with asyncio.timeout(GUARD):
        await held.entered.wait()
    monkeypatch.setattr(api.co, "locks", held.inner)
    return claim, held


def _ids(leases: list[dict[str, Any]]) -> list[str]:
    return [lease["job"]["id"] for lease in leases]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claim_racing_the_claim_of_a_locks_older_job_does_not_lease_its_younger_one(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Claim x is handed the lock's older job and waits at the lock; claim y, on the same
    replica, gets other work instead of the lock's younger job, and the lock's jobs are
    leased older first (before: y leased the younger job and x left the older queued)."""
    async with AsyncExitStack() as stack:
        [api] = await replicas(provider, tmp_path, request, stack, 1)
        _, x = await api.agent(name="x")
        _, y = await api.agent(name="y")
        older = await api.enqueue(lock="L")
        api.clock.advance(1)
        younger = await api.enqueue(lock="L")
        api.clock.advance(1)
        lockless = await api.enqueue()
        # x was handed the older job; its lock read waits.
        slow, held = await _claim_held_at_lock_read(api, monkeypatch, x)
        calls = count_requests(api, monkeypatch)
        fast = await api.claim(y)
        # The replica hands y no job of the lock x is taking: y never contends for it.
        assert not [call for call in calls if call.startswith("locks.")], calls
        held.release.set()
        async with asyncio.timeout(GUARD):
            first = await slow
        assert _ids(fast) == [lockless["id"]]
        assert _ids(first) == [older["id"]]
        assert (await api.job(younger["id"]))["status"] == "queued"
        await _complete(api, x, first[0])
        assert _ids(await api.claim(x)) == [younger["id"]]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claim_that_takes_a_lock_after_its_older_job_was_requeued_leaves_it_the_lock(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Replica a's claim read the queue while the lock's older job was leased, so it was
    handed the younger one; the older job is released through replica b before that claim
    takes the lock. It must not lease the younger job: the next claim leases the older
    one, then the younger (before: the younger was leased while the older one waited)."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        _, w = await b.agent(name="w")
        _, y = await a.agent(name="y")
        older = await a.enqueue(lock="L")
        a.clock.advance(1)
        younger = await a.enqueue(lock="L")
        [running] = await b.claim(w)
        assert running["job"]["id"] == older["id"]
        # y was handed the younger job; its lock read waits.
        stale, held = await _claim_held_at_lock_read(a, monkeypatch, y)
        body = {"epoch": running["lease"]["epoch"]}
        r = await b.client.post(f"/v1/jobs/{older['id']}/release", json=body, headers=w)
        assert r.status_code == 200, r.text
        held.release.set()
        async with asyncio.timeout(GUARD):
            assert await stale == []
        assert (await a.job(younger["id"]))["status"] == "queued"
        [again] = await a.claim(y)
        assert again["job"]["id"] == older["id"]
        assert await b.claim(w) == []
        await _complete(a, y, again)
        assert _ids(await b.claim(w)) == [younger["id"]]


async def test_a_locks_older_job_that_an_agent_cannot_take_does_not_hold_it_back(
    api: Api,
) -> None:
    """The lock's older job requires a label the agent lacks, or sits in a queue it does
    not claim from: that agent takes the lock's younger job (order holds among the jobs
    each agent may take), so a job nobody can take never blocks its lock's others."""
    _, plain = await api.agent(name="plain", capacity=2)
    await api.enqueue(lock="L", requires={"gpu": "a100"})
    await api.enqueue(lock="M", queue="other")
    api.clock.advance(1)
    younger_l = await api.enqueue(lock="L")
    younger_m = await api.enqueue(lock="M")
    got = _ids(await api.claim(plain, max_jobs=2, queues=["default"]))
    assert sorted(got) == sorted([younger_l["id"], younger_m["id"]])


@pytest.mark.parametrize("queues", [None, ["q1"], ["q1", "q2"]])
def test_the_head_check_seeks_the_lock_index_on_sqlite(
    tmp_path: Path, queues: list[str] | None
) -> None:
    """The head check's one query seeks ``status, lock`` on the lock index, in order, whatever
    queues the claim names: its cost does not grow with the queue's jobs of other locks."""
    spec = JOBS_SPEC
    with sqlite3.connect(tmp_path / "plan.db") as conn:
        for statement in schema_sql(spec):
            conn.execute(statement)
        plan = plan_query(spec, head_query("L", queues, 1.0))
        for branch in query_branches(spec, plan):
            rows = conn.execute(f"EXPLAIN QUERY PLAN {branch.sql}", branch.params).fetchall()
            text = " | ".join(str(row[3]) for row in rows)
            assert "f_status=? AND f_lock=?" in text, text
            assert "TEMP B-TREE" not in text, text


async def test_a_head_check_the_store_fails_gives_the_lock_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails the head check's query: the claim answers 503, nothing is leased,
    and the lock it took is free again, so the next claim (another agent's: this one's
    slot stays reserved until a prune, as after any failed claim) leases the job at once,
    not after the 30 s a lock taken by a claim in flight is held."""
    _, headers = await api.agent()
    _, other = await api.agent(name="other")
    job = await api.enqueue(lock="L")
    query = api.co.jobs.query

    async def failing(q: Query) -> Page:
        if any(f.field == "lock" for f in q.where):
            raise UnavailableError("the store is unavailable")
        return await query(q)

    monkeypatch.setattr(api.co.jobs, "query", failing)
    r = await api.client.post("/v1/claims", json={}, headers=headers)
    assert r.status_code == 503, r.text
    assert (await api.job(job["id"]))["status"] == "queued"
    assert await api.co.containers.locks.count() == 0
    monkeypatch.undo()
    assert _ids(await api.claim(other)) == [job["id"]]
