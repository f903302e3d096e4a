"""Batches whose documents are too large together (2 MB a batch on Cosmos DB) are split.

The datastore refuses such a batch on every provider (``BatchTooLargeError``), as
Cosmos DB refuses the request. Before, the batch enqueue and the store copy sent
up to 100 documents per batch whatever their size: a batch of jobs with large
payloads failed on Cosmos DB after other shards' batches had landed.
"""

from __future__ import annotations

import fleet_datastore.container
import pytest
from fleet_coordinator.copy_store import copy_store
from fleet_coordinator.store import JOBS_SPEC
from fleet_datastore import MAX_BATCH_BYTES, store_from_url

from .conftest import Api


@pytest.mark.parametrize("bound", [12_000, 3_000])
async def test_a_batch_of_large_jobs_is_enqueued_whole(
    api: Api, monkeypatch: pytest.MonkeyPatch, bound: int
) -> None:
    """Every job is enqueued once, in batches that fit the bound (3,000: each job alone)."""
    # The tests' payload limit is 4 KB: a smaller bound stands in for Cosmos DB's 2 MB.
    monkeypatch.setattr(fleet_datastore.container, "MAX_BATCH_BYTES", bound)
    jobs = [{"kind": "big", "payload": {"blob": "x" * 3_500, "n": i}} for i in range(40)]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201, r.text
    ids = [job["id"] for job in r.json()["items"]]
    assert len(set(ids)) == 40
    for i, job_id in enumerate(ids):
        assert (await api.job(job_id))["payload"]["n"] == i
    assert await api.co.jobs.count() == 40


async def test_a_copy_of_large_documents_is_whole() -> None:
    """copy_store moves documents too large for one batch together."""
    blob = "x" * (MAX_BATCH_BYTES // 3)
    async with store_from_url("memory://") as source, store_from_url("memory://") as target:
        jobs = await source.create_container_if_not_exists(JOBS_SPEC)
        for i in range(4):
            body = {"status": ("queued", "succeeded")[i % 2], "created_at": float(i)}
            await jobs.create({"id": f"j{i}", "pk": "s0", "blob": blob, **body})
        counts = await copy_store(source, target, job_shards=1)
        assert counts["jobs"] == 4
        copied = await target.create_container_if_not_exists(JOBS_SPEC)
        assert await copied.count() == 4
