"""Backoff delays: exponential, capped, with jitter only from an injected random source."""

from __future__ import annotations

import random

import pytest
from fleet_coordinator.domain import DEFAULT_BACKOFF, BackoffPolicy


def test_default_delays_double_from_one_second() -> None:
    """Attempts 1, 2, 3, 4 wait 1, 2, 4, 8 seconds."""
    assert [DEFAULT_BACKOFF.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_delays_stop_at_the_cap() -> None:
    """No delay exceeds ``max_seconds``."""
    policy = BackoffPolicy(base_seconds=10, factor=3, max_seconds=100)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [10.0, 30.0, 90.0, 100.0]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """An attempt number whose power overflows a float still yields the cap."""
    assert DEFAULT_BACKOFF.delay(100_000) == DEFAULT_BACKOFF.max_seconds


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempt_numbers_below_one_count_as_the_first(attempt: int) -> None:
    """A zero or negative attempt number gets the first delay, never a fraction of it."""
    assert DEFAULT_BACKOFF.delay(attempt) == DEFAULT_BACKOFF.base_seconds


def test_jitter_needs_a_random_source() -> None:
    """Without a random source a jittered policy is deterministic."""
    policy = BackoffPolicy(jitter=0.5)
    assert policy.delay(3) == 4.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 8.0), (0.5, 6.0), (0.999999, 4.000004)])
def test_jitter_only_shortens_the_delay(draw: float, expected: float) -> None:
    """Jitter scales the delay down by up to ``jitter``, never up past the cap."""
    policy = BackoffPolicy(jitter=0.5)
    assert policy.delay(4, lambda: draw) == pytest.approx(expected)


def test_out_of_range_draws_are_clamped() -> None:
    """A random source that strays outside [0, 1] cannot push a delay out of bounds."""
    policy = BackoffPolicy(jitter=1.0)
    assert policy.delay(2, lambda: 7.0) == 0.0
    assert policy.delay(2, lambda: -7.0) == 2.0


def test_seeded_random_source_gives_reproducible_delays() -> None:
    """Two sources with the same seed produce the same jittered delays."""
    policy = BackoffPolicy(jitter=1.0, max_seconds=1000)
    first = [policy.delay(n, random.Random(7).random) for n in range(1, 6)]
    second = [policy.delay(n, random.Random(7).random) for n in range(1, 6)]
    assert first == second
    assert all(0 <= d <= policy.max_seconds for d in first)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_seconds": -1},
        {"max_seconds": -1},
        {"factor": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_impossible_policies_are_refused(kwargs: dict[str, float]) -> None:
    """Negative times, shrinking factors and jitter outside [0, 1] are refused."""
    with pytest.raises(ValueError, match="backoff"):
        BackoffPolicy(**kwargs)
