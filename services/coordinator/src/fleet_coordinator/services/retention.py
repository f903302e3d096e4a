"""Retention on memory and SQLite: the reaper deletes terminal jobs past their retention.

Cosmos DB does this itself: terminal jobs carry ``ttl`` (``store/codec.py``) and the
``jobs`` container has time to live on, so ``purge_once`` does nothing there.

Each sweep, per terminal status, queries ``status = s AND ended_at <= now - retention``
through the ``status, ended_at`` index in pages of ``_PAGE`` (at most ``_MAX_PAGES``
per status, so a backlog drains over several ticks instead of one long sweep), and
deletes each job *on the etag it read*: a job retried (or changed in any way) since
the query has a new etag, the delete fails, and the job stays. The job document is
its own idempotency record, so once it is gone its idempotency key is free again.
"""

from __future__ import annotations

from fleet_datastore import NotFoundError, PreconditionFailedError, Query, eq, le

from ..domain import TERMINAL_STATUSES, JobStatus
from .context import Coordinator

__all__ = ["purge_once"]

_PAGE = 200
_MAX_PAGES = 5
"""Pages per status one sweep deletes; the rest waits for the next tick."""


async def purge_once(co: Coordinator) -> int:
    """Delete terminal jobs whose retention has passed; return how many this replica deleted."""
    if co.ttl is not None:
        return 0  # the store expires them by their ``ttl``
    now = co.clock.now()
    deleted = 0
    for status in sorted(TERMINAL_STATUSES):
        deleted += await _purge_status(co, status, now - co.retention.seconds(status))
    return deleted


async def _purge_status(co: Coordinator, status: JobStatus, ended_before: float) -> int:
    deleted = 0
    query = Query(
        where=[eq("status", status.value), le("ended_at", ended_before)],
        order_by=["ended_at"],
        limit=_PAGE,
    )
    for _ in range(_MAX_PAGES):
        page = await co.jobs.query(query)
        for doc in page.items:
            try:
                # The etag of the terminal document we read: a retry since then
                # (or another replica's delete) makes this fail, never delete more.
                gone = await co.jobs.delete(doc.id, doc.partition_key, etag=doc.etag)
            except (PreconditionFailedError, NotFoundError):
                gone = False
            finally:
                co.job_cache.evict(doc.id)
            if not gone:
                continue
            deleted += 1
            co.metrics.deleted.labels(status.value).inc()
            co.log.info("coordinator.job.deleted", job_id=doc.id, status=status.value)
        if page.continuation is None:
            break
        query = Query(
            where=query.where, order_by=query.order_by, limit=_PAGE, continuation=page.continuation
        )
    return deleted
