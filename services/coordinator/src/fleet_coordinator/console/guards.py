"""Per-replica guards of the console: the sign-in rate limit."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["SignInLimiter"]


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
