"""The coordinator's storage layer: container specs, shards and job document codec."""

from __future__ import annotations

from dataclasses import dataclass

from fleet_datastore import Container, DocumentStore

from .codec import (
    CODEC_KEY,
    CODEC_STAMP,
    Retention,
    agent_from_doc,
    agent_to_doc,
    held_to_doc,
    job_from_doc,
    job_patch,
    job_to_doc,
    patch_between,
)
from .layout import LAYOUT_ID, STORE_PARTITION, every_job, layout_doc, settle_job_shards
from .shards import (
    OCCURRENCE_KEY_PREFIX,
    is_valid_id,
    job_id_for_key,
    lock_id,
    new_id,
    new_ids,
    schedule_id,
    shard_of,
)
from .specs import (
    AGENTS_SPEC,
    CONTAINER_SPECS,
    JOBS_SPEC,
    LOCKS_SPEC,
    QUEUES_PARTITION,
    SCHEDULES_SPEC,
)

__all__ = [
    "AGENTS_SPEC",
    "CODEC_KEY",
    "CODEC_STAMP",
    "CONTAINER_SPECS",
    "JOBS_SPEC",
    "LAYOUT_ID",
    "LOCKS_SPEC",
    "OCCURRENCE_KEY_PREFIX",
    "QUEUES_PARTITION",
    "SCHEDULES_SPEC",
    "STORE_PARTITION",
    "Containers",
    "Retention",
    "agent_from_doc",
    "agent_to_doc",
    "every_job",
    "held_to_doc",
    "is_valid_id",
    "job_from_doc",
    "job_id_for_key",
    "job_patch",
    "job_to_doc",
    "layout_doc",
    "lock_id",
    "new_id",
    "new_ids",
    "open_containers",
    "patch_between",
    "schedule_id",
    "settle_job_shards",
    "shard_of",
]


@dataclass(frozen=True, slots=True)
class Containers:
    """The coordinator's containers on one open store."""

    store: DocumentStore
    jobs: Container
    agents: Container
    locks: Container
    schedules: Container


async def open_containers(store: DocumentStore) -> Containers:
    """Declare (create if missing) the coordinator's containers on an open store."""
    jobs = await store.create_container_if_not_exists(JOBS_SPEC)
    agents = await store.create_container_if_not_exists(AGENTS_SPEC)
    locks = await store.create_container_if_not_exists(LOCKS_SPEC)
    schedules = await store.create_container_if_not_exists(SCHEDULES_SPEC)
    return Containers(store, jobs, agents, locks, schedules)
