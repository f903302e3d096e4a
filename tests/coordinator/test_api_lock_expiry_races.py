"""A lock taken over from a holder whose lease expired: never two live leases (SPEC 9).

Found by the recorded-history stress run on the Cosmos-protocol server under heavy
load: a lock's next job was leased while the holder's lease, by what the coordinator
acknowledged, was still live. A lock is free once its holder's lease has expired by
the coordinator's clock, judged from the holder job as read; but the holder's own
replica may have decided a heartbeat on that job while the lease was live and write
it after that judgement, or the claimer's read may predate a heartbeat and be judged
later. Either way the heartbeat landed on the etag the claimer had read, renewing a
lease whose lock was already someone else's. The claimer now fences the holder job
(a conditional write on the etag it judged) before taking the lock over. Each test
holds one side at the store (``Held``) to make the interleaving certain, and fails on
the code before the fix.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.held import GUARD, Held

from .conftest import Api
from .replicas import PROVIDERS, replicas

LEASE = 10.0


async def _post(
    api: Api, lease: dict[str, Any], op: str, headers: dict[str, str]
) -> httpx.Response:
    body = {"epoch": lease["lease"]["epoch"]}
    return await api.client.post(f"/v1/jobs/{lease['job']['id']}/{op}", json=body, headers=headers)


async def _two_jobs_of_one_lock(a: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    first = await a.enqueue(lock="L", lease_seconds=LEASE)
    a.clock.advance(1)
    second = await a.enqueue(lock="L", lease_seconds=LEASE)
    return first, second


async def _first_of_the_lock_leased_on(
    a: Api, b: Api
) -> tuple[dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """Replica a's agent leases the lock's first job; b's agent is there for the second.

    Returns the two agents' auth headers, the second job and a's lease of the first.
    """
    _, holder = await a.agent(name="holder")
    _, next_agent = await b.agent(name="next")
    first, second = await _two_jobs_of_one_lock(a)
    [running] = await a.claim(holder)
    assert running["job"]["id"] == first["id"]
    return holder, next_agent, second, running


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_heartbeat_decided_before_expiry_cannot_land_after_the_lock_was_taken_over(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Replica a decides the holder's heartbeat while its lease is live, and its write waits;
    the lease expires and replica b leases the lock's next job. The heartbeat must not
    land then: it is decided again and answered ``lease_lost`` (before: it was answered
    200 with a renewed expiry, and the lock had two live leases)."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        holder, next_agent, second, running = await _first_of_the_lock_leased_on(a, b)
        a.clock.advance(LEASE / 2)
        held = Held(a.co.jobs, "update_if_match")
        monkeypatch.setattr(a.co, "jobs", held)
        beat = asyncio.create_task(_post(a, running, "heartbeat", holder))
        async with asyncio.timeout(GUARD):
            await held.entered.wait()  # decided while live (renewed to +LEASE); write waits
        monkeypatch.setattr(a.co, "jobs", held.inner)
        a.clock.advance(LEASE / 2 + 0.5)  # the lease as stored has expired
        taken = await b.claim(next_agent)
        assert [lease["job"]["id"] for lease in taken] == [second["id"]]
        held.release.set()
        async with asyncio.timeout(GUARD):
            r = await beat
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "lease_lost"
        r = await _post(a, running, "complete", holder)
        assert r.status_code == 409, r.text
        r = await _post(b, taken[0], "complete", next_agent)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claim_judging_a_holder_read_before_its_heartbeat_leaves_the_lock_held(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Replica b's claim reads the holder job while its lease is live, and gets the answer
    only after the holder's heartbeat renewed it and the old expiry passed. Judged on that
    read the lease has expired, but the lock is the holder's: b's claim leases nothing
    (before: it leased the lock's next job while the renewed lease was live)."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        holder, next_agent, second, running = await _first_of_the_lock_leased_on(a, b)
        held = Held(b.co.jobs, "get", after=True)
        monkeypatch.setattr(b.co, "jobs", held)
        slow = asyncio.create_task(b.claim(next_agent))
        async with asyncio.timeout(GUARD):
            await held.entered.wait()  # b read the holder job; its answer waits
        monkeypatch.setattr(b.co, "jobs", held.inner)
        a.clock.advance(LEASE / 2)
        r = await _post(a, running, "heartbeat", holder)
        assert r.status_code == 200, r.text  # renewed to LEASE / 2 past the old expiry
        a.clock.advance(LEASE / 2 + 0.5)
        held.release.set()
        async with asyncio.timeout(GUARD):
            assert await slow == []
        assert (await b.job(second["id"]))["status"] == "queued"
        r = await _post(a, running, "complete", holder)
        assert r.status_code == 200, r.text
        [then] = await b.claim(next_agent)
        assert then["job"]["id"] == second["id"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claim_that_fences_its_own_jobs_expired_lease_does_not_lease_it_again(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Replica a's claim picks the queued job and waits at the lock; replica b leases that
    job, and its lease expires. a's claim then finds its own job the lock's expired holder
    and fences it: its lease write must still go on the state it picked (and lose), never
    on the fenced document, which would lease the job again at the epoch b holds."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        _, late = await a.agent(name="late")
        holder_id, holder = await b.agent(name="holder")
        job = await a.enqueue(lock="L", lease_seconds=LEASE)
        held = Held(a.co.locks, "get")
        monkeypatch.setattr(a.co, "locks", held)
        slow = asyncio.create_task(a.claim(late))
        async with asyncio.timeout(GUARD):
            await held.entered.wait()  # a picked the queued job; its lock read waits
        monkeypatch.setattr(a.co, "locks", held.inner)
        [running] = await b.claim(holder)
        assert running["job"]["id"] == job["id"]
        a.clock.advance(LEASE + 1)
        held.release.set()
        async with asyncio.timeout(GUARD):
            assert await slow == []
        stored = await a.job(job["id"])
        assert stored["status"] == "leased"
        assert stored["lease"]["agent_id"] == holder_id
        assert stored["lease"]["epoch"] == 1
        assert [run["agent_id"] for run in stored["runs"]] == [holder_id]
