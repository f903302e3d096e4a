"""Queue statistics: counts per status and the age of the oldest queued job."""

from __future__ import annotations

from typing import Any

from fleet_datastore import Query, eq

from ..domain import JobStatus
from ..store import QUEUES_PARTITION
from .context import Coordinator

__all__ = ["queue_stats"]


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
