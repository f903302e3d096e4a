"""Retention (SPEC 12): terminal jobs are deleted after their retention, and only they."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import ManualClock
from fleet_coordinator.services import purge_once
from fleet_datastore import CosmosConfig, Page, Query

from .conftest import ADMIN, Api

PROVIDERS = ("memory", "sqlite")
"""Cosmos DB deletes by time to live instead: ``test_cosmos_expires_terminal_jobs_by_ttl``."""

WEEK = 604_800.0
MONTH = 2_592_000.0


async def _finish(api: Api, headers: dict[str, str], how: str) -> dict[str, Any]:
    job = await api.enqueue()
    if how == "cancelled":
        r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
        assert r.status_code == 200, r.text
        return await api.job(job["id"])
    (lease,) = await api.claim(headers)
    epoch = lease["lease"]["epoch"]
    if how == "succeeded":
        body: dict[str, Any] = {"epoch": epoch, "result": {"ok": True}}
        r = await api.client.post(f"/v1/jobs/{job['id']}/complete", json=body, headers=headers)
    else:
        body = {"epoch": epoch, "error": "x", "retryable": False}
        r = await api.client.post(f"/v1/jobs/{job['id']}/fail", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return await api.job(job["id"])


async def _exists(api: Api, job_id: str) -> bool:
    r = await api.client.get(f"/v1/jobs/{job_id}", headers=api.admin)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


async def test_terminal_jobs_are_deleted_after_their_retention_and_not_before(api: Api) -> None:
    """Succeeded jobs go after a week, failed and cancelled after thirty days, none earlier."""
    _, headers = await api.agent()
    succeeded = await _finish(api, headers, "succeeded")
    failed = await _finish(api, headers, "failed")
    cancelled = await _finish(api, headers, "cancelled")
    api.clock.advance(WEEK - 1)
    assert await purge_once(api.co) == 0
    api.clock.advance(1)
    assert await purge_once(api.co) == 1
    assert not await _exists(api, succeeded["id"])
    api.clock.advance(MONTH - WEEK - 1)
    assert await purge_once(api.co) == 0
    assert await _exists(api, failed["id"])
    assert await _exists(api, cancelled["id"])
    api.clock.advance(1)
    assert await purge_once(api.co) == 2
    assert not await _exists(api, failed["id"])
    assert not await _exists(api, cancelled["id"])
    metrics = (await api.client.get("/metrics")).text
    assert 'fleet_jobs_deleted_total{status="succeeded"} 1.0' in metrics
    assert 'fleet_jobs_deleted_total{status="failed"} 1.0' in metrics


async def test_queued_and_leased_jobs_are_never_deleted(api: Api) -> None:
    """However old, a job that is not terminal stays."""
    _, headers = await api.agent()
    first = await api.enqueue(lease_seconds=86_400)
    api.clock.advance(1)
    second = await api.enqueue()
    claimed = await api.claim(headers)
    assert [lease["job"]["id"] for lease in claimed] == [first["id"]]
    api.clock.advance(2 * MONTH)
    assert await purge_once(api.co) == 0
    assert await _exists(api, first["id"])
    assert await _exists(api, second["id"])


async def test_a_job_retried_after_the_sweep_read_it_is_not_deleted(api: Api) -> None:
    """The delete is conditional on the etag the sweep read: a retry in between wins."""
    _, headers = await api.agent()
    job = await _finish(api, headers, "failed")
    api.clock.advance(MONTH)
    jobs = api.co.containers.jobs
    original = jobs.query

    async def query_then_retry(query: Query) -> Page:
        page = await original(query)
        if page.items:
            r = await api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.admin)
            assert r.status_code == 200, r.text
        return page

    jobs.query = query_then_retry  # type: ignore[method-assign]
    try:
        assert await purge_once(api.co) == 0
    finally:
        jobs.query = original  # type: ignore[method-assign]
    assert (await api.job(job["id"]))["status"] == "queued"


async def test_a_deleted_jobs_idempotency_key_enqueues_a_new_job(api: Api) -> None:
    """Once retention deleted the job, its idempotency key is free again."""
    _, headers = await api.agent()
    first = await api.enqueue(idempotency_key="nightly-1")
    (lease,) = await api.claim(headers)
    body = {"epoch": lease["lease"]["epoch"]}
    r = await api.client.post(f"/v1/jobs/{first['id']}/complete", json=body, headers=headers)
    assert r.status_code == 200
    api.clock.advance(WEEK)
    assert await purge_once(api.co) == 1
    again = await api.enqueue(idempotency_key="nightly-1")
    assert again["status"] == "queued"
    assert again["attempts"] == 0


async def test_a_sweep_deletes_a_backlog_in_bounded_batches(api: Api) -> None:
    """A backlog larger than one sweep's batches drains over several sweeps."""
    ids: list[str] = []
    for _ in range(2):
        jobs = [{"kind": "k", "payload": {}} for _ in range(600)]
        r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
        assert r.status_code == 201
        ids += [j["id"] for j in r.json()["items"]]
    for job_id in ids:
        r = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.admin)
        assert r.status_code == 200
    api.clock.advance(MONTH)
    first = await purge_once(api.co)
    assert 0 < first < 1200
    total = first
    while (n := await purge_once(api.co)) > 0:
        total += n
    assert total == 1200


