"""The coordinator's containers, their typed fields and indexes, declared once.

``jobs`` (partition key ``pk`` = shard of the id) holds one document per job,
with its lease and bounded run history inside, so every transition is one
conditional write. Top-level copies of what queries filter on:

* ``queue, status, -priority, created_at`` (+ ``run_after`` as a filter): the claim query;
* ``status, due_at``: the reaper (``due_at`` = min(lease expiry, attempt deadline),
  present only while leased);
* ``queue, status, created_at`` / ``status, created_at``: listing and the oldest
  queued job of a queue;
* ``kind, status, created_at``, ``queue, kind, status, created_at`` and
  ``lock, created_at``: ``GET /v1/jobs`` filtered by kind or lock, and the bulk
  calls (``store/listing.py`` builds the queries; a listing by lock reads the
  lock's jobs and checks the other filters on them). A listing without a status
  reads these one status at a time and merges them (``split_in``), so no listing
  index leaves ``status`` out: each would be one more B-tree insert per enqueue;
* ``status, lock, -priority, created_at``: claims reaching past lock-blocked jobs;
* ``status, ended_at``: retention on memory and SQLite (``ended_at`` is present only
  on terminal jobs; on Cosmos DB their ``ttl`` field does the same work).

``lock`` never changes after enqueue, so its index costs a job write only when it
is created; the listing ones with ``status`` move on every status change. The
claim, reaper and retention indexes are partial (memory and SQLite): the claim
ones hold only queued jobs, the reaper's only leased ones (``due_at``) and the
retention one only terminal ones (``ended_at``), so a job's claim or completion
moves each of them at most once, and its enqueue skips the last two
(``docs/architecture.md``).

Two B-trees are not there for a job insert to update on SQLite: the ``lock,
created_at`` index holds only jobs with a lock (a listing never asks for lock
``""``), and there is no ``(id, pk)`` index (``id_order=False``: every jobs query
names an order or a shard; ``layout.every_job`` reads all jobs a status at a time).

``agents`` (partition key ``pk`` = the agent id, so a token's point read needs
only the id embedded in the token) holds agent documents (``kind = "agent"``)
and one marker per known queue (``kind = "queue"``, partition ``queues``), which
also carries the queue's ``paused`` flag (``services/pauses.py``).
"""

from __future__ import annotations

from fleet_datastore import ContainerSpec, Index, Not

from ..domain import JobStatus

__all__ = [
    "AGENTS_SPEC",
    "CONTAINER_SPECS",
    "JOBS_SPEC",
    "LOCKS_SPEC",
    "QUEUES_PARTITION",
    "SCHEDULES_SPEC",
]

_QUEUED = {"status": JobStatus.QUEUED.value}
"""The condition of the claim indexes: claims only ever look for queued jobs."""

_LEASED = {"status": JobStatus.LEASED.value}
"""The condition of the index listing leased jobs (at most the fleet's capacity)."""

_AT_REST = {"status": tuple(s.value for s in JobStatus if s is not JobStatus.LEASED)}
"""The condition of the listing indexes with ``status``: every job no lease holds."""

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
        "lock": "str",
        "ended_at": "float",
    },
    # Every jobs query spans the shards, so no index needs a per-partition copy
    # (on SQLite that halves the indexes each job write updates: 6 instead of 12).
    # The claim, reaper and retention indexes are partial (memory and SQLite): each
    # holds only the jobs its queries can return, so a job enters the claim indexes
    # at enqueue and leaves them at its claim, the reaper's while leased and the
    # retention one at its end, and every other write leaves them alone.
    indexes=(
        Index.of("queue", "status", "-priority", "created_at", per_partition=False, where=_QUEUED),
        Index.of("status", "-priority", "created_at", per_partition=False, where=_QUEUED),
        # ``due_at`` is present only while leased, ``ended_at`` only once terminal.
        Index.of("status", "due_at", per_partition=False, sparse=True),
        # Listing indexes, most specific first: the memory provider walks the first
        # index whose leading fields the query's equalities cover (store/listing.py).
        # Those with ``status`` leave leased jobs out, so a claim only takes a job out
        # of them and its end only puts it back, instead of moving it twice; the
        # leased jobs, few by nature, have an index of their own. None leaves
        # ``status`` out: a listing without one merges one query per status.
        Index.of("queue", "kind", "status", "created_at", per_partition=False, where=_AT_REST),
        Index.of("queue", "status", "created_at", per_partition=False, where=_AT_REST),
        Index.of("kind", "status", "created_at", per_partition=False, where=_AT_REST),
        # Only the jobs with a lock: a listing never asks for lock "" (the lockless).
        Index.of("lock", "created_at", per_partition=False, where={"lock": Not("")}),
        Index.of("status", "created_at", per_partition=False, where=_AT_REST),
        Index.of("status", "created_at", per_partition=False, where=_LEASED),
        # Claims reaching past jobs whose lock is held: lockless jobs (lock = "") in
        # claim order, and the head of each next lock (services/locks.py).
        Index.of("status", "lock", "-priority", "created_at", per_partition=False, where=_QUEUED),
        # Retention on memory and SQLite: terminal jobs by when they ended.
        Index.of("status", "ended_at", per_partition=False, sparse=True),
    ),
    # Cosmos DB: time to live on, and only terminal jobs carry a ``ttl`` (retention).
    default_ttl=-1,
    # Every jobs query names an order or a shard: no (id, pk) index to update (SQLite).
    id_order=False,
)

AGENTS_SPEC = ContainerSpec(
    name="agents",
    partition_key="pk",
    fields={"kind": "str", "created_at": "float"},
    indexes=(Index.of("kind", "created_at"),),
)

LOCKS_SPEC = ContainerSpec(name="locks", partition_key="pk")
"""One document per *held* lock, id and partition key both ``lock_id(name)``.

A partition per lock: acquiring or releasing one lock never contends with any
other lock's writes. Only point reads and conditional writes touch it (no query,
so no declared field or index); a released lock's document is deleted, so the
container holds only the locks held right now.
"""

SCHEDULES_SPEC = ContainerSpec(
    name="schedules",
    partition_key="pk",
    fields={"kind": "str", "name": "str"},
    indexes=(Index.of("kind", "name", per_partition=False),),
)
"""One document per schedule, id and partition key both ``schedule_id(name)``.

A partition per schedule: the scheduler's conditional writes on one schedule
(every replica, every tick it is due) never contend with another's. Listing is
one cross-partition query on ``kind = "schedule"`` ordered by name.
"""

CONTAINER_SPECS = (JOBS_SPEC, AGENTS_SPEC, LOCKS_SPEC, SCHEDULES_SPEC)
"""Every container the coordinator declares (infra/azure/containers.json is generated from it)."""

QUEUES_PARTITION = "queues"
"""The partition of the queue marker documents in ``agents``."""
