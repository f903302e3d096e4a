"""``Coordinator``: what every service function needs, built once per app."""

from __future__ import annotations

import asyncio
import random
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ..domain import DEFAULT_BACKOFF, BackoffPolicy, Clock, SystemClock
from ..metrics import Metrics
from ..settings import Settings
from ..store import Containers, Retention, shard_of
from .cache import DocCache

if TYPE_CHECKING:
    from .candidates import CandidatePool

__all__ = ["MAX_CAS_ATTEMPTS", "Coordinator", "Notifier"]

MAX_CAS_ATTEMPTS = 8
"""How often a compare-and-swap loop re-reads after losing a race before giving up (503)."""


class Notifier:
    """Wakes long-polling claimers in this replica: at once on a local enqueue, else on a tick.

    Jobs enqueued on other replicas are found by re-polling. Rather than each
    waiter re-querying on its own timer, all of a replica's waiters wake on one
    shared tick (every ``interval`` seconds while anyone waits), so their claims
    arrive together and the ``CandidatePool`` serves them with one query: idle
    long-polls cost a few queries per second per replica, not per agent.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._tick: asyncio.TimerHandle | None = None
        self.generation = 0
        """Counts notifications, so a waiter can tell it missed one while it was busy."""

    def notify(self) -> None:
        """Wake every current waiter: jobs were enqueued here."""
        self.generation += 1
        self._wake()

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _on_tick(self) -> None:
        self._tick = None
        self._wake()  # a re-poll, not a notification: the generation stays

    async def wait(self, seconds: float, since: int, interval: float) -> bool:
        """Wait for a notification after generation ``since`` or the next shared tick.

        True when woken (worth claiming again), False when ``seconds`` ran out
        first; the tick comes at most ``interval`` seconds after the first waiter.
        """
        if self.generation != since:
            return True  # one came while the caller was claiming: do not sleep through it
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(interval, self._on_tick)
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Cancel the pending tick (at shutdown)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None


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
    long_polls: dict[str, int] = field(default_factory=dict)
    """Waiting claims per agent id on this replica (``FLEET_MAX_LONG_POLLS_PER_AGENT``)."""
    agent_cache: DocCache = field(init=False)
    job_cache: DocCache = field(init=False)
    agent_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    retention: Retention = field(init=False)
    ttl: Retention | None = field(init=False)
    """The retention terminal jobs carry as ``ttl`` where the store expires documents, else None."""

    def __post_init__(self) -> None:
        self.agent_cache = DocCache(10_000, self.settings.agent_cache_seconds)
        self.job_cache = DocCache(self.settings.job_cache_size)
        s = self.settings
        self.retention = Retention(s.retain_succeeded_seconds, s.retain_failed_seconds)
        self.ttl = self.retention if self.containers.store.expires_documents else None

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
        return shard_of(job_id, self.settings.job_shards)
