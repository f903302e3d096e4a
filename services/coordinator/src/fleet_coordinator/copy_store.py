"""``python -m fleet_coordinator.copy_store --from URL --to URL``: copy a stopped fleet's state.

Moves every document of the coordinator's containers from one store to another,
e.g. from ``sqlite:///var/fleet.db`` to ``cosmos://`` (docs/cosmos.md, "Moving from
SQLite to Cosmos DB"). Job documents are re-keyed to the shard their id has under
the target's ``FLEET_JOB_SHARDS``, so the copy is also how a store changes its shard
count; the target's record of its shard count (``store/layout.py``) says so.
Writes are upserts in transactional batches per partition, so a copy that stopped
halfway can simply be run again.

Run it with every coordinator stopped: a write that lands after a document was
copied would be lost. Leases copied mid-flight keep their epochs and expiry; the
reaper of the new store ends the ones nobody renews.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fleet_datastore import (
    MAX_BATCH_OPERATIONS,
    BatchTooLargeError,
    Container,
    ContainerSpec,
    CosmosConfig,
    DatastoreError,
    DocumentStore,
    Query,
    UpsertOp,
    store_from_url,
)

from .cli import settings_or_exit
from .errors import CoordinatorError
from .settings import Settings
from .store import (
    AGENTS_SPEC,
    CONTAINER_SPECS,
    JOBS_SPEC,
    LAYOUT_ID,
    every_job,
    layout_doc,
    shard_of,
)

__all__ = ["CopyIncompleteError", "copy_store", "main"]

PAGE = 1_000


class CopyIncompleteError(CoordinatorError):
    """The source holds documents the copy did not list: it is not a whole copy.

    ``main`` reports it as it does a store failure: one line on stderr and exit 1
    (the copy is upserts, so a rerun once every coordinator is stopped is harmless).
    """

    code = "copy_incomplete"


async def copy_store(
    source: DocumentStore, target: DocumentStore, job_shards: int
) -> dict[str, int]:
    """Upsert every document of every coordinator container; return the count per container."""
    counts: dict[str, int] = {}
    for spec in CONTAINER_SPECS:
        src = await source.create_container_if_not_exists(spec)
        dst = await target.create_container_if_not_exists(spec)
        copied = 0
        # The jobs have no id order across shards (``JOBS_SPEC.id_order``): a status at a time.
        queries = every_job(PAGE) if spec is JOBS_SPEC else [Query(limit=PAGE)]
        for query in queries:
            copied += await _copy(src, dst, spec, job_shards, query)
        stored = await src.count()
        if copied != stored:
            # The jobs are read a status at a time, so a job without a status or a
            # created_at (or one written meanwhile by a coordinator still running) would
            # be left out silently: say so instead of reporting a complete copy.
            raise CopyIncompleteError(
                f"{spec.name}: {copied} documents listed and copied, but the source holds "
                f"{stored}; is a coordinator still running on it?"
            )
        if spec is AGENTS_SPEC:
            # Last, once the jobs are where it says: a coordinator started on the target
            # with another FLEET_JOB_SHARDS refuses to (a store from before the record
            # has none, and a target of such a store gets one).
            await dst.upsert(layout_doc(job_shards))
        counts[spec.name] = copied
    return counts


async def _copy(
    src: Container, dst: Container, spec: ContainerSpec, job_shards: int, query: Query
) -> int:
    """Upsert every document ``query`` lists, page by page; return how many it listed."""
    copied = 0
    while True:
        page = await src.query(query)
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in page.items:
            body = dict(doc.body)
            if spec is JOBS_SPEC:
                body[spec.partition_key] = shard_of(doc.id, job_shards)
            elif spec is AGENTS_SPEC and doc.id == LAYOUT_ID:
                continue  # the source's shard count: the target's is written after
            by_partition[body[spec.partition_key]].append(body)
        for partition, bodies in sorted(by_partition.items()):
            for start in range(0, len(bodies), MAX_BATCH_OPERATIONS):
                await _upsert(dst, partition, bodies[start : start + MAX_BATCH_OPERATIONS])
        copied += len(page.items)
        if page.continuation is None:
            return copied
        query = dataclasses.replace(query, continuation=page.continuation)


async def _upsert(dst: Container, partition: str, bodies: list[dict[str, Any]]) -> None:
    """Upsert ``bodies`` in one batch; in halves when they are too large together
    (2 MB a batch on Cosmos DB), and one alone when it is too large for a batch."""
    try:
        await dst.batch(partition, [UpsertOp(b) for b in bodies])
    except BatchTooLargeError:
        if len(bodies) == 1:
            await dst.upsert(bodies[0])
            return
        half = len(bodies) // 2
        await _upsert(dst, partition, bodies[:half])
        await _upsert(dst, partition, bodies[half:])


async def _run(source_url: str, target_url: str, settings: Settings) -> dict[str, int]:
    cosmos = CosmosConfig(settings.cosmos_endpoint, settings.cosmos_key, settings.cosmos_database)
    async with (
        store_from_url(source_url, cosmos=cosmos) as source,
        store_from_url(target_url, cosmos=cosmos) as target,
    ):
        return await copy_store(source, target, settings.job_shards)


def main(argv: Sequence[str] | None = None) -> int:
    """Copy, print one line per container; a store error is one line on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m fleet_coordinator.copy_store")
    parser.add_argument("--from", dest="source", required=True, help="source store URL")
    parser.add_argument("--to", dest="target", required=True, help="target store URL")
    args = parser.parse_args(argv)
    # FLEET_COSMOS_* for a cosmos:// side; FLEET_JOB_SHARDS for the target's shard count.
    settings = settings_or_exit("python -m fleet_coordinator.copy_store")
    try:
        counts = asyncio.run(_run(args.source, args.target, settings))
    except (DatastoreError, CopyIncompleteError) as exc:
        print(f"copy failed: {exc}", file=sys.stderr)
        return 1
    for name, count in counts.items():
        print(f"{name}: {count} documents copied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
