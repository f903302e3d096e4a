"""Races through the service on every provider: one winner per job, never two live leases.

Each test runs the racers through three apps ("replicas") over one store, so
the per-replica candidate pool, which hands a job to one claimer per replica,
cannot hide a lost race: only the store's conditional write keeps a second
replica's claimer out. ``asyncio.gather`` starts every racer before any answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from fleet_coordinator import create_app
from fleet_coordinator.services import reap_once

from .conftest import Api

LEASE = 10.0


@asynccontextmanager
async def replicas_of(api: Api, count: int, **settings_: Any) -> AsyncIterator[list[Api]]:
    """``api`` plus ``count - 1`` more apps over the same store and clock (``settings_`` theirs)."""
    async with AsyncExitStack() as stack:
        apps = [api]
        settings = api.co.settings
        shared = api.co.containers.store if settings.store_url == "memory://" else None
        for _ in range(count - 1):
            app = create_app(settings.model_copy(update=settings_), clock=api.clock, store=shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
            )
            apps.append(Api(client, api.clock, app))
        yield apps


async def _agents(api: Api, count: int) -> list[tuple[str, dict[str, str]]]:
    return await asyncio.gather(*(api.agent(name=f"r{i}", capacity=50) for i in range(count)))


async def _claim(api: Api, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    return await api.claim(headers, **body)


@pytest.mark.parametrize("claimers", [2, 10, 256])
async def test_concurrent_claims_for_a_fresh_job_have_exactly_one_winner(
    api: Api, claimers: int
) -> None:
    """N distinct agents over three replicas claim one fresh job: one lease, one run, epoch 1."""
    rounds = 5 if claimers < 256 else 1
    async with replicas_of(api, 3) as apps:
        agents = await _agents(api, claimers)
        for _ in range(rounds):
            job = await api.enqueue(lease_seconds=LEASE)
            results = await asyncio.gather(
                *(_claim(apps[i % 3], h) for i, (_, h) in enumerate(agents))
            )
            leases = [lease for result in results for lease in result]
            assert [lease["job"]["id"] for lease in leases] == [job["id"]]
            assert leases[0]["lease"]["epoch"] == 1
            stored = await apps[2].job(job["id"])
            assert stored["status"] == "leased"
            assert [(r["epoch"], r["agent_id"]) for r in stored["runs"]] == [
                (1, leases[0]["lease"]["agent_id"])
            ]
            assert stored["attempts"] == 1
            # The winner finishes, so the next round's job is the only claimable one.
            winner = dict(agents)[leases[0]["lease"]["agent_id"]]
            done = await apps[1].client.post(
                f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=winner
            )
            assert done.status_code == 200, done.text


@pytest.mark.parametrize("offset", [-1e-3, 0.0, 1e-3], ids=["before", "at", "after"])
async def test_heartbeat_racing_reapers_and_late_claimers_never_gives_two_live_leases(
    api: Api, offset: float
) -> None:
    """At the moment of expiry, a heartbeat, two reapers and 8 claimers race: one lease stands.

    Before expiry the heartbeat must win and nothing changes hands; at or after it
    the heartbeat must lose, exactly one reaper requeue the job and at most one
    claimer lease it, with epoch 2.
    """
    async with replicas_of(api, 3) as apps:
        holder_id, holder = await api.agent(name="holder")
        claimers = await _agents(api, 8)
        for round_ in range(4):
            job = await api.enqueue(lease_seconds=LEASE)
            [first] = await api.claim(holder)
            api.clock.set(api.clock.now() + LEASE + offset)

            heartbeat = apps[round_ % 3].client.post(
                f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=holder
            )
            beat, reaped_a, reaped_b, *claims = await asyncio.gather(
                heartbeat,
                reap_once(apps[1].co),
                reap_once(apps[2].co),
                *(_claim(apps[i % 3], h, wait_seconds=0.3) for i, (_, h) in enumerate(claimers)),
            )
            leases = [lease for result in claims for lease in result]
            stored = await api.job(job["id"])
            epochs = [r["epoch"] for r in stored["runs"]]
            assert epochs == list(range(1, len(epochs) + 1))
            if offset < 0:
                assert beat.status_code == 200, beat.text
                assert reaped_a + reaped_b == 0
                assert leases == []
                assert stored["lease"]["agent_id"] == holder_id
                assert stored["lease"]["epoch"] == 1
            else:
                assert beat.status_code == 409
                assert beat.json()["error"]["code"] == "lease_lost"
                assert reaped_a + reaped_b == 1
                assert stored["runs"][0]["outcome"] == "lease_expired"
                assert len(leases) <= 1
                if leases:
                    assert leases[0]["lease"]["epoch"] == 2
                    assert stored["lease"]["epoch"] == 2
                    assert stored["lease"]["agent_id"] == leases[0]["lease"]["agent_id"]
                else:
                    assert stored["status"] == "queued"
            assert first["lease"]["epoch"] == 1
            # Clear the stage: the job leaves the queue so the next round starts clean.
            await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
            api.clock.advance(LEASE + 1)
            await reap_once(api.co)
