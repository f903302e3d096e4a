"""Queue statistics: counts per status and the age of the oldest queued job."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fleet_datastore import Query, eq

from ..domain import Clock, JobStatus, SystemClock
from ..errors import CoordinatorError, UnavailableError
from ..store import QUEUES_PARTITION
from .context import Coordinator

__all__ = ["RECOUNT_WAIT_SECONDS", "StatsSnapshot", "queue_stats"]


async def queue_stats(co: Coordinator, *, only: str | None = None) -> list[dict[str, Any]]:
    """One entry per known queue (or just ``only``): jobs per status, oldest queued age, paused."""
    now = co.clock.now()
    items: list[dict[str, Any]] = []
    markers = await co.agents.query(
        Query(where=[eq("kind", "queue")], partition_key=QUEUES_PARTITION)
    )
    if only is None and co.pauses.update(markers.items):  # what the reaper tick reads
        co.notifier.notify()  # a queue was resumed elsewhere: waiting claims may go
    for marker in sorted(markers.items, key=lambda d: str(d.body.get("name"))):
        queue = str(marker.body["name"])
        if only is not None and queue != only:
            continue
        entry: dict[str, Any] = {"queue": queue, "paused": bool(marker.body.get("paused"))}
        for status in JobStatus:
            where = [eq("queue", queue), eq("status", status.value)]
            entry[status.value] = await co.jobs.count(Query(where=where))
        oldest = await co.jobs.query(
            Query(
                where=[eq("queue", queue), eq("status", JobStatus.QUEUED.value)],
                order_by=["created_at"],
                limit=1,
            )
        )
        age = now - float(oldest.items[0].body["created_at"]) if oldest.items else 0.0
        entry["oldest_queued_age_seconds"] = max(age, 0.0)
        items.append(entry)
    for entry in items:
        for status in JobStatus:
            co.metrics.queue_depth.labels(entry["queue"], status.value).set(entry[status.value])
        co.metrics.oldest_age.labels(entry["queue"]).set(entry["oldest_queued_age_seconds"])
    return items


RECOUNT_WAIT_SECONDS = 5.0
"""How long a request waits for a recount before it takes the last snapshot.

Half of Prometheus' default ``scrape_timeout`` (10 s): a scrape that waited this long
still answers in time, with the last gauges and their age."""


@dataclass
class StatsSnapshot:
    """The queue summaries, recounted at most once every ``max_age`` seconds per replica.

    Counting a queue's jobs per status is an index range count whose cost grows
    with the jobs kept (a million succeeded jobs are a million index entries; on
    Cosmos DB, request units), so the console's refreshes and the ``/metrics``
    scrapes, which need no token, share one snapshot: a request finding it at most
    ``max_age`` old (by ``clock``) is answered from it, and one finding it older
    starts a recount, or joins the one running, and waits for it, at most ``wait``
    seconds. So a scrape reports the queues as they are, not as the previous
    scrape found them, and however many ask at once the store counts once.

    A recount that fails (the store is down) or takes longer than ``wait`` leaves
    the last snapshot in place, and the request gets that: ``age()`` says how old
    it is (``/metrics`` exports it as ``fleet_queue_stats_age_seconds``); a slow
    recount goes on and the next request finds it done. A recount is begun at most
    once per ``max_age``, whatever became of the last one, so a flood of requests
    during an outage costs no more store calls than a calm minute. Without any
    snapshot yet, the request gets the recount's error, or 503 when it is still
    running. A pause or resume made here is written into the snapshot, so its page
    shows it at once.
    """

    max_age: float
    clock: Clock = field(default_factory=SystemClock)
    wait: float = RECOUNT_WAIT_SECONDS
    _items: list[dict[str, Any]] | None = None
    _at: float | None = None  # when the recount of ``_items`` began (the clock's time)
    _begun: float | None = None  # when the last recount began, whatever became of it
    _failure: CoordinatorError | None = None  # why the last recount failed, if it did
    _running: asyncio.Task[None] | None = None

    def set_paused(self, queue: str, paused: bool) -> None:
        """Show a pause or resume made on this replica before the next recount."""
        for item in self._items or []:
            if item["queue"] == queue:
                item["paused"] = paused
                return
        self.drop()  # a queue the snapshot does not know: count again

    def drop(self) -> None:
        """Forget the snapshot (the next request counts)."""
        self._items = self._at = self._begun = None

    def age(self) -> float:
        """Seconds since the snapshot's recount began; NaN when there is none."""
        if self._at is None:
            return math.nan
        return max(self.clock.now() - self._at, 0.0)

    async def get(self, compute: Callable[[], Awaitable[list[dict[str, Any]]]]) -> Any:
        """The snapshot, recounted first (waiting at most ``wait``) when older than ``max_age``."""
        now = self.clock.now()
        items = self._items
        if items is not None and self._at is not None and _within(now, self._at, self.max_age):
            return items
        running = self._running
        if running is None and (self._begun is None or not _within(now, self._begun, self.max_age)):
            running = self._running = asyncio.create_task(self._recount(compute, now))
            running.add_done_callback(_seen)  # a defect no request waited for is read here
            self._begun = now
        if running is not None:
            # Neither cancels the recount at the timeout nor raises what it raised; a
            # caller that leaves does not cancel it for the others either.
            await asyncio.wait({running}, timeout=self.wait)
            defect = _defect(running)
            if defect is not None:
                raise defect  # not the store's failure: the caller's 500, as it was
        if self._items is None:
            if self._failure is not None:
                raise self._failure.with_traceback(None)  # raised again: no frames pile up
            raise UnavailableError("the queue counts are not ready yet; retry")
        return self._items

    async def _recount(
        self, compute: Callable[[], Awaitable[list[dict[str, Any]]]], begun: float
    ) -> None:
        try:
            items = await compute()
        except CoordinatorError as exc:
            self._failure = exc  # the last snapshot stays; its age shows
        except BaseException:
            self._begun = None  # a defect: the next request tries again
            raise
        else:
            self._items, self._at, self._failure = items, begun, None
        finally:
            self._running = None


def _within(now: float, then: float, seconds: float) -> bool:
    # A clock set back (the wall clock is) counts as past the bound: recount once.
    return 0.0 <= now - then < seconds


def _defect(task: asyncio.Task[None]) -> BaseException | None:
    if not task.done() or task.cancelled():
        return None
    return task.exception()


def _seen(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
