"""The one place that builds job listing queries (``GET /v1/jobs``, the bulk calls, the console).

Every listing is ordered by ``created_at`` (oldest first) and its equality
filters are exactly the fields an index of ``JOBS_SPEC`` leads with, so each
page is an index seek on every provider, never a scan of the jobs:

=========================  =====================================
filters                    index
=========================  =====================================
(none)                     ``created_at``
status                     ``status, created_at``
queue                      ``queue, created_at``
queue, status              ``queue, status, created_at``
kind                       ``kind, created_at``
kind, status               ``kind, status, created_at``
queue, kind                ``queue, kind, created_at``
queue, kind, status        ``queue, kind, status, created_at``
lock (+ anything)          ``lock, created_at``; the other filters are checked
                           within the lock's jobs, which are few by nature
=========================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet_datastore import Filter, Query, eq

__all__ = ["JobFilter", "listing_query"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a listing returns; None means any."""

    queue: str | None = None
    status: str | None = None
    kind: str | None = None
    lock: str | None = None


def listing_query(
    match: JobFilter,
    *,
    limit: int,
    continuation: str | None = None,
    status: str | None = None,
) -> Query:
    """The ordered, indexed query of the jobs ``match`` selects (``status`` overrides its own)."""
    wanted = status if status is not None else match.status
    where: list[Filter] = []
    # Equalities in the order of the index that serves them (the table above).
    if match.lock is not None:
        where.append(eq("lock", match.lock))
    if match.queue is not None:
        where.append(eq("queue", match.queue))
    if match.kind is not None:
        where.append(eq("kind", match.kind))
    if wanted is not None:
        where.append(eq("status", wanted))
    return Query(where=where, order_by=["created_at"], limit=limit, continuation=continuation)
