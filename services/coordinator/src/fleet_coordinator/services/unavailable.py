"""The log of requests answered 503 ``store_unavailable``: one line a second at most."""

from __future__ import annotations

from typing import Any

from ..domain import Clock

__all__ = ["UNAVAILABLE_LOG_INTERVAL", "UnavailableAnswers"]

UNAVAILABLE_LOG_INTERVAL = 1.0
"""Seconds between two ``coordinator.request.unavailable`` lines of one replica."""


class UnavailableAnswers:
    """Logs the requests a replica answers 503 ``store_unavailable``, rate-limited.

    A client answered 503 retries, and while the store is down every request of every
    agent is one: a line each would write the log at the request rate, and anyone who
    can reach ``/readyz`` could add to it. So the first 503 is logged, then at most one
    per ``interval``; each line says how many 503s since the previous line were not
    (``suppressed``). A line names the method, the route's template (never the path:
    it holds ids), and the store error's own text (``reason``), which the client's
    answer does not carry; never a header or the body.
    """

    def __init__(self, clock: Clock, log: Any, interval: float = UNAVAILABLE_LOG_INTERVAL) -> None:
        self.clock = clock
        self.log = log
        self.interval = interval
        self._last: float | None = None  # when the last line was written (the clock's time)
        self._suppressed = 0

    def answered(self, method: str, route: str, reason: str) -> None:
        """A request to ``route`` was answered 503 because of ``reason``."""
        now = self.clock.now()
        # A clock set backwards (the wall clock is) logs rather than stays silent.
        if self._last is not None and 0.0 <= now - self._last < self.interval:
            self._suppressed += 1
            return
        self._last = now
        suppressed, self._suppressed = self._suppressed, 0
        self.log.warning(
            "coordinator.request.unavailable",
            method=method,
            route=route,
            error=reason,
            suppressed=suppressed,
        )
