"""A deleted agent's leases are released within one reaper tick, whatever cut the delete short.

Deleting an agent leaves a tombstone of its ledger (``services/departed.py``); the
delete releases the leases it can, and every reaper tick settles the tombstones
left. Each test below names what would have left a lease, and its lock, held by a
deleted agent until the lease expired (an attempt spent) before the tombstones:
an outage during the delete, a replica dying between the delete and the release,
a claim whose lease landed after the delete. On memory, SQLite and the
Cosmos-protocol server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from fleet_coordinator.services import delete_agent, sweep_departed
from fleet_coordinator.services.departed import GONE
from fleet_datastore import Query, StoreUnavailableError, eq
from structlog.testing import capture_logs

from .conftest import Api
from .replicas import PROVIDERS, replicas


async def _tombstones(api: Api) -> list[str]:
    page = await api.co.containers.agents.query(Query(where=[eq("kind", GONE)]))
    return [doc.id for doc in page.items]


async def _lock_is_free(api: Api, lock: str) -> bool:
    """Whether a fresh agent can lease a new job of ``lock`` (SPEC 9: free at once)."""
    _, headers = await api.agent(name="probe")
    probe = await api.enqueue(lock=lock, queue="probe")
    leases = await api.claim(headers, queues=["probe"])
    return [lease["job"]["id"] for lease in leases] == [probe["id"]]


async def test_a_lease_a_delete_could_not_release_is_released_by_the_next_sweep(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails the release: the delete stands (204), the next sweep releases it."""
    agent_id, headers = await api.agent()
    job = await api.enqueue(lock="repo")
    await api.claim(headers)
    store = api.co.jobs.inner

    async def outage(*_: Any) -> Any:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(store, "update_if_match", outage)
    with capture_logs() as logs:
        r = await api.client.delete(f"/v1/agents/{agent_id}", headers=api.admin)
    monkeypatch.undo()
    assert r.status_code == 204, r.text
    left = [e for e in logs if e["event"] == "coordinator.agent.lease_left"]
    assert [(e["agent_id"], e["job_id"]) for e in left] == [(agent_id, job["id"])]
    assert (await api.job(job["id"]))["status"] == "leased"
    assert await _tombstones(api) == [agent_id]

    assert await sweep_departed(api.co) == 1
    after = await api.job(job["id"])
    assert after["status"] == "queued"
    assert after["attempts"] == 0  # released, not expired: the attempt is given back
    assert after["runs"][-1]["outcome"] == "released"
    assert await _tombstones(api) == []
    assert await _lock_is_free(api, "repo")


async def test_a_replica_that_dies_between_the_delete_and_the_release(api: Api) -> None:
    """Only the tombstone was written: the token is refused at once, the sweep releases."""
    agent_id, headers = await api.agent()
    job = await api.enqueue(lock="repo")
    await api.claim(headers)
    await delete_agent(api.co, agent_id)  # the release never ran

    r = await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers)
    assert r.status_code == 401
    r = await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.status_code == 404
    listed = (await api.client.get("/v1/agents", headers=api.admin)).json()["items"]
    assert agent_id not in [a["id"] for a in listed]
    r = await api.client.delete(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.status_code == 404
    assert (await api.job(job["id"]))["status"] == "leased"

    assert await sweep_departed(api.co) == 1
    assert (await api.job(job["id"]))["status"] == "queued"
    assert await _tombstones(api) == []
    assert await _lock_is_free(api, "repo")
    assert await sweep_departed(api.co) == 0


async def test_a_claim_whose_lease_lands_after_the_delete(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim reserved before the delete and leases after it: kept until leased, then released.

    While the lease is still in flight the sweep keeps the tombstone (the entry may
    yet become a lease); once it has landed, the sweep releases it.
    """
    agent_id, headers = await api.agent()
    job = await api.enqueue(lock="repo")
    reserve = api.co.ledger.reserve
    seen: list[int] = []

    async def reserve_then_delete(*args: Any) -> Any:
        out = await reserve(*args)
        await delete_agent(api.co, agent_id)  # between the reservation and the lease
        seen.append(await sweep_departed(api.co))  # the lease is not written yet
        return out

    monkeypatch.setattr(api.co.ledger, "reserve", reserve_then_delete)
    [lease] = await api.claim(headers)
    monkeypatch.undo()
    assert seen == [0]
    assert lease["job"]["id"] == job["id"]
    assert (await api.job(job["id"]))["status"] == "leased"
    assert await _tombstones(api) == [agent_id]

    assert await sweep_departed(api.co) == 1
    assert (await api.job(job["id"]))["status"] == "queued"
    assert await _tombstones(api) == []
    assert await _lock_is_free(api, "repo")


async def test_a_reservation_that_never_becomes_a_lease_ends_with_its_grace(api: Api) -> None:
    """A claim that reserved a job and died: the tombstone goes at the end of its grace."""
    from fleet_coordinator.domain import RESERVATION_GRACE
    from fleet_coordinator.services.agent_docs import StoredAgent

    agent_id, _ = await api.agent()
    job = await api.enqueue()
    agent = await api.co.agent_docs.read(agent_id, fresh=True)
    assert agent is not None
    doc = await api.co.jobs.get(job["id"], api.co.shard(job["id"]))
    _, granted = await api.co.ledger.reserve(StoredAgent(agent), [doc])  # then nothing
    assert [d.id for d in granted] == [job["id"]]
    await delete_agent(api.co, agent_id)

    assert await sweep_departed(api.co) == 0  # it may still become a lease
    api.clock.advance(RESERVATION_GRACE + 1)
    assert await sweep_departed(api.co) == 1
    assert await _tombstones(api) == []
    assert (await api.job(job["id"]))["status"] == "queued"


def _both_at_the_write(
    write: Callable[..., Awaitable[Any]], gate: dict[str, Any]
) -> Callable[..., Awaitable[Any]]:
    """``write`` held until the other replica's first job write arrives too (then open)."""

    async def gated(*args: Any) -> Any:
        if not gate["open"].is_set():
            gate["arrived"] += 1
            if gate["arrived"] == 2:
                gate["open"].set()
            else:
                await gate["open"].wait()
        return await write(*args)

    return gated


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_two_replicas_settling_one_tombstone_release_each_lease_once(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both read the live lease and both write its release: one write wins, the other loses.

    Each replica's first job write waits until the other's arrives, so both decide on
    the same etag. With a write that did not check the etag both releases would land:
    two ``released`` runs, the job moved twice.
    """
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, n=2)
        agent_id, headers = await a.agent()
        job = await a.enqueue(lock="repo")
        await a.claim(headers)
        await delete_agent(a.co, agent_id)  # the release never ran
        gate: dict[str, Any] = {"arrived": 0, "open": asyncio.Event()}
        for api in (a, b):
            inner = api.co.jobs.inner
            monkeypatch.setattr(
                inner, "update_if_match", _both_at_the_write(inner.update_if_match, gate)
            )
        with capture_logs() as logs:
            gone = await asyncio.gather(sweep_departed(a.co), sweep_departed(b.co))
        monkeypatch.undo()
        assert sorted(gone) == [0, 1]  # the loser looks again next tick and finds it gone
        released = [e for e in logs if e["event"] == "coordinator.job.released"]
        assert len(released) == 1
        after = await a.job(job["id"])
        assert after["status"] == "queued"
        assert [run["outcome"] for run in after["runs"]] == ["released"]
        assert await _tombstones(a) == []
        assert await sweep_departed(b.co) == 0
        assert await _lock_is_free(b, "repo")
