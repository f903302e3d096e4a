"""One agent claiming through two replicas at once never holds more leases than its capacity.

Found by a black-box audit: an agent of capacity 2 claiming through two replicas held
3 or 4 live leases for a while. Each replica skips the jobs its own view of the agent's
ledger holds, so the claims of one agent on two replicas can pick the same job; the
second reservation then overwrote the first one's ledger entry (one entry for two
claims), and the claim that lost the lease gave back that entry, which stood for the
winner's live lease: the ledger counted one lease too few.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.support.held import GUARD, Held

from .replicas import PROVIDERS, replicas


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_two_replicas_picking_the_same_job_for_one_agent_keep_its_capacity(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Replica b reserves the oldest job and is held before leasing it; replica a, whose
    copy of the agent still shows an empty ledger, picks the same job. a must not take a
    second entry for it (it takes the next job), and b's lease stands: two leases in all,
    and the ledger says two, however many more claims follow."""
    async with AsyncExitStack() as stack:
        a, b = await replicas(provider, tmp_path, request, stack, 2)
        agent_id, headers = await a.agent(capacity=2)
        # Both replicas now hold the agent's document with an empty ledger.
        assert await a.claim(headers) == []
        assert await b.claim(headers) == []
        for _ in range(4):
            await a.enqueue()
        held = Held(b.co.jobs, "update_if_match")
        monkeypatch.setattr(b.co, "jobs", held)
        slow = asyncio.create_task(b.claim(headers, max_jobs=1))
        async with asyncio.timeout(GUARD):
            await held.entered.wait()  # b reserved the oldest job; its lease write waits
        leases = await a.claim(headers, max_jobs=1)
        held.release.set()
        async with asyncio.timeout(GUARD):
            leases += await slow
        for api in (a, b, a, b):
            leases += await api.claim(headers, max_jobs=2)
        assert len({lease["job"]["id"] for lease in leases}) == 2, leases
        listed = await a.client.get("/v1/jobs?status=leased", headers=a.admin)
        assert len(listed.json()["items"]) == 2
        for api in (a, b):
            agent = await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)
            assert agent.json()["live_leases"] == 2
