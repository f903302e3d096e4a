"""``Throughput``: jobs enqueued, succeeded and failed per minute, kept in memory per replica.

The console draws the last hour from these counters, so a refresh costs no
store request at all (counting finished jobs per minute from the store would
be a scan). Each replica counts what it did itself; with several replicas
behind a balancer each console page shows the replica that served it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Event", "MinuteCounts", "Throughput"]

_KEEP_MINUTES = 60


class Event(StrEnum):
    """What is counted."""

    ENQUEUED = "enqueued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """One minute's counts; ``minute`` is the epoch minute (seconds // 60)."""

    minute: int
    enqueued: int
    succeeded: int
    failed: int


@dataclass
class Throughput:
    """Per-minute counters for the last hour (a dict of at most 61 small lists)."""

    _minutes: dict[int, list[int]] = field(default_factory=dict)

    def add(self, event: Event, now: float, count: int = 1) -> None:
        """Count ``count`` events at ``now`` (epoch seconds)."""
        minute = int(now // 60)
        slot = self._minutes.get(minute)
        if slot is None:
            slot = self._minutes[minute] = [0, 0, 0]
            # A new minute began: forget the ones that left the hour (at most once a minute).
            for old in [m for m in self._minutes if m <= minute - _KEEP_MINUTES]:
                del self._minutes[old]
        slot[_INDEX[event]] += count

    def last_hour(self, now: float) -> list[MinuteCounts]:
        """Sixty entries, oldest first, ending with the current minute (zeros where idle)."""
        current = int(now // 60)
        out: list[MinuteCounts] = []
        for minute in range(current - _KEEP_MINUTES + 1, current + 1):
            e, s, f = self._minutes.get(minute, (0, 0, 0))
            out.append(MinuteCounts(minute, e, s, f))
        return out


_INDEX = {Event.ENQUEUED: 0, Event.SUCCEEDED: 1, Event.FAILED: 2}
