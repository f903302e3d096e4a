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

from collections.abc import Awaitable, Callable
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


async def _in_rounds(
    co: Coordinator,
    done: list[JobState],
    limit: int,
    listing: Callable[[int], Awaitable[list[Document]]],
    change: Callable[[Document], Awaitable[JobState | None]],
) -> None:
    """Change the listed jobs into ``done``; list again while racing calls take some.

    ``listing(n)`` gives up to ``n`` of the oldest matching jobs; ``change(doc)`` runs
    one job's transition, None when a racing call (or retention) got there first.
    """
    for _ in range(_ROUNDS):
        docs = await listing(limit - len(done))
        lost = False
        for doc in docs:
            # The listed document seeds the transition's first read; its etag makes it safe.
            co.job_cache.put(doc)
            new = await change(doc)
            if new is None:
                lost = True
            else:
                done.append(new)
        if not lost or not docs or len(done) >= limit:
            return


async def bulk_retry(
    co: Coordinator, match: JobFilter, status: JobStatus, limit: int
) -> list[JobState]:
    """Requeue up to ``limit`` of the oldest ``status`` (failed or cancelled) jobs matching."""

    async def listing(n: int) -> list[Document]:
        return await _oldest(co, match, status, n)

    async def retried(doc: Document) -> JobState | None:
        try:
            _, new = await transition(co, doc.id, domain.retry, "retry")
        except (ConflictError, NotFoundError):
            return None  # retried by a racing call (or deleted by retention) meanwhile
        co.log.info("coordinator.job.retried", job_id=new.id, epoch=new.epoch, bulk=True)
        return new

    done: list[JobState] = []
    try:
        await _in_rounds(co, done, limit, listing, retried)
    finally:
        # A store failure part-way (503) leaves the jobs retried before it requeued:
        # the long-polls are woken and the call summed up for them all the same.
        if done:
            co.notifier.notify()
        co.log.info("coordinator.jobs.bulk_retried", count=len(done), status=status.value)
    return done


async def bulk_cancel(co: Coordinator, match: JobFilter, limit: int) -> list[JobState]:
    """Cancel up to ``limit`` of the oldest non-terminal jobs matching (queued or leased)."""

    async def listing(n: int) -> list[Document]:
        queued = await _oldest(co, match, JobStatus.QUEUED, n)
        leased = await _oldest(co, match, JobStatus.LEASED, n, fresh=True)
        return sorted([*queued, *leased], key=lambda d: (float(d.body["created_at"]), d.id))[:n]

    async def cancelled(doc: Document) -> JobState | None:
        try:
            old, new = await transition(co, doc.id, domain.cancel, "cancel")
        except (ConflictError, NotFoundError):
            return None  # ended (or cancelled by a racing call) since the listing
        if new is old:
            return None  # a racing call requested its cancellation first
        co.log.info("coordinator.job.cancelled", job_id=new.id, status=new.status.value, bulk=True)
        return new

    done: list[JobState] = []
    try:
        await _in_rounds(co, done, limit, listing, cancelled)
    finally:
        co.log.info("coordinator.jobs.bulk_cancelled", count=len(done))  # a 503 part-way too
    return done
