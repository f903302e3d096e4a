"""Several coordinator replicas over one SQLite file: claims and reaping stay single-winner."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import ManualClock
from fleet_coordinator.services import Coordinator, reap_once
from fleet_datastore import CosmosConfig

from .conftest import ADMIN, Api


async def _replicas(
    path: Path, stack: AsyncExitStack, n: int, store: dict[str, str] | None = None
) -> list[Api]:
    clock = ManualClock()
    replicas = []
    shared = store or {"store_url": f"sqlite:///{path}/shared.db"}
    for _ in range(n):
        settings = Settings(**shared, admin_token=ADMIN, reaper_enabled=False)
        app = create_app(settings, clock=clock)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://test")
        )
        replicas.append(Api(client, clock, app))
    return replicas


@pytest.mark.parametrize("provider", ["sqlite", "cosmos"])
@pytest.mark.parametrize("claimers", [12, 64])
async def test_claims_across_replicas_have_one_winner(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str, claimers: int
) -> None:
    """Agents claiming one job through three replicas: exactly one lease, epoch 1."""
    store = None
    if provider == "cosmos":
        cfg: CosmosConfig = request.getfixturevalue("cosmos_server")
        store = {
            "store_url": "cosmos://",
            "cosmos_endpoint": cfg.endpoint,
            "cosmos_key": cfg.key,
            "cosmos_database": f"t{uuid.uuid4().hex[:16]}",
        }
    async with AsyncExitStack() as stack:
        replicas = await _replicas(tmp_path, stack, 3, store)
        agents = [await replicas[0].agent(name=f"a{i}") for i in range(claimers)]
        job = await replicas[1].enqueue()
        results = await asyncio.gather(
            *(replicas[i % 3].claim(headers) for i, (_, headers) in enumerate(agents))
        )
        leases = [lease for result in results for lease in result]
        assert len(leases) == 1
        assert leases[0]["lease"]["epoch"] == 1
        assert (await replicas[2].job(job["id"]))["lease"]["epoch"] == 1


async def test_reapers_of_two_replicas_act_once(tmp_path: Path) -> None:
    """Two replicas reaping the same expired leases change each job exactly once."""
    async with AsyncExitStack() as stack:
        a, b = await _replicas(tmp_path, stack, 2)
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


async def test_a_replica_sees_an_agent_drained_on_another(tmp_path: Path) -> None:
    """An agent drained through one replica gets no claims through another."""
    async with AsyncExitStack() as stack:
        a, b = await _replicas(tmp_path, stack, 2)
        agent_id, headers = await a.agent()
        await b.claim(headers)  # b now caches the agent document
        await a.client.post(f"/v1/agents/{agent_id}/drain", headers=a.admin)
        await a.enqueue()
        assert await b.claim(headers) == []
