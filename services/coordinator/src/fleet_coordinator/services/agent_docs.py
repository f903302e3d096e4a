"""``AgentDocs``: agent documents read through the replica's cache and changed by one CAS loop."""

from __future__ import annotations

from collections.abc import Callable

from fleet_datastore import Document, NotFoundError, Outcome, Patch

from ..domain import AgentState
from ..errors import UnavailableError
from ..metrics import Metrics
from ..store import agent_from_doc, is_valid_id
from .boundary import MAX_CAS_ATTEMPTS, GuardedContainer
from .cache import DocCache

__all__ = ["AgentChange", "AgentDocs", "StoredAgent"]

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


class AgentDocs:
    """Reads and conditional writes of agent documents, with the replica's agent cache."""

    def __init__(self, container: GuardedContainer, cache: DocCache, metrics: Metrics) -> None:
        self.container = container
        self.cache = cache
        self.metrics = metrics

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
            return None
        if doc.body.get("kind") != "agent":
            return None
        self.cache.put(doc)
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
