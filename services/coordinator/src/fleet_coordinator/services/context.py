"""``Coordinator``: what every service function needs, built once per app."""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ..domain import DEFAULT_BACKOFF, BackoffPolicy, Clock, SystemClock
from ..metrics import Metrics
from ..settings import Settings
from ..store import Containers
from .cache import DocCache

if TYPE_CHECKING:
    from .candidates import CandidatePool

__all__ = ["MAX_CAS_ATTEMPTS", "Coordinator", "Notifier"]

MAX_CAS_ATTEMPTS = 8
"""How often a compare-and-swap loop re-reads after losing a race before giving up (503)."""


class Notifier:
    """Wakes long-polling claimers in this replica when jobs are enqueued here."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0
        """Counts notifications, so a waiter can tell it missed one while it was busy."""

    def notify(self) -> None:
        """Wake every current waiter."""
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float, since: int) -> None:
        """Wait for a notification after generation ``since``, at most ``seconds``."""
        if self.generation != since:
            return  # one came while the caller was claiming: do not sleep through it
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


def _pool() -> CandidatePool:
    from .candidates import CandidatePool

    return CandidatePool()


@dataclass
class Coordinator:
    """The service layer's context: settings, containers, clock, metrics, log, notifier."""

    settings: Settings
    containers: Containers
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    backoff: BackoffPolicy = DEFAULT_BACKOFF
    rng: random.Random = field(default_factory=random.Random)
    notifier: Notifier = field(default_factory=Notifier)
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("fleet_coordinator")
    )
    known_queues: set[str] = field(default_factory=set)
    candidates: CandidatePool = field(default_factory=lambda: _pool())
    released: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per agent, leases that ended here but are still in its stored ledger."""
    flushes: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    closing: bool = False
    agent_cache: DocCache = field(init=False)
    job_cache: DocCache = field(init=False)
    agent_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    def __post_init__(self) -> None:
        self.agent_cache = DocCache(10_000, self.settings.agent_cache_seconds)
        self.job_cache = DocCache(self.settings.job_cache_size)

    def agent_lock(self, agent_id: str) -> asyncio.Lock:
        """The lock serialising this replica's writes to one agent's ledger.

        Claims of one agent coalesce here instead of racing on its document;
        the conditional writes still guard against other replicas.
        """
        lock = self.agent_locks.get(agent_id)
        if lock is None:
            lock = asyncio.Lock()
            self.agent_locks[agent_id] = lock
        return lock

    def shard(self, job_id: str) -> str:
        """The partition of a job id."""
        from ..store import shard_of

        return shard_of(job_id, self.settings.job_shards)
