"""Locks (SPEC 9): one live lease per lock, held locks never block others, freed as leases end."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_coordinator.errors import UnavailableError
from fleet_coordinator.services import reap_once
from fleet_coordinator.store import lock_id
from structlog.testing import capture_logs

from .conftest import Api


async def _end(api: Api, headers: dict[str, str], lease: dict[str, Any], op: str) -> None:
    body: dict[str, Any] = {"epoch": lease["lease"]["epoch"]}
    if op == "fail":
        body["error"] = "boom"
    r = await api.client.post(f"/v1/jobs/{lease['job']['id']}/{op}", json=body, headers=headers)
    assert r.status_code == 200, r.text


async def _ids(api: Api, headers: dict[str, str], **claim: Any) -> list[str]:
    return [lease["job"]["id"] for lease in await api.claim(headers, **claim)]


async def test_jobs_sharing_a_lock_never_hold_two_leases(api: Api) -> None:
    """Two jobs of one lock in two queues: the second stays queued while the first is leased."""
    _, a = await api.agent()
    _, b = await api.agent()
    first = await api.enqueue(lock="repo-1", queue="q1")
    api.clock.advance(1)
    second = await api.enqueue(lock="repo-1", queue="q2")
    assert first["lock"] == "repo-1"
    assert await _ids(api, a) == [first["id"]]
    assert await _ids(api, b) == []
    assert (await api.job(second["id"]))["status"] == "queued"


async def test_a_held_lock_never_blocks_the_jobs_behind_it(api: Api) -> None:
    """1,500 jobs of a held lock at the head of the queue: one claim still gets the others."""
    _, holder = await api.agent()
    _, other = await api.agent(capacity=3)
    head = await api.enqueue(lock="hot", priority=10)
    assert await _ids(api, holder) == [head["id"]]
    for _ in range(2):  # more than any page a claim reads
        jobs = [{"kind": "k", "lock": "hot", "priority": 10} for _ in range(750)]
        r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
        assert r.status_code == 201, r.text
    api.clock.advance(1)
    lockless = await api.enqueue()
    other_lock = await api.enqueue(lock="cold")
    got = await _ids(api, other, max_jobs=3)
    assert sorted(got) == sorted([lockless["id"], other_lock["id"]])


async def test_a_lock_is_free_at_once_after_complete_fail_or_release(api: Api) -> None:
    """Each way an agent ends a lease frees the lock for the next job of that lock."""
    _, agent = await api.agent()
    jobs = []
    for _ in range(4):
        jobs.append(await api.enqueue(lock="L", max_attempts=1))
        api.clock.advance(1)
    for op, job in zip(("complete", "fail", "release"), jobs, strict=False):
        (lease,) = await api.claim(agent)
        assert lease["job"]["id"] == job["id"]
        await _end(api, agent, lease, op)
    # The released job is queued again and first in order: it takes the lock next.
    assert await _ids(api, agent) == [jobs[2]["id"]]


async def test_cancel_requested_keeps_the_lock_until_the_lease_ends(api: Api) -> None:
    """A cancel request alone leaves the lock held; the release that ends the job frees it."""
    _, a = await api.agent()
    _, b = await api.agent()
    first = await api.enqueue(lock="L")
    api.clock.advance(1)
    second = await api.enqueue(lock="L")
    (lease,) = await api.claim(a)
    r = await api.client.post(f"/v1/jobs/{first['id']}/cancel", headers=api.admin)
    assert r.json()["cancel_requested"] is True
    assert await _ids(api, b) == []
    await _end(api, a, lease, "release")
    assert (await api.job(first["id"]))["status"] == "cancelled"
    assert await _ids(api, b) == [second["id"]]


async def test_an_expired_holders_lock_frees_and_the_reaper_clears_it(api: Api) -> None:
    """After the holder's lease expires the next job of the lock is claimable."""
    _, crashed = await api.agent()
    _, b = await api.agent()
    first = await api.enqueue(lock="L", lease_seconds=10)
    api.clock.advance(1)
    second = await api.enqueue(lock="L")
    assert await _ids(api, crashed) == [first["id"]]
    assert await _ids(api, b) == []
    api.clock.advance(10)
    # Judged by the coordinator's clock: an expired lease holds nothing, reaped or not.
    assert await _ids(api, b) == [second["id"]]
    assert await reap_once(api.co) == 1
    # The reaper's release is for the expired lease only: the new holder keeps the lock.
    key = lock_id("L")
    stored = await api.co.containers.locks.get(key, key)
    assert stored.body["holder"]["job_id"] == second["id"]


async def test_deleting_the_holders_agent_frees_the_lock(api: Api) -> None:
    """An agent deleted while holding a lock: the lock's next job is claimable at once."""
    holder_id, holder = await api.agent()
    _, b = await api.agent()
    first = await api.enqueue(lock="L")
    api.clock.advance(1)
    await api.enqueue(lock="L")
    assert await _ids(api, holder) == [first["id"]]
    r = await api.client.delete(f"/v1/agents/{holder_id}", headers=api.admin)
    assert r.status_code == 204
    # The released first job is older: order 5 gives it the lock again.
    assert await _ids(api, b) == [first["id"]]


