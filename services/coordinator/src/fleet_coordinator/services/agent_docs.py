"""``AgentDocs``: agent documents read through the replica's cache and changed by one CAS loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from fleet_datastore import Document, NotFoundError, Outcome, Patch, Query, eq, ge

from ..domain import AgentState, Clock, SystemClock
from ..errors import TooManyRequestsError, UnavailableError
from ..metrics import Metrics
from ..store import agent_from_doc, is_valid_id
from .boundary import MAX_CAS_ATTEMPTS, GuardedContainer
from .cache import DocCache

__all__ = ["CATCH_UP_SECONDS", "AgentChange", "AgentDocs", "StoredAgent", "UnknownAgents"]

CATCH_UP_SECONDS = 1.0
"""While the budget for unknown ids is spent, the least time between two catch-ups."""

CLOCK_MARGIN_SECONDS = 60.0
"""How far before the last catch-up began the next one reads: replicas' clocks differ."""

DECODED_MAX = 4096
"""Agents whose last decoded version ``AgentDocs`` keeps (cleared when full)."""

AgentChange = Callable[[AgentState], Patch | None]
"""Decides the patch for an agent as read; None means nothing to write."""


class StoredAgent:
    """An agent document and its decoded state, decoded once per stored version."""

    __slots__ = ("doc", "id", "state")

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        # The agent id: an attribute, not a property (a call), read at every step of a claim.
        self.id = doc.id
        self.state = agent_from_doc(doc.body)


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
    Past it, the replica first catches up (``AgentDocs.read_for_token``): one
    query for the agents registered since its last catch-up, shared by every
    request waiting on it and run at most once a ``CATCH_UP_SECONDS``. An id it
    finds is known, and read for free; any other gets a 429 with
    ``Retry-After`` (an agent retries it). So a real agent registered on another
    replica since this one started is answered within about a second even
    while someone is forging tokens, and the forger's requests cost the store
    at most one query a second. Only where the store is not local: an SQLite
    point read costs less than the request that asks for it.
    """

    BURST = 1000
    PER_SECOND = 100.0
    KNOWN_MAX = 200_000

    def __init__(
        self,
        *,
        enabled: bool,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        catch_up_seconds: float = CATCH_UP_SECONDS,
    ) -> None:
        self.enabled = enabled
        self.burst = burst
        self.per_second = per_second
        self.catch_up_seconds = catch_up_seconds
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._known: dict[str, None] = {}  # insertion order: the oldest first
        self.since: float | None = None
        """The registration time the next catch-up reads from; None: every agent."""
        self.caught_up_at: float | None = None  # time.monotonic() of the last catch-up

    def spend(self, agent_id: str) -> bool:
        """Spend one read on ``agent_id`` if it is not known here; False when none is left."""
        if not self.enabled or agent_id in self._known:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def knows(self, agent_id: str) -> bool:
        """Whether ``agent_id`` was found as an agent here (reads of it are free)."""
        return agent_id in self._known

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
        clock: Clock | None = None,
    ) -> None:
        self.container = container
        self.cache = cache
        self.metrics = metrics
        self.unknown = unknown or UnknownAgents(enabled=False)
        self.clock = clock or SystemClock()
        self._catching_up: asyncio.Future[None] | None = None
        self._decoded: dict[str, StoredAgent] = {}

    def stored(self, doc: Document) -> StoredAgent:
        """``doc`` and its decoded state, decoded once per stored version of the agent.

        A claim starts from the agent document its token's check read from the cache:
        for a busy agent, the version this replica's last ledger write left, which
        ``update`` decoded then. An etag names one stored version (every write draws a
        new one), so the same etag is the same state: a C=1 report cycle decodes its
        agent once instead of twice.
        """
        last = self._decoded.get(doc.id)
        if last is not None and last.doc.etag == doc.etag:
            return last
        return self._keep(StoredAgent(doc))

    def _keep(self, agent: StoredAgent) -> StoredAgent:
        if len(self._decoded) >= DECODED_MAX:
            self._decoded.clear()  # bounded, as the agent cache is; the next use decodes
        self._decoded[agent.id] = agent
        return agent

    async def read_for_token(self, agent_id: str) -> Document | None:
        """``read`` for a token's agent id: an id never found here spends the replica's budget."""
        if not is_valid_id(agent_id):
            return None
        cached = self.cache.get(agent_id)
        if cached is not None:
            return cached  # every request of a busy agent: nothing more to do
        if not self.unknown.spend(agent_id):
            # The budget is spent: someone may be sending made-up ids. An agent
            # registered on another replica since the last catch-up is found by the
            # next one; any other id is refused unread.
            await self._catch_up()
            if not self.unknown.knows(agent_id):
                raise TooManyRequestsError(
                    "too many requests with tokens of agents this replica does not know; retry"
                )
        return await self.read(agent_id, fresh=True)

    async def _catch_up(self) -> None:
        """``learn_registered``, shared by its waiters, at most once a ``catch_up_seconds``."""
        running = self._catching_up
        if running is None:
            unknown, now = self.unknown, time.monotonic()
            if (
                unknown.caught_up_at is not None
                and now - unknown.caught_up_at < unknown.catch_up_seconds
            ):
                return
            unknown.caught_up_at = now
            running = self._catching_up = asyncio.ensure_future(self.learn_registered())
            running.add_done_callback(self._caught_up)
        # A caller that hangs up leaves the catch-up to the others (and to the next caller).
        await asyncio.shield(running)

    def _caught_up(self, done: asyncio.Future[None]) -> None:
        self._catching_up = None
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have hung up before it failed

    async def learn_registered(self) -> None:
        """Mark known every agent registered since ``unknown.since`` (every agent at first).

        Read from a little before the last catch-up began (``CLOCK_MARGIN_SECONDS``):
        an agent's ``created_at`` comes from the clock of the replica that registered
        it. A store failure is raised, and the next catch-up reads from the same time.
        """
        unknown = self.unknown
        if not unknown.enabled:
            return
        began = self.clock.now()
        async for page in self.pages(since=unknown.since):
            for doc in page:
                unknown.found(doc.id)
        unknown.since = began - CLOCK_MARGIN_SECONDS

    async def pages(self, since: float | None = None) -> AsyncIterator[list[Document]]:
        """Every registered agent (registered at ``since`` or later), oldest first, by page."""
        where = [eq("kind", "agent")]
        if since is not None:
            where.append(ge("created_at", since))
        cont: str | None = None
        while True:
            query = Query(where=where, order_by=["created_at"], limit=1000, continuation=cont)
            page = await self.container.query(query)
            yield page.items
            cont = page.continuation
            if cont is None:
                return

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
                return self._keep(StoredAgent(result.document))
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
