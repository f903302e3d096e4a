"""Retry backoff: capped exponential delays with optional jitter from an injected source.

A job that fails with attempts left goes back to the queue with ``run_after``
pushed into the future by ``BackoffPolicy.delay(attempt)``::

    delay = min(max_seconds, base_seconds * factor ** (attempt - 1))
    delay *= 1 - jitter * random()          # only when a random source is given

Jitter only ever shortens a delay, so the cap holds and a burst of failures
spreads out instead of retrying in lockstep. The random source is a plain
callable returning a float in ``[0, 1)`` so tests can pass a fixed one and the
functions stay pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["DEFAULT_BACKOFF", "BackoffPolicy", "RandomSource"]

RandomSource: TypeAlias = Callable[[], float]
"""A callable returning a float in ``[0, 1)``, e.g. ``random.Random(7).random``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """How long a failed job waits before its next attempt."""

    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 300.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.max_seconds < 0:
            raise ValueError("backoff seconds must be non-negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")

    def delay(self, attempt: int, rng: RandomSource | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(attempt, 1) - 1
        try:
            raw = self.base_seconds * self.factor**exponent
        except OverflowError:
            # Huge attempt numbers overflow a float; they are past the cap anyway.
            raw = self.max_seconds
        capped = min(self.max_seconds, raw)
        if rng is None or self.jitter == 0:
            return capped
        draw = min(max(rng(), 0.0), 1.0)
        return capped * (1.0 - self.jitter * draw)


DEFAULT_BACKOFF = BackoffPolicy()
"""1 s, 2 s, 4 s … capped at 5 minutes, no jitter."""
