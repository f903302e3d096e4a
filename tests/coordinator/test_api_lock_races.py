"""Locks across three replicas on every provider: never two live leases of one lock.

Many agents claim through three replicas at once from jobs on a few locks and
lockless jobs. The test keeps the set of locks it knows to be leased: a lock
joins it when a claim answer shows it and leaves it just *before* its holder's
complete is sent (the lease is live until that write), so a claim answering a
lock that is in the set is a real second live lease, never a false alarm.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from .replicas import PROVIDERS, replicas

LOCKS = ("repo-a", "repo-b", "repo-c")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_many_claimers_on_three_replicas_never_share_a_lock(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """24 agents, 3 replicas, 60 locked and 30 lockless jobs: one lease per lock, all done."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack)
        jobs = [{"kind": "k", "lock": LOCKS[i % 3]} for i in range(60)]
        jobs += [{"kind": "k"} for _ in range(30)]
        r = await apps[0].client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=apps[0].admin)
        assert r.status_code == 201, r.text
        agents = [await apps[0].agent(name=f"a{i}", capacity=2) for i in range(24)]
        leased: set[str] = set()
        violations: list[str] = []
        done: Counter[str] = Counter()

        async def work(i: int, headers: dict[str, str]) -> None:
            api = apps[i % 3]
            idle = 0
            while idle < 3:
                leases = await api.claim(headers, max_jobs=2)
                idle = 0 if leases else idle + 1
                for lease in leases:
                    lock = lease["job"]["lock"]
                    if lock is not None:
                        if lock in leased:
                            violations.append(f"{lock} leased twice ({lease['job']['id']})")
                        leased.add(lock)
                for lease in leases:
                    await asyncio.sleep(0)  # let other claimers run while the lease is held
                    lock = lease["job"]["lock"]
                    if lock is not None:
                        leased.discard(lock)  # before the write that ends the lease
                    body = {"epoch": lease["lease"]["epoch"]}
                    path = f"/v1/jobs/{lease['job']['id']}/complete"
                    r = await api.client.post(path, json=body, headers=headers)
                    assert r.status_code == 200, r.text
                    done[lock or ""] += 1

        await asyncio.gather(*(work(i, h) for i, (_, h) in enumerate(agents)))
        assert violations == []
        assert done == Counter({"repo-a": 20, "repo-b": 20, "repo-c": 20, "": 30})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_crashed_holders_lock_frees_at_expiry_across_replicas(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """A holder that stops heartbeating: at its lease expiry another replica hands the lock on."""
    async with AsyncExitStack() as stack:
        a, b, c = await replicas(provider, tmp_path, request, stack)
        _, crashed = await a.agent()
        others = [await b.agent(name=f"o{i}") for i in range(8)]
        first = await a.enqueue(lock="L", lease_seconds=5, max_attempts=1)
        a.clock.advance(1)
        second = await a.enqueue(lock="L")
        lockless = await a.enqueue()
        assert [x["job"]["id"] for x in await a.claim(crashed)] == [first["id"]]

        async def claim_all() -> list[dict[str, Any]]:
            results = await asyncio.gather(
                *((b, c)[i % 2].claim(h) for i, (_, h) in enumerate(others))
            )
            return [lease for result in results for lease in result]

        got = await claim_all()
        assert [x["job"]["id"] for x in got] == [lockless["id"]]
        b.clock.advance(5)
        got = await claim_all()
        assert [x["job"]["id"] for x in got] == [second["id"]]
