"""Queue statistics: counts per status and the age of the oldest queued job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fleet_datastore import Query, eq

from ..domain import JobStatus
from ..store import QUEUES_PARTITION
from .context import Coordinator

__all__ = ["StatsSnapshot", "queue_stats"]


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


@dataclass
class StatsSnapshot:
    """The queue summaries, recounted at most once every ``max_age`` seconds per replica.

    Counting a queue's jobs per status is an index range count whose cost grows
    with the jobs kept (a million succeeded jobs are a million index entries; on
    Cosmos DB, request units), so the console's refreshes share one snapshot, and
    ``/metrics`` scrapes, which need no token, another: a request finding it older than
    ``max_age`` is answered from it at once while one recount runs in the
    background (stale-while-revalidate). Only the first request after start
    waits for a count. A pause or resume made here is written into the
    snapshot, so its page shows it at once.
    """

    max_age: float
    _items: list[dict[str, Any]] | None = None
    _at: float = 0.0
    _running: asyncio.Task[list[dict[str, Any]]] | None = None

    def set_paused(self, queue: str, paused: bool) -> None:
        """Show a pause or resume made on this replica before the next recount."""
        for item in self._items or []:
            if item["queue"] == queue:
                item["paused"] = paused
                return
        self._items = None  # a queue the snapshot does not know: count again

    def drop(self) -> None:
        """Forget the snapshot (the next request counts)."""
        self._items = None

    async def get(self, compute: Callable[[], Awaitable[list[dict[str, Any]]]]) -> Any:
        """The snapshot; recounted in the background when older than ``max_age``."""
        if self._running is None and (
            self._items is None or time.monotonic() - self._at >= self.max_age
        ):
            self._running = asyncio.create_task(self._recount(compute))
            # A background recount that fails (the store is down) is awaited by no one:
            # read its error here, and the next request after it counts again.
            self._running.add_done_callback(_seen)
        if self._items is not None:
            return self._items
        assert self._running is not None
        return await asyncio.shield(self._running)

    async def _recount(
        self, compute: Callable[[], Awaitable[list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        try:
            items = await compute()
            self._items, self._at = items, time.monotonic()
            return items
        finally:
            self._running = None


def _seen(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
