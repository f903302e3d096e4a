"""The two containers, their typed fields and indexes, declared once.

``jobs`` (partition key ``pk`` = shard of the id) holds one document per job,
with its lease and bounded run history inside, so every transition is one
conditional write. Top-level copies of what queries filter on:

* ``queue, status, -priority, created_at`` (+ ``run_after`` as a filter): the claim query;
* ``status, due_at``: the reaper (``due_at`` = min(lease expiry, attempt deadline),
  present only while leased);
* ``queue, status, created_at`` / ``status, created_at`` / ``created_at``: listing
  and the oldest queued job of a queue;
* ``queue, created_at``, ``kind, created_at``, ``kind, status, created_at``,
  ``queue, kind, created_at``, ``queue, kind, status, created_at`` and
  ``lock, created_at``: ``GET /v1/jobs`` filtered by kind, lock or queue alone and
  the bulk calls (``store/listing.py`` builds the queries; a listing by lock
  reads the lock's jobs and checks the other filters on them).

``kind`` and ``lock`` never change after enqueue, so the indexes without
``status`` cost a job write only when it is created; the two with ``status``
move on every status change, like the four that were there before.

``agents`` (partition key ``pk`` = the agent id, so a token's point read needs
only the id embedded in the token) holds agent documents (``kind = "agent"``)
and one marker per known queue (``kind = "queue"``, partition ``queues``), which
also carries the queue's ``paused`` flag (``services/pauses.py``).
"""

from __future__ import annotations

from fleet_datastore import ContainerSpec, Index

__all__ = ["AGENTS_SPEC", "CONTAINER_SPECS", "JOBS_SPEC", "QUEUES_PARTITION"]

JOBS_SPEC = ContainerSpec(
    name="jobs",
    partition_key="pk",
    fields={
        "queue": "str",
        "status": "str",
        "priority": "int",
        "created_at": "float",
        "run_after": "float",
        "due_at": "float",
        "kind": "str",
        # Written by the lock feature; absent until then, and a document without it
        # is simply in no lock's listing.
        "lock": "str",
    },
    # Every jobs query spans the shards, so no index needs a per-partition copy
    # (on SQLite that halves the indexes each job write updates: 6 instead of 12).
    indexes=(
        Index.of("queue", "status", "-priority", "created_at", per_partition=False),
        Index.of("status", "-priority", "created_at", per_partition=False),
        Index.of("status", "due_at", per_partition=False),
        # Listing indexes, most specific first: the memory provider walks the first
        # index whose leading fields the query's equalities cover (store/listing.py).
        Index.of("queue", "kind", "status", "created_at", per_partition=False),
        Index.of("queue", "status", "created_at", per_partition=False),
        Index.of("queue", "kind", "created_at", per_partition=False),
        Index.of("kind", "status", "created_at", per_partition=False),
        Index.of("lock", "created_at", per_partition=False),
        Index.of("queue", "created_at", per_partition=False),
        Index.of("kind", "created_at", per_partition=False),
        Index.of("status", "created_at", per_partition=False),
        Index.of("created_at", per_partition=False),
    ),
)

AGENTS_SPEC = ContainerSpec(
    name="agents",
    partition_key="pk",
    fields={"kind": "str", "created_at": "float"},
    indexes=(Index.of("kind", "created_at"),),
)

CONTAINER_SPECS = (JOBS_SPEC, AGENTS_SPEC)
"""Every container the coordinator declares (infra/azure/containers.json is generated from it)."""

QUEUES_PARTITION = "queues"
"""The partition of the queue marker documents in ``agents``."""
