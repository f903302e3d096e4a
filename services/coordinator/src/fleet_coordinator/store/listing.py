"""The one place that builds job listings (``GET /v1/jobs``, the bulk calls, the console).

Every listing is ordered by ``created_at`` (oldest first) and its equality
filters are exactly the fields an index of ``JOBS_SPEC`` leads with, so each
page is an index seek on every provider, never a scan of the jobs:

=========================  =====================================
filters                    index
=========================  =====================================
status                     ``status, created_at`` (all but leased jobs)
queue, status              ``queue, status, created_at``
kind, status               ``kind, status, created_at``
queue, kind, status        ``queue, kind, status, created_at``
(none), queue, kind,       one of the four above per status, and the leased
queue + kind               jobs' index for ``leased``, merged (below)
lock (+ anything)          ``lock, created_at``, and the other filters checked
                           here on the lock's jobs, which are few by nature
status leased (+ queue,    ``status, created_at`` over leased jobs only, and
kind)                      the other filters checked here
=========================  =====================================

A listing without a status asks the store for ``status`` in every status with
``split_in="status"``: the store answers it as one query per status, every one
resuming after the same job (the continuation's one position), and merges them
by ``created_at``, id and shard (``docs/datastore.md``, *One query per value*).
Each at-rest status is read from the listing index with ``status`` its other
filters lead, and ``leased`` from the leased jobs' own index, the store checking
queue and kind on those few jobs. So no listing index leaves ``status`` out: each
would cost every enqueue one more B-tree insert (the four there were took ~10 %
of a served enqueue's CPU on SQLite), for listings that are far rarer than
enqueues. A page reads up to ``limit + 1`` jobs of each of the five statuses
instead of ``limit + 1`` in all (a page of 100 on SQLite: 1.4 to 3 ms instead of
0.2 ms, ``docs/architecture.md``).

A lock listing asks the store for the lock alone: with more equalities a
store's planner may prefer a wider index (SQLite picks the one matching the
most of them) and walk a whole queue for the few jobs of one lock. A listing of
leased jobs likewise asks for ``status = leased`` alone and checks the queue and
kind here: the listing indexes with ``status`` leave leased jobs out (a claim
then takes a job out of them once and its end puts it back once, instead of
moving it twice), and the leased jobs, at most the fleet's capacity, have an
index of their own (``status, created_at`` over leased jobs only).

The four indexes with ``status`` change on a job's claim and on its end (the
claim, reaper and retention indexes are partial and move far less:
``store/specs.py``). All four stay, although serving ``kind, status`` (and
``queue, kind, status``) from ``status, created_at`` (``queue, status,
created_at``) plus a kind check, as a lock listing does, would spare two of
them: retained terminal jobs of other kinds may far outnumber a kind's, so such
a walk would be bounded only by giving up (a short page), and the bulk calls,
which always ask for one status and start from the oldest job each call, would
then never reach a kind's failed or queued jobs behind the others' history. A
listing may ask for any status, so the four hold every status a job keeps for
long: all but ``leased``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fleet_datastore import Document, Filter, Page, Query, eq, in_

from ..domain import JobStatus

__all__ = ["JobFilter", "list_page", "listing_query"]

_LEASED_STATUS = JobStatus.LEASED.value

_STATUSES = tuple(s.value for s in JobStatus)
"""Every status: a listing without one reads each status's index range (see above)."""

_NARROW_PAGES = 10
"""Store pages one lock (or leased) listing reads past jobs the other filters leave out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a listing returns; None means any."""

    queue: str | None = None
    status: str | None = None
    kind: str | None = None
    lock: str | None = None


def _narrowed(match: JobFilter) -> bool:
    """True when the store is asked for the lock, or for the leased jobs, alone (see above)."""
    return match.lock is not None or match.status == _LEASED_STATUS


def listing_query(match: JobFilter, limit: int, continuation: str | None = None) -> Query:
    """The store query of a listing: the lock or leased status alone, or split by status."""
    where: list[Filter] = []
    if match.lock is not None:
        where.append(eq("lock", match.lock))
    elif match.status == _LEASED_STATUS:
        where.append(eq("status", _LEASED_STATUS))
    else:
        # Equalities in the order of the index that serves them (the table above).
        if match.queue is not None:
            where.append(eq("queue", match.queue))
        if match.kind is not None:
            where.append(eq("kind", match.kind))
        if match.status is not None:
            where.append(eq("status", match.status))
        else:
            # One store query per status, merged by the store (``split_in``).
            where.append(in_("status", _STATUSES))
            return Query(
                where=where,
                order_by=["created_at"],
                limit=limit,
                continuation=continuation,
                split_in="status",
            )
    return Query(where=where, order_by=["created_at"], limit=limit, continuation=continuation)


def _keeps(match: JobFilter, doc: Document) -> bool:
    body = doc.body
    return (
        (match.queue is None or body.get("queue") == match.queue)
        and (match.kind is None or body.get("kind") == match.kind)
        and (match.status is None or body.get("status") == match.status)
    )


class Queryable(Protocol):
    """What a listing needs of the jobs container: its query (raw or guarded)."""

    async def query(self, query: Query) -> Page:
        """One page of ``query``."""
        ...


async def list_page(
    jobs: Queryable, match: JobFilter, *, limit: int, continuation: str | None = None
) -> tuple[list[Document], str | None]:
    """Up to ``limit`` jobs ``match`` selects, oldest first, and the continuation after them.

    Raises the store's ``InvalidContinuationError`` for a continuation of another listing.
    """
    page = await jobs.query(listing_query(match, limit, continuation))
    if not _narrowed(match):
        return page.items, page.continuation
    found = [d for d in page.items if _keeps(match, d)]
    cont = page.continuation
    for _ in range(_NARROW_PAGES - 1):
        if len(found) >= limit or cont is None:
            break
        # Ask for only what is missing, so the continuation lands after the last job kept.
        page = await jobs.query(listing_query(match, limit - len(found), cont))
        found.extend(d for d in page.items if _keeps(match, d))
        cont = page.continuation
    return found, cont
