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
    """The queue summaries, recounted at most once every ``max_age`` seconds per replica.

    Counting a queue's jobs per status is an index range count whose cost grows
    with the jobs kept (a million succeeded jobs are a million index entries),
    so console refreshes share one snapshot: a request finding it older than
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
