"""The store records its job shard count; a replica configured otherwise refuses to start.

Jobs are found by the shard their id has under ``FLEET_JOB_SHARDS``: a replica with
another value listed and leased the store's jobs but answered 404 to reading,
heartbeating and completing them (``store/layout.py``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fleet_coordinator import Settings, create_app
from fleet_coordinator.copy_store import copy_store
from fleet_coordinator.services import Coordinator
from fleet_coordinator.settings import SettingError
from fleet_coordinator.store import (
    LAYOUT_ID,
    STORE_PARTITION,
    layout_doc,
    open_containers,
    settle_job_shards,
)
from fleet_datastore import Container, DocumentStore, store_from_url
from structlog.testing import capture_logs

from .conftest import ADMIN, store_settings
from .replicas import PROVIDERS, replicas


def _app(
    provider: str, first: Coordinator, tmp_path: Path, request: pytest.FixtureRequest, **fields: Any
) -> FastAPI:
    """Another replica of ``first``'s store with ``fields`` changed."""
    store: DocumentStore | None = None
    if provider == "memory":
        store = first.containers.store  # one process: replicas share the object
        shared: dict[str, Any] = {"store_url": "memory://"}
    else:
        shared = {
            k: getattr(first.settings, k)
            for k in ("store_url", "cosmos_endpoint", "cosmos_key", "cosmos_database")
        }
    settings = Settings(**shared, admin_token=ADMIN, reaper_enabled=False, **fields)
    return create_app(settings, store=store)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_replica_with_another_shard_count_refuses_to_start(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """Its start fails naming ``FLEET_JOB_SHARDS`` and both values; the store is untouched."""
    async with AsyncExitStack() as stack:
        [first] = await replicas(provider, tmp_path, request, stack, 1)
        job = await first.enqueue()
        other = _app(provider, first.co, tmp_path, request, job_shards=3)
        with capture_logs() as logs, pytest.raises(SettingError) as refused:
            async with other.router.lifespan_context(other):
                pass
        assert str(refused.value).startswith(
            "FLEET_JOB_SHARDS is 3, but this store's jobs are spread over 16 shards"
        )
        assert [e["event"] for e in logs if e["log_level"] == "error"] == [
            "coordinator.start_refused"
        ]
        same = _app(provider, first.co, tmp_path, request, job_shards=16)
        async with same.router.lifespan_context(same):
            pass
        assert (await first.job(job["id"]))["status"] == "queued"
        record = await first.co.agents.get(LAYOUT_ID, STORE_PARTITION)
        assert record.body["job_shards"] == 16


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_replicas_starting_together_on_a_new_store_agree_on_the_first_record(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas both find no record; the one whose create loses reads the winner's."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(_store(provider, tmp_path, request))
        containers = await open_containers(store)
        create = Container.create

        async def rival_first(self: Container, body: dict[str, Any]) -> Any:
            if body.get("id") == LAYOUT_ID:
                monkeypatch.setattr(Container, "create", create)
                await create(self, layout_doc(8))  # the other replica's, between read and write
            return await create(self, body)

        monkeypatch.setattr(Container, "create", rival_first)
        with pytest.raises(SettingError, match=r"FLEET_JOB_SHARDS is 16, .* over 8 shards"):
            await settle_job_shards(containers.agents, containers.jobs, 16)
        await settle_job_shards(containers.agents, containers.jobs, 8)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_store_from_before_the_record_is_checked_against_its_jobs(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """No record, jobs written with 16 shards: 3 is refused (saying 16), 16 is recorded."""
    async with AsyncExitStack() as stack:
        [first] = await replicas(provider, tmp_path, request, stack, 1)
        for _ in range(30):
            await first.enqueue()
        agents, jobs = first.co.containers.agents, first.co.containers.jobs
        assert await agents.delete(LAYOUT_ID, STORE_PARTITION)
        with pytest.raises(SettingError) as refused:
            await settle_job_shards(agents, jobs, 3)
        assert str(refused.value).startswith(
            "FLEET_JOB_SHARDS is 3, but this store's jobs (30 of its jobs) are spread over "
        )
        assert " 16" in str(refused.value)
        assert not await agents.delete(LAYOUT_ID, STORE_PARTITION)  # nothing recorded
        await settle_job_shards(agents, jobs, 16)
        assert (await agents.get(LAYOUT_ID, STORE_PARTITION)).body["job_shards"] == 16


async def test_a_copy_records_the_target_s_shard_count() -> None:
    """copy_store re-keys the jobs to its shard count, and the target's record says so."""
    async with store_from_url("memory://") as source, store_from_url("memory://") as target:
        src = await open_containers(source)
        await settle_job_shards(src.agents, src.jobs, 16)
        await copy_store(source, target, job_shards=4)
        dst = await open_containers(target)
        await settle_job_shards(dst.agents, dst.jobs, 4)
        with pytest.raises(SettingError, match=r"FLEET_JOB_SHARDS is 16, .* over 4 shards"):
            await settle_job_shards(dst.agents, dst.jobs, 16)


def _store(provider: str, tmp_path: Path, request: pytest.FixtureRequest) -> DocumentStore:
    """A new, unopened store on ``provider``."""
    fields = store_settings(provider, tmp_path, request)
    return store_from_url(fields["store_url"], cosmos=Settings(**fields).cosmos_config())
