"""``Coordinator``: the dependencies every service function needs, built once per app."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from fleet_datastore import NotFoundError

from ..domain import DEFAULT_BACKOFF, BackoffPolicy, Clock, JobState, SystemClock
from ..metrics import Metrics
from ..settings import Settings
from ..store import Containers, Retention, job_from_doc, shard_of
from .agent_docs import AgentDocs, UnknownAgents
from .boundary import GuardedContainer
from .cache import DocCache, JobStates
from .candidates import CandidateSource
from .keyed_locks import KeyedLocks
from .ledger import Ledger
from .long_polls import LongPolls
from .paused_set import PausedQueues
from .throughput import Throughput
from .unavailable import UnavailableAnswers
from .waves import Waves

__all__ = ["Coordinator", "FirstUseLog", "KnownQueues", "Notifier"]


class FirstUseLog:
    """structlog's lazy logger, its methods kept once structlog keeps its logger.

    ``structlog.get_logger`` returns a lazy proxy: every ``co.log.info(...)`` goes
    through its ``__getattr__`` and ``bind`` to the logger it assembled on first use
    (``cache_logger_on_first_use``, as ``configure_logging`` sets it), ~1 µs an event
    on this host. Once the proxy keeps its logger (its ``bind`` replaced by the kept
    one's, as structlog does it), what it answers for a name never changes, so it is
    kept here and read as a plain attribute. Until then, and for good when structlog
    is configured not to keep loggers, every look-up goes to the proxy, which
    assembles a logger from the configuration of that moment.
    """

    def __init__(self, name: str) -> None:
        self._proxy: Any = structlog.get_logger(name)

    def __getattr__(self, name: str) -> Any:
        proxy = self._proxy
        found = getattr(proxy, name)
        if "bind" in vars(proxy):  # the proxy keeps its logger: the same answer from now on
            setattr(self, name, found)
        return found


def _first_use_log() -> structlog.typing.FilteringBoundLogger:
    return cast("structlog.typing.FilteringBoundLogger", FirstUseLog("fleet_coordinator"))


class Notifier:
    """Wakes long-polling claimers in this replica: at once on a local enqueue, else on a tick.

    Jobs enqueued on other replicas are found by re-polling. Rather than each
    waiter re-querying on its own timer, all of a replica's waiters wake on one
    shared tick (every ``interval`` seconds while anyone waits), so their claims
    arrive together and the ``CandidateSource`` serves them with one query: idle
    long-polls cost a few queries per second per replica, not per agent.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._waiting = 0  # waiters on ``_event`` now: with none, a wake has nobody to wake
        self._tick: asyncio.TimerHandle | None = None
        self.generation = 0
        """Counts notifications, so a waiter can tell it missed one while it was busy."""
        self.closing = False
        """Set once the server begins to shut down (``shut``): no long-poll waits after."""

    def notify(self) -> None:
        """Wake every current waiter: jobs were enqueued here."""
        self.generation += 1
        self._wake()

    def _wake(self) -> None:
        # Every enqueue notifies, and nearly always nobody waits: the event stays as it
        # is (unset) for the next waiter, without a new one made each time.
        if self._waiting:
            self._event.set()
            self._event, self._waiting = asyncio.Event(), 0

    def _on_tick(self) -> None:
        self._tick = None
        self._wake()  # a re-poll, not a notification: the generation stays

    async def wait(self, seconds: float, since: int, interval: float) -> bool:
        """Wait for a notification after generation ``since`` or the next shared tick.

        True when woken (worth claiming again), False when ``seconds`` ran out
        first or the server is shutting down; the tick comes at most ``interval``
        seconds after the first waiter.
        """
        if self.closing:
            return False
        if self.generation != since:
            return True  # one came while the caller was claiming: do not sleep through it
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(interval, self._on_tick)
        event = self._event
        self._waiting += 1
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            if self._event is event:  # a wake that came meanwhile counted it out already
                self._waiting -= 1
        return not self.closing

    def shut(self) -> None:
        """The server begins to shut down: every waiter wakes for good, and none waits after.

        uvicorn stops only once every request in flight is answered, and a waiting
        long-poll would hold the exit up for the rest of its wait (up to 30 s, the
        whole of a default Kubernetes grace period) only to answer nothing; its
        agent gains nothing by waiting on a replica that is going away.
        """
        if self.closing:
            return  # called once per open connection (protocol.py)
        self.closing = True
        self.close()
        self._wake()

    def close(self) -> None:
        """Cancel the pending tick (at shutdown)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None


class KnownQueues:
    """Queues this replica has written a marker for (``GET /v1/queues`` lists the markers)."""

    def __init__(self) -> None:
        self._names: set[str] = set()

    def __contains__(self, queue: object) -> bool:
        return queue in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def add(self, queue: str) -> None:
        """Remember that ``queue``'s marker exists."""
        self._names.add(queue)


@dataclass
class Coordinator:
    """The service layer's dependencies, built once per app.

    Per-replica state lives in the objects that own it: the caches, the candidate
    source (jobs handed to claims in flight), the ledger (ended leases, per-agent
    locks), the paused set, the known queues and the long-polls waiting. Every
    store call goes through the guarded containers ``jobs``, ``agents``, ``locks``
    and ``schedules`` (``services/boundary.py``).
    """

    settings: Settings
    containers: Containers
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    backoff: BackoffPolicy = DEFAULT_BACKOFF
    rng: random.Random = field(default_factory=random.Random)
    notifier: Notifier = field(default_factory=Notifier)
    log: structlog.typing.FilteringBoundLogger = field(default_factory=_first_use_log)
    jobs: GuardedContainer = field(init=False)
    agents: GuardedContainer = field(init=False)
    locks: GuardedContainer = field(init=False)
    schedules: GuardedContainer = field(init=False)
    pauses: PausedQueues = field(default_factory=PausedQueues)
    """Which queues are paused, as this replica last read it (``services/pauses.py``)."""
    throughput: Throughput = field(default_factory=Throughput)
    """Jobs enqueued, succeeded and failed here per minute (the console's chart)."""
    job_cache: DocCache = field(init=False)
    job_states: JobStates = field(default_factory=JobStates)
    """Job documents decoded, by id and etag (``services/cache.py``)."""
    agent_docs: AgentDocs = field(init=False)
    candidates: CandidateSource = field(init=False)
    ledger: Ledger = field(init=False)
    known_queues: KnownQueues = field(default_factory=KnownQueues)
    waves: Waves = field(init=False)
    """Agents' report requests, run in waves on a local store (``services/waves.py``)."""
    long_polls: LongPolls = field(init=False)
    """Waiting claims per agent on this replica, capped (``services/long_polls.py``)."""
    writers: KeyedLocks = field(default_factory=KeyedLocks)
    """One admin write loop per schedule or queue marker at a time here (``keyed_locks.py``)."""
    unavailable: UnavailableAnswers = field(init=False)
    """The log of requests answered 503, one line a second at most (``unavailable.py``)."""

    retention: Retention = field(init=False)
    ttl: Retention | None = field(init=False)
    """The retention terminal jobs carry as ``ttl`` where the store expires documents, else None."""

    def __post_init__(self) -> None:
        settings = self.settings
        self.jobs = GuardedContainer(self.containers.jobs)
        self.agents = GuardedContainer(self.containers.agents)
        self.job_cache = DocCache(settings.job_cache_size)
        agent_cache = DocCache(10_000, settings.agent_cache_seconds)
        unknown = UnknownAgents(enabled=not self.containers.store.local)
        self.agent_docs = AgentDocs(self.agents, agent_cache, self.metrics, unknown, self.clock)
        self.candidates = CandidateSource(self.jobs, self.job_states, self.clock, settings)
        self.ledger = Ledger(
            self.agent_docs, self._job_or_none, self.clock, settings.ledger_flush_seconds, self.log
        )
        self.locks = GuardedContainer(self.containers.locks)
        self.schedules = GuardedContainer(self.containers.schedules)
        self.retention = Retention(
            settings.retain_succeeded_seconds, settings.retain_failed_seconds
        )
        self.ttl = self.retention if self.containers.store.expires_documents else None
        self.waves = Waves(enabled=self.containers.store.local)
        self.long_polls = LongPolls(settings.max_long_polls_per_agent)
        self.unavailable = UnavailableAnswers(self.clock, self.log)

    @property
    def agent_cache(self) -> DocCache:
        """The replica's cache of agent documents (authentication reads it)."""
        return self.agent_docs.cache

    def shard(self, job_id: str) -> str:
        """The partition of a job id."""
        return shard_of(job_id, self.settings.job_shards)

    async def _job_or_none(self, job_id: str) -> JobState | None:
        """The stored job (a fresh read), or None when it is gone."""
        try:
            doc = await self.jobs.get(job_id, self.shard(job_id))
        except NotFoundError:
            return None
        return job_from_doc(doc.body)
