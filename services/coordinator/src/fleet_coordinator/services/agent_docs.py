"""``AgentDocs``: agent documents read through the replica's cache and changed by one CAS loop."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleet_datastore import Document, NotFoundError, Outcome, Patch

from ..domain import AgentState
from ..errors import TooManyRequestsError, UnavailableError
from ..metrics import Metrics
from ..store import agent_from_doc, is_valid_id
from .boundary import MAX_CAS_ATTEMPTS, GuardedContainer
from .cache import DocCache

__all__ = ["AgentChange", "AgentDocs", "StoredAgent", "UnknownAgents"]

AgentChange = Callable[[AgentState], Patch | None]
"""Decides the patch for an agent as read; None means nothing to write."""


class StoredAgent:
    """An agent document and its decoded state, decoded once per stored version."""

    __slots__ = ("doc", "state")

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.state = agent_from_doc(doc.body)

    @property
    def id(self) -> str:
        """The agent id."""
        return self.doc.id


class UnknownAgents:
    """The store reads this replica spends on agent ids it has never found: a budget.

    A token names its agent (``fa.<agent id>.<secret>``), so authenticating one
    whose agent is not cached reads the agent document. Anybody can send tokens
    with made-up ids, no secret needed, each costing one store read; on Cosmos DB
    that spends request units of the account every replica shares, so one
    client could get the whole coordinator throttled (429s from the store). The
    ids found as agents here are remembered (``KNOWN_MAX``, oldest forgotten
    first), as are those registered before the replica started
    (``agents.remember_agents``), and reads for them are free; reads for the
    others come from a token bucket (``BURST``, refilled at ``PER_SECOND``).
    Past it the request is a 429 with ``Retry-After`` (an agent retries it): a
    real agent registered on another replica since this one started waits at
    most seconds while someone is forging tokens. Only where the store is not
    local: an SQLite point read costs less than the request that asks for it.
    """

    BURST = 1000
    PER_SECOND = 100.0
    KNOWN_MAX = 200_000

    def __init__(self, *, enabled: bool, burst: int = BURST, per_second: float = PER_SECOND):
        self.enabled = enabled
        self.burst = burst
        self.per_second = per_second
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._known: dict[str, None] = {}  # insertion order: the oldest first

    def check(self, agent_id: str) -> None:
        """Spend one read on ``agent_id`` if it is not known here; 429 when none is left."""
        if not self.enabled or agent_id in self._known:
            return
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            raise TooManyRequestsError(
                "too many requests with tokens of agents this replica does not know; retry"
            )
        self._tokens -= 1

    def found(self, agent_id: str) -> None:
        """``agent_id`` is an agent: reads of it are free from now on."""
        if not self.enabled or agent_id in self._known:
            return
        self._known[agent_id] = None
        if len(self._known) > self.KNOWN_MAX:
            del self._known[next(iter(self._known))]

    def gone(self, agent_id: str) -> None:
        """``agent_id`` was deleted (or never was)."""
        self._known.pop(agent_id, None)


class AgentDocs:
    """Reads and conditional writes of agent documents, with the replica's agent cache."""

    def __init__(
        self,
        container: GuardedContainer,
        cache: DocCache,
        metrics: Metrics,
        unknown: UnknownAgents | None = None,
    ) -> None:
        self.container = container
        self.cache = cache
        self.metrics = metrics
        self.unknown = unknown or UnknownAgents(enabled=False)

    async def read_for_token(self, agent_id: str) -> Document | None:
        """``read`` for a token's agent id: an id never found here spends the replica's budget."""
        if not is_valid_id(agent_id):
            return None
        cached = self.cache.get(agent_id)
        if cached is not None:
            return cached  # every request of a busy agent: nothing more to do
        self.unknown.check(agent_id)
        return await self.read(agent_id, fresh=True)

    async def read(self, agent_id: str, *, fresh: bool = False) -> Document | None:
        """The agent document, or None if unknown or deleted; ``fresh`` skips the cache."""
        if not is_valid_id(agent_id):
            return None
        cached = None if fresh else self.cache.get(agent_id)
        if cached is not None:
            return cached
        try:
            doc = await self.container.get(agent_id, agent_id)
        except NotFoundError:
            self.cache.evict(agent_id)
            self.unknown.gone(agent_id)
            return None
        if doc.body.get("kind") != "agent":
            self.unknown.gone(agent_id)  # a deleted agent's tombstone (``departed.py``)
            return None
        self.cache.put(doc)
        self.unknown.found(agent_id)
        return doc

    async def update(self, agent: StoredAgent, change: AgentChange, op: str) -> StoredAgent | None:
        """Apply ``change(state) -> Patch | None`` with a CAS loop; None if the agent is gone."""
        for _ in range(MAX_CAS_ATTEMPTS):
            # 1. Decide on the agent as read (the caller's, or the re-read one).
            patch = change(agent.state)
            if patch is None:
                return agent
            # 2. Conditional write: a claim on another replica may have changed the
            #    ledger since our read; writing blindly would lose its reservation.
            result = await self.container.update_if_match(agent.id, agent.id, agent.doc, patch)
            if result.ok and result.document is not None:
                self.cache.put(result.document)
                return StoredAgent(result.document)
            if result.outcome is Outcome.NOT_FOUND:
                self.cache.evict(agent.id)
                return None
            # 3. Lost the race: re-read and decide again.
            self.metrics.conflicts.labels(op).inc()
            latest = await self.read(agent.id, fresh=True)
            if latest is None:
                return None
            agent = StoredAgent(latest)
        raise UnavailableError("the agent kept changing under this request; retry")
