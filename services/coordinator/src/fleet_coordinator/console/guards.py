"""Per-replica guards of the console: the sign-in rate limit and the queue-count snapshot."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SignInLimiter", "StatsSnapshot"]


@dataclass
class SignInLimiter:
    """At most ``attempts`` sign-ins per client address per ``window`` seconds.

    Counts every attempt, not only failures, so guessing the admin token costs
    a minute per handful of guesses. Per replica: a balancer spreading one
    client over n replicas gives it n times the budget, still far too few
    guesses for a 256-bit token.
    """

    attempts: int = 5
    window: float = 60.0
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, client: str, now: float | None = None) -> bool:
        """Record an attempt by ``client``; False when it is over the limit."""
        now = time.monotonic() if now is None else now
        if len(self._seen) > 10_000:
            self._forget(now)
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.attempts:
            return False
        seen.append(now)
        return True

    def _forget(self, now: float) -> None:
        # Bounded memory under a spray of addresses: drop those with no recent attempt.
        for client in [c for c, s in self._seen.items() if not s or s[-1] <= now - self.window]:
            del self._seen[client]


@dataclass
class StatsSnapshot:
    """The queue summaries, recomputed at most once every ``max_age`` seconds per replica.

    Counting a queue's jobs per status is an index range count whose cost grows
    with the jobs kept (a million succeeded jobs are a million index entries),
    so console refreshes share one recent snapshot instead of counting each
    time; concurrent refreshes wait for the same computation.
    """

    max_age: float
    _items: list[dict[str, Any]] | None = None
    _at: float = 0.0
    _running: asyncio.Future[list[dict[str, Any]]] | None = None

    def invalidate(self) -> None:
        """Forget the snapshot (after a pause or resume made here)."""
        self._items = None

    async def get(self, compute: Callable[[], Awaitable[list[dict[str, Any]]]]) -> Any:
        """The snapshot, recomputed with ``compute`` when older than ``max_age``."""
        now = time.monotonic()
        if self._items is not None and now - self._at < self.max_age:
            return self._items
        if self._running is not None:
            return await asyncio.shield(self._running)
        self._running = asyncio.get_running_loop().create_future()
        try:
            items = await compute()
        except BaseException as exc:
            self._running.set_exception(exc)
            self._running.exception()  # retrieved: waiters get it, nobody else must
            raise
        else:
            self._running.set_result(items)
            self._items, self._at = items, time.monotonic()
            return items
        finally:
            self._running = None
