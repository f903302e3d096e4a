"""Several coordinator replicas over one SQLite file: claims and reaping stay single-winner."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from fleet_coordinator.services import Coordinator, reap_once

from .replicas import replicas


@pytest.mark.parametrize("provider", ["sqlite", "cosmos"])
@pytest.mark.parametrize("claimers", [12, 64])
async def test_claims_across_replicas_have_one_winner(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str, claimers: int
) -> None:
    """Agents claiming one job through three replicas: exactly one lease, epoch 1."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack, 3)
        agents = [await apps[0].agent(name=f"a{i}") for i in range(claimers)]
        job = await apps[1].enqueue()
        results = await asyncio.gather(
            *(apps[i % 3].claim(headers) for i, (_, headers) in enumerate(agents))
        )
        leases = [lease for result in results for lease in result]
        assert len(leases) == 1
        assert leases[0]["lease"]["epoch"] == 1
        assert (await apps[2].job(job["id"]))["lease"]["epoch"] == 1


async def test_reapers_of_two_replicas_act_once(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two replicas reaping the same expired leases change each job exactly once."""
    async with AsyncExitStack() as stack:
        a, b = await replicas("sqlite", tmp_path, request, stack, 2)
        _, headers = await a.agent(capacity=5)
        for _ in range(5):
            await a.enqueue(lease_seconds=10)
        assert len(await a.claim(headers, max_jobs=5)) == 5
        a.clock.advance(10)
        cos: list[Coordinator] = [a.co, b.co]
        changed = await asyncio.gather(*(reap_once(co) for co in cos))
        assert sum(changed) == 5
        listed = (await b.client.get("/v1/jobs", headers=b.admin)).json()["items"]
        for job in listed:
            stored = await b.job(job["id"])
            assert stored["status"] == "queued"
            assert [run["outcome"] for run in stored["runs"]] == ["lease_expired"]


async def test_a_replica_sees_an_agent_drained_on_another(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An agent drained through one replica gets no claims through another."""
    async with AsyncExitStack() as stack:
        a, b = await replicas("sqlite", tmp_path, request, stack, 2)
        agent_id, headers = await a.agent()
        await b.claim(headers)  # b now caches the agent document
        await a.client.post(f"/v1/agents/{agent_id}/drain", headers=a.admin)
        await a.enqueue()
        assert await b.claim(headers) == []
