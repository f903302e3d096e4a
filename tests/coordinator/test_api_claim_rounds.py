"""A claim holding leases answers with them instead of going on filling its slots.

Seen in the recorded-history stress run on the Cosmos-protocol server under load: a
claim that lost a race in its first round went on for more rounds, ~10 s in all,
while the 2 s leases it had written ran out unanswered; each was an attempt spent
on a job that never ran. A lease runs from its write, so once a claim holds one it
starts no further round past a tenth of the shortest lease it holds. The test holds
the claim between its rounds (``Held``) while the clock passes that point, and
fails on the code before the change (the second round leased the third job).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.support.held import GUARD, Held

from .replicas import PROVIDERS, replicas

LEASE = 20.0


@pytest.mark.parametrize(("passed", "leased"), [(LEASE / 10 + 1, 1), (LEASE / 10 - 1, 2)])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claim_holding_a_lease_starts_no_round_once_a_tenth_of_it_passed(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    passed: float,
    leased: int,
) -> None:
    """Replica a's claim for two jobs loses the first to replica b and leases the second;
    while it gives the lost one's slot back, ``passed`` seconds go by. Past a tenth of
    the lease it answers the one lease it holds; before that it goes on to the third job."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        _, x = await a.agent(name="x", capacity=2)
        _, y = await b.agent(name="y")
        jobs = []
        for _ in range(3):
            jobs.append(await a.enqueue(lease_seconds=LEASE))
            a.clock.advance(1)
        # a's claim stops after reserving the first two jobs (its answer held) ...
        reserved = Held(a.co.ledger, "reserve", after=True)
        giving_back = Held(reserved, "unreserve")
        monkeypatch.setattr(a.co, "ledger", giving_back)
        claim = asyncio.create_task(a.claim(x, max_jobs=2))
        async with asyncio.timeout(GUARD):
            await reserved.entered.wait()
        # ... b leases the first meanwhile, so a's lease write of it loses ...
        [taken] = await b.claim(y)
        assert taken["job"]["id"] == jobs[0]["id"]
        reserved.release.set()
        async with asyncio.timeout(GUARD):
            await giving_back.entered.wait()  # ... and a gives its slot back (step 6)
        a.clock.advance(passed)
        giving_back.release.set()
        async with asyncio.timeout(GUARD):
            got = [lease["job"]["id"] for lease in await claim]
        assert got == [job["id"] for job in jobs[1 : 1 + leased]]
        third = await a.job(jobs[2]["id"])
        assert third["status"] == ("leased" if leased == 2 else "queued")
