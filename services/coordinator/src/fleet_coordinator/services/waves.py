"""``Waves``: agents' report requests run in waves, so a busy replica answers them in turn.

On one event loop, report requests that arrive together interleave at every
``await``, so they all finish late and together: their agents then run their
jobs while the replica idles, and send again together. Here a request that
arrives while a wave runs waits for that wave to end, then runs with every
request that waited meanwhile, as the next wave. An agent gets its answer as
soon as its own wave is done and works while the next wave runs; the requests
of one wave are in the same phase, so their writes share group commits.
Measured in ``python -m bench drain`` (docs/benchmarks.md): 1.06-1.15x the
jobs per second with 2 and 8 agents, one or ten jobs in flight each.

Only on a store served by this machine's CPU (memory, SQLite): on Cosmos DB a
request mostly waits on the network, and a wave would make the next wait for it.
Long-polls never join a wave (the route leaves the waiting claim out).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["MAX_WAIT_SECONDS", "Waves"]


MAX_WAIT_SECONDS = 0.5
"""How long a caller waits for a wave to end before it runs anyway.

A wave takes a few milliseconds; one held up (a SQLite write lock another
process keeps, a very slow disk) must not hold every other agent's reports."""


class Waves:
    """Runs callers in waves: one that arrives while a wave runs joins the next."""

    def __init__(self, enabled: bool = True, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self.enabled = enabled
        self.max_wait = max_wait
        self._running = 0
        self._next: asyncio.Future[None] | None = None

    def turn(self) -> Waves:
        """``async with waves.turn():`` wait for the wave that runs (if any), then run in the next.

        The waves themselves are the context manager (their state is the count of
        callers inside): no generator and context object per request, as
        ``@asynccontextmanager`` would make.
        """
        return self

    async def __aenter__(self) -> None:
        if self.enabled and self._running:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            # Shielded: a caller cancelled (or timed out) while waiting must not cancel
            # the wave's future, which the others wait on too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._next), self.max_wait)
        self._running += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._running -= 1
        if not self._running and self._next is not None:
            wave, self._next = self._next, None
            wave.set_result(None)
