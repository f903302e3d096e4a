"""copy_store reads the jobs a status at a time (they keep no id order across shards), so
it checks that it listed every document the source holds: a copy that left some out
fails (exit 1) instead of reporting a whole copy."""

from __future__ import annotations

import pytest
from fleet_coordinator.copy_store import CopyIncompleteError, copy_store
from fleet_coordinator.store import JOBS_SPEC
from fleet_datastore import store_from_url


async def test_a_copy_that_lists_fewer_documents_than_the_source_holds_fails() -> None:
    async with store_from_url("memory://") as source, store_from_url("memory://") as target:
        jobs = await source.create_container_if_not_exists(JOBS_SPEC)
        # A job document without a status: no listing of a status reads it.
        await jobs.create({"id": "j1", "pk": "s00", "queue": "q", "created_at": 1.0})
        with pytest.raises(CopyIncompleteError, match="0 documents listed and copied, but"):
            await copy_store(source, target, job_shards=4)


async def test_a_whole_copy_counts_every_document() -> None:
    async with store_from_url("memory://") as source, store_from_url("memory://") as target:
        jobs = await source.create_container_if_not_exists(JOBS_SPEC)
        for i, status in enumerate(("queued", "leased", "succeeded", "failed", "cancelled")):
            doc = {"id": f"j{i}", "pk": "s00", "queue": "q", "status": status}
            await jobs.create({**doc, "created_at": float(i)})
        counts = await copy_store(source, target, job_shards=4)
        assert counts["jobs"] == 5
        copied = await target.create_container_if_not_exists(JOBS_SPEC)
        assert await copied.count() == 5