async def test_a_locks_jobs_are_claimed_in_priority_then_age_order(api: Api) -> None:
    """Among a lock's claimable jobs, higher priority first, then older (SPEC 5)."""
    _, agent = await api.agent()
    low = await api.enqueue(lock="L", priority=0)
    api.clock.advance(1)
    high = await api.enqueue(lock="L", priority=5)
    api.clock.advance(1)
    high_later = await api.enqueue(lock="L", priority=5)
    order = []
    for _ in range(3):
        (lease,) = await api.claim(agent)
        order.append(lease["job"]["id"])
        await _end(api, agent, lease, "complete")
    assert order == [high["id"], high_later["id"], low["id"]]


async def test_the_lock_document_exists_only_while_held(api: Api) -> None:
    """Released locks leave no document behind, so the container holds only held locks."""
    _, agent = await api.agent()
    await api.enqueue(lock="L")
    (lease,) = await api.claim(agent)
    key = lock_id("L")
    stored = await api.co.containers.locks.get(key, key)
    assert stored.body["holder"]["job_id"] == lease["job"]["id"]
    await _end(api, agent, lease, "complete")
    assert await api.co.containers.locks.count() == 0


async def test_jobs_are_listed_by_lock_and_by_kind(api: Api) -> None:
    """``GET /v1/jobs?lock=`` and ``?kind=`` return only matching jobs, oldest first."""
    a = await api.enqueue(lock="L", kind="build")
    api.clock.advance(1)
    await api.enqueue(kind="test")
    api.clock.advance(1)
    c = await api.enqueue(lock="L", kind="test")
    r = await api.client.get("/v1/jobs?lock=L", headers=api.admin)
    assert [j["id"] for j in r.json()["items"]] == [a["id"], c["id"]]
    r = await api.client.get("/v1/jobs?kind=test&lock=L", headers=api.admin)
    assert [j["id"] for j in r.json()["items"]] == [c["id"]]
    r = await api.client.get("/v1/jobs?lock=", headers=api.admin)
    assert r.status_code == 422


async def test_a_dead_claims_lock_is_taken_over_after_fencing_its_lease_write(api: Api) -> None:
    """A lock taken by a claim that never wrote its lease: held 30 s, then fenced and reused."""
    _, agent = await api.agent()
    stuck = await api.enqueue(lock="L")
    api.clock.advance(1)
    waiting = await api.enqueue(lock="L")
    jobs = api.co.containers.jobs
    before = await jobs.get(stuck["id"], api.co.shard(stuck["id"]))
    # A claim of ``stuck`` took the lock for epoch 1, then its replica died.
    key = lock_id("L")
    holder = {"job_id": stuck["id"], "epoch": 1, "at": api.clock.now()}
    await api.co.containers.locks.create({"id": key, "pk": key, "name": "L", "holder": holder})
    assert await _ids(api, agent) == []
    api.clock.advance(30)
    # Both jobs are claimable; ``stuck`` is older, so the lock goes to it at epoch 1.
    [lease] = await api.claim(agent)
    assert lease["job"]["id"] == stuck["id"]
    assert lease["lease"]["epoch"] == 1
    # The dead claim's lease write, conditional on the etag it had read, can never land.
    after = await jobs.get(stuck["id"], api.co.shard(stuck["id"]))
    assert after.etag != before.etag
    assert (await api.job(waiting["id"]))["status"] == "queued"


async def test_a_lock_the_store_cannot_free_does_not_fail_the_end_that_landed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion whose write landed answers 200 although freeing its job's lock met a
    store outage (was 503, and the agent's retry then got 409 lease_lost); the lock left
    behind names an ended lease, so the next job of that lock is claimed at once."""
    _, headers = await api.agent()
    first = await api.enqueue(queue="q", lock="db")
    api.clock.advance(1)  # older by the clock: one instant would leave the order to the ids
    second = await api.enqueue(queue="q", lock="db")
    [lease] = await api.claim(headers, queues=["q"])
    assert lease["job"]["id"] == first["id"]

    async def outage(*_: Any, **__: Any) -> Any:
        raise UnavailableError("the store is unavailable")

    monkeypatch.setattr(api.co.locks, "get", outage)
    with capture_logs() as logs:
        r = await api.client.post(
            f"/v1/jobs/{first['id']}/complete", json={"epoch": 1}, headers=headers
        )
    assert r.status_code == 200, r.text
    assert [e["event"] for e in logs].count("coordinator.lock.release_left") == 1
    monkeypatch.undo()
    assert await _ids(api, headers, queues=["q"]) == [second["id"]]
