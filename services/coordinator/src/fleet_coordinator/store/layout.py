"""The store's record of its job shard count, written once, checked at every start.

A job's partition is a function of its id and ``FLEET_JOB_SHARDS`` (``shards.py``), so
a replica started with another value than the store's jobs were written with reads
them in the wrong partition: they are listed, claimed and leased (queries span the
shards) but 404 for ``GET``, heartbeats and completions. The record is one document
in ``agents``, in a partition of its own (``store``) that no query of agents, queue
markers or sessions reads; its id holds a ``.``, which no agent id does, so no token
can name it. ``copy_store`` writes the target's.

Cost: one point read per start. A store without the record (new, or written before
the record existed) also costs a query of at most ``SAMPLE`` jobs a status and one
create, once.
"""

from __future__ import annotations

from typing import Any

from fleet_datastore import AlreadyExistsError, Container, Document, NotFoundError, Query, eq

from ..domain import JobStatus
from ..settings import SettingError
from .shards import shard_of

__all__ = [
    "LAYOUT_ID",
    "SAMPLE",
    "STORE_PARTITION",
    "every_job",
    "layout_doc",
    "settle_job_shards",
]

STORE_PARTITION = "store"
"""The partition of the store's own record in ``agents``."""
LAYOUT_ID = "store.layout"
"""The id of the record."""
SAMPLE = 100
"""Jobs a store without a record is checked against before it gets one."""

_MOST_SHARDS = 256
"""The largest ``FLEET_JOB_SHARDS`` (``settings.py``): the values a sample is tried with."""

_COPY = 'copy the store to change it (docs/cosmos.md, "Changing the shard count")'


def every_job(limit: int) -> list[Query]:
    """Queries that together list every job once: one a status, oldest first.

    The jobs container keeps no id order across its shards (``JOBS_SPEC.id_order``),
    so a query of all jobs names an order an index serves: every job has a status
    and a ``created_at``, and the ``status, created_at`` listing indexes (one of the
    jobs at rest, one of the leased) hold them all on every provider.
    """
    return [
        Query(where=[eq("status", status.value)], order_by=["created_at"], limit=limit)
        for status in JobStatus
    ]


def layout_doc(job_shards: int) -> dict[str, Any]:
    """The record of a store whose jobs spread over ``job_shards`` partitions."""
    return {"id": LAYOUT_ID, "pk": STORE_PARTITION, "kind": "store", "job_shards": job_shards}


async def settle_job_shards(agents: Container, jobs: Container, configured: int) -> None:
    """Check ``configured`` against the store's record; record it on a store without one.

    ``SettingError`` naming ``FLEET_JOB_SHARDS`` and both values when they differ.
    """
    # 1. Read the record: every start of a store that has one stops here.
    try:
        stored = await agents.get(LAYOUT_ID, STORE_PARTITION)
    except NotFoundError:
        pass
    else:
        _compare(stored, configured)
        return
    # 2. No record: a new store, or one from before the record existed, whose jobs
    #    must already be where ``configured`` puts them.
    sample: list[Document] = []
    for query in every_job(SAMPLE):
        if len(sample) < SAMPLE:
            sample += (await jobs.query(query)).items
    _check_sample(sample[:SAMPLE], configured)
    # 3. Create it. Replicas starting together on a new store race here: one create
    #    wins, and the others compare with the winner's, so all agree or stop.
    try:
        await agents.create(layout_doc(configured))
    except AlreadyExistsError:
        _compare(await agents.get(LAYOUT_ID, STORE_PARTITION), configured)


def _compare(stored: Document, configured: int) -> None:
    recorded = int(stored.body["job_shards"])
    if recorded != configured:
        raise SettingError(
            f"FLEET_JOB_SHARDS is {configured}, but this store's jobs are spread over "
            f"{recorded} shards (recorded when it was created): set FLEET_JOB_SHARDS="
            f"{recorded}, or {_COPY}"
        )


def _check_sample(sample: list[Document], configured: int) -> None:
    if all(shard_of(doc.id, configured) == doc.partition_key for doc in sample):
        return
    fits = [
        n
        for n in range(1, _MOST_SHARDS + 1)
        if all(shard_of(doc.id, n) == doc.partition_key for doc in sample)
    ]
    seen = f"{len(sample)} of its jobs"
    if not fits:
        raise SettingError(
            f"FLEET_JOB_SHARDS is {configured}, but this store's jobs ({seen}) were written "
            f"with more than one shard count: {_COPY}, which re-keys every job"
        )
    if len(fits) == 1:
        spread, fix = f"{fits[0]} shards", f"set FLEET_JOB_SHARDS={fits[0]}"
    else:
        shown = ", ".join(str(n) for n in fits[:5]) + (", …" if len(fits) > 5 else "")
        spread, fix = (
            f"one of {shown} shards",
            "set FLEET_JOB_SHARDS to the one they were written with",
        )
    raise SettingError(
        f"FLEET_JOB_SHARDS is {configured}, but this store's jobs ({seen}) are spread over "
        f"{spread}: {fix}, or {_COPY}"
    )
