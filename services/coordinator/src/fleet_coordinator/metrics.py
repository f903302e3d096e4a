"""Prometheus metrics, one registry per app (nothing is created at import time)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_M = TypeVar("_M", Counter, Gauge, Histogram)


@dataclass
class Metrics:
    """The coordinator's metrics, registered on their own ``CollectorRegistry``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.enqueued = Counter("fleet_jobs_enqueued", "Jobs enqueued", ["queue"], registry=r)
        self.claims = Counter("fleet_claims", "Leases handed out", ["queue"], registry=r)
        self.conflicts = Counter(
            "fleet_conflicts", "Conditional writes lost to a racing writer", ["op"], registry=r
        )
        self.expiries = Counter(
            "fleet_lease_expiries", "Leases ended by the reaper", ["outcome"], registry=r
        )
        self.reaper_actions = Counter(
            "fleet_reaper_actions", "Jobs the reaper changed", ["status"], registry=r
        )
        self.finished = Counter(
            "fleet_jobs_finished", "Leases ended by agents", ["op", "status"], registry=r
        )
        self.deleted = Counter(
            "fleet_jobs_deleted", "Terminal jobs deleted by retention", ["status"], registry=r
        )
        self.occurrences = Counter(
            "fleet_schedule_occurrences",
            "Schedule occurrences: fired (enqueued by this replica) or skipped (missed)",
            ["result"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "fleet_queue_depth", "Jobs per queue and status", ["queue", "status"], registry=r
        )
        self.oldest_age = Gauge(
            "fleet_queue_oldest_queued_age_seconds",
            "Age of the oldest queued job",
            ["queue"],
            registry=r,
        )
        self.stats_age = Gauge(
            "fleet_queue_stats_age_seconds",
            "Seconds since the queue gauges were counted (NaN before the first count)",
            registry=r,
        )
        self.stats_age.set(math.nan)
        self.latency = Histogram(
            "fleet_request_seconds", "HTTP request latency", ["method", "route"], registry=r
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def labelled(self, metric: _M, *values: str) -> _M:
        """``metric.labels(*values)``, looked up once per label set and then kept.

        prometheus_client's ``labels`` takes a lock and builds its key on every call
        (~3 µs); the hot paths count every request and job. The child is the one
        ``labels`` keeps too, so nothing here outgrows the metric itself.
        """
        key = (id(metric), values)
        # Typed here rather than by ``typing.cast``: that is a Python call, and this
        # runs a few times a request.
        child: _M | None = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child
