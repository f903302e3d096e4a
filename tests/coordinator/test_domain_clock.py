"""Clocks and time conversion: the domain's time is epoch seconds from an injected clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fleet_coordinator.domain import Clock, ManualClock, SystemClock, from_datetime, to_datetime


def test_manual_clock_moves_only_when_told() -> None:
    """A manual clock stays put until advanced, and advance returns the new time."""
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    assert clock.now() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock.now() == 102.5


def test_manual_clock_refuses_to_advance_backwards() -> None:
    """Advancing by a negative amount is a test bug and raises."""
    clock = ManualClock(100.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.now() == 100.0


def test_manual_clock_set_can_jump_anywhere() -> None:
    """``set`` jumps to any time, backwards too, to simulate a skewed replica."""
    clock = ManualClock(100.0)
    clock.set(50)
    assert clock.now() == 50.0


def test_system_clock_reads_wall_time() -> None:
    """The system clock returns the current epoch time."""
    before = time.time()
    now = SystemClock().now()
    assert before <= now <= time.time()


def test_both_clocks_satisfy_the_protocol() -> None:
    """System and manual clocks are ``Clock``s."""
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)


def test_datetime_round_trip_is_exact_to_the_microsecond() -> None:
    """Aware datetimes convert to epoch seconds and back without drift."""
    moment = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert to_datetime(from_datetime(moment)) == moment
    assert to_datetime(from_datetime(moment)).tzinfo is UTC


def test_offsets_are_honoured() -> None:
    """A datetime with a non-UTC offset names the same instant in epoch seconds."""
    plus_two = datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert from_datetime(plus_two) == from_datetime(datetime(2025, 1, 1, tzinfo=UTC))


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime names no instant, so conversion refuses it."""
    with pytest.raises(ValueError, match="naive"):
        from_datetime(datetime(2025, 1, 1))
