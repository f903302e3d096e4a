"""Bulk redrive and bulk cancel: the oldest matching jobs, each as by its single endpoint.

Each job goes through the same compare-and-swap transition as ``POST
/v1/jobs/{id}/retry`` or ``/cancel``, starting from the document the listing
query returned. Two calls running at once (on one replica or two) list the
same jobs, but only one conditional write per job can win: the other call's
write conflicts, it re-reads, the domain refuses (the job is no longer failed,
or already cancelled) and the job is left out of its answer. So a job is
retried once however many bulk calls race, and never by a read-check-write.

A call that lost jobs to a racing one lists again for what its limit has left
(``_ROUNDS``): the jobs the racer took no longer match, so the next listing
holds those behind them. A call answers fewer than its limit only when a
listing came back short, or after ``_ROUNDS`` rounds of losing every race.
(Listing once, four calls of 40 racing over 60 cancelled jobs retried 42 of
them on Cosmos DB: the other three answered 0, 2 and 0 with 18 still left.)
"""

from __future__ import annotations

from dataclasses import replace

from fleet_datastore import Document

from .. import domain
from ..domain import JobState, JobStatus
from ..errors import ConflictError, NotFoundError
from ..store.listing import JobFilter, list_page
from .context import Coordinator
from .transitions import transition

__all__ = ["bulk_cancel", "bulk_retry"]

_PAGES = 5
"""Pages one listing reads past jobs a racing call took, before it answers with fewer."""
_ROUNDS = 5
"""Listings one call makes while racing calls take the jobs it listed."""


async def _oldest(
    co: Coordinator, match: JobFilter, status: JobStatus, limit: int, *, fresh: bool = False
) -> list[Document]:
    """Up to ``limit`` jobs of ``status`` matching ``match``, oldest first.

    ``fresh`` leaves out leased jobs whose cancellation is already requested
    (SPEC: they are not matched again); they are few, as leases are.

    Leased jobs are walked to the end if need be: their listing checks queue and
    kind on each leased job (``store/listing.py``), so the matches may lie behind
    many of other queues, and there are at most as many as the fleet has slots.
    Other statuses give up after ``_PAGES`` pages of jobs racing calls took.
    """
    found: list[Document] = []
    cont: str | None = None
    only = replace(match, status=status.value)
    pages = 0
    while status is JobStatus.LEASED or pages < _PAGES:
        pages += 1
        docs, cont = await list_page(co.jobs, only, limit=limit, continuation=cont)
        found.extend(d for d in docs if not (fresh and d.body.get("cancel_requested")))
        if len(found) >= limit or cont is None:
            break
    return found[:limit]


async def bulk_retry(
    co: Coordinator, match: JobFilter, status: JobStatus, limit: int
) -> list[JobState]:
    """Requeue up to ``limit`` of the oldest ``status`` (failed or cancelled) jobs matching."""
    done: list[JobState] = []
    try:
        for _ in range(_ROUNDS):
            docs = await _oldest(co, match, status, limit - len(done))
            lost = False
            for doc in docs:
                # The listed document seeds the transition's first read; its etag makes it safe.
                co.job_cache.put(doc)
                try:
                    _, new = await transition(co, doc.id, domain.retry, "retry")
                except (ConflictError, NotFoundError):
                    lost = True  # retried by a racing call (or deleted by retention) meanwhile
                    continue
                done.append(new)
                co.log.info("coordinator.job.retried", job_id=new.id, epoch=new.epoch, bulk=True)
            if not lost or not docs or len(done) >= limit:
                break
    finally:
        # A store failure part-way (503) leaves the jobs retried before it requeued:
        # the long-polls are woken and the call summed up for them all the same.
        if done:
            co.notifier.notify()
        co.log.info("coordinator.jobs.bulk_retried", count=len(done), status=status.value)
    return done


async def _cancellable(co: Coordinator, match: JobFilter, limit: int) -> list[Document]:
    """Up to ``limit`` of the oldest queued or leased (not yet cancel-requested) jobs."""
    queued = await _oldest(co, match, JobStatus.QUEUED, limit)
    leased = await _oldest(co, match, JobStatus.LEASED, limit, fresh=True)
    return sorted([*queued, *leased], key=lambda d: (float(d.body["created_at"]), d.id))[:limit]


async def bulk_cancel(co: Coordinator, match: JobFilter, limit: int) -> list[JobState]:
    """Cancel up to ``limit`` of the oldest non-terminal jobs matching (queued or leased)."""
    done: list[JobState] = []
    try:
        for _ in range(_ROUNDS):
            docs = await _cancellable(co, match, limit - len(done))
            lost = False
            for doc in docs:
                co.job_cache.put(doc)
                try:
                    old, new = await transition(co, doc.id, domain.cancel, "cancel")
                except (ConflictError, NotFoundError):
                    lost = True  # ended (or cancelled by a racing call) since the listing
                    continue
                if new is old:
                    lost = True  # a racing call requested its cancellation first
                    continue
                done.append(new)
                co.log.info(
                    "coordinator.job.cancelled", job_id=new.id, status=new.status.value, bulk=True
                )
            if not lost or not docs or len(done) >= limit:
                break
    finally:
        co.log.info("coordinator.jobs.bulk_cancelled", count=len(done))  # a 503 part-way too
    return done