@asynccontextmanager
async def _cosmos_api(cosmos: CosmosConfig, succeeded: int, failed: int) -> AsyncIterator[Api]:
    """An app on a fresh database of the Cosmos-protocol server, with these retentions."""
    settings = Settings(
        store_url="cosmos://",
        cosmos_endpoint=cosmos.endpoint,
        cosmos_key=cosmos.key,
        cosmos_database=f"t{uuid.uuid4().hex[:16]}",
        admin_token=ADMIN,
        reaper_enabled=False,
        retain_succeeded_seconds=succeeded,
        retain_failed_seconds=failed,
    )
    app = create_app(settings, clock=ManualClock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, ManualClock(), app)


async def test_cosmos_expires_terminal_jobs_by_ttl(cosmos_server: CosmosConfig) -> None:
    """On Cosmos DB a terminal job carries ``ttl`` and is gone after it; a retry removes it."""
    async with _cosmos_api(cosmos_server, succeeded=1, failed=3600) as api:
        _, headers = await api.agent()
        done = await _finish(api, headers, "succeeded")
        cancelled = await _finish(api, headers, "cancelled")
        jobs = api.co.containers.jobs
        stored = await jobs.get(cancelled["id"], api.co.shard(cancelled["id"]))
        assert stored.body["ttl"] == 3601  # whole seconds from _ts: one more
        r = await api.client.post(f"/v1/jobs/{cancelled['id']}/retry", headers=api.admin)
        assert r.status_code == 200
        stored = await jobs.get(cancelled["id"], api.co.shard(cancelled["id"]))
        assert "ttl" not in stored.body
        assert await purge_once(api.co) == 0  # the reaper leaves it to the store
        # The store's own clock decides; poll it (bounded) rather than sleep blindly.
        for _ in range(40):
            if not await _exists(api, done["id"]):
                break
            await asyncio.sleep(0.1)
        assert not await _exists(api, done["id"])
        assert await _exists(api, cancelled["id"])


async def test_cosmos_never_expires_a_job_before_its_retention(cosmos_server: CosmosConfig) -> None:
    """Cosmos DB counts ``ttl`` from the write's second, rounded down: a job cancelled at
    .9 of a second with ``ttl`` equal to its 1 s retention was gone 0.1 s later (found by
    an audit: 404 at 3.7 s of a 4 s retention). With a second more it lives past it."""
    async with _cosmos_api(cosmos_server, succeeded=1, failed=1) as api:
        job = await api.enqueue()
        # The store's clock is the wall clock: cancel late in a second, so that the
        # write's second ends soon after it (a wait on that clock, not on our tasks).
        await asyncio.sleep((0.8 - time.time() % 1) % 1)
        r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
        assert r.status_code == 200, r.text
        await asyncio.sleep(0.5)  # past the end of the write's second, within its retention
        assert await _exists(api, job["id"]), "gone before its retention"
        for _ in range(40):  # and gone once it passed (bounded poll of the store's clock)
            if not await _exists(api, job["id"]):
                break
            await asyncio.sleep(0.1)
        assert not await _exists(api, job["id"])
