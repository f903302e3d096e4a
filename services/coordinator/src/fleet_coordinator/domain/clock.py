"""Time for the domain: a ``Clock`` protocol, the system clock and a manual test clock.

All domain time is a ``float`` of seconds since the Unix epoch (UTC). Floats keep
lease maths trivial, sort and range-query identically in every datastore
provider, and carry sub-microsecond precision for present-day dates. ISO-8601
strings exist only at the HTTP boundary, through the two converters below.

Expiry is always judged by the coordinator's own clock (``Clock.now()``), never
by a timestamp an agent sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Clock",
    "ManualClock",
    "SystemClock",
    "Timestamp",
    "from_datetime",
    "to_datetime",
]

Timestamp: TypeAlias = float
"""Seconds since the Unix epoch, UTC."""


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as epoch seconds."""

    def now(self) -> Timestamp:
        """Return the current time in seconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock of this process (``time.time()``)."""

    def now(self) -> Timestamp:
        """Return the current wall-clock time."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: Timestamp = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> Timestamp:
        """Return the clock's current time."""
        return self._now

    def advance(self, seconds: float) -> Timestamp:
        """Move the clock forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self._now += seconds
        return self._now

    def set(self, timestamp: Timestamp) -> None:
        """Jump to ``timestamp`` (backwards too, to simulate a skewed replica)."""
        self._now = float(timestamp)


def to_datetime(timestamp: Timestamp) -> datetime:
    """Convert epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


def from_datetime(moment: datetime) -> Timestamp:
    """Convert an aware datetime to epoch seconds; naive datetimes are rejected."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime has no defined instant; give a UTC offset")
    return moment.timestamp()
