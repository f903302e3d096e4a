"""``Ledger``: the one owner of writes to agents' lease ledgers, batched into few writes.

Capacity holds across replicas because a claim reserves its jobs in the agent's
ledger with one conditional write before leasing them (``reserve``; the decision
itself is the pure ``AgentState.reserve``). When a lease ends (complete, fail,
release, expiry, agent delete) its entry must leave the ledger; writing the agent
document at once would cost a store request per job, so the replica remembers
the ended ``(job, epoch)`` pairs (``forget``) and drops them in the agent's next
reservation write — a batched report's claim is the same request — or in one
write ``FLEET_LEDGER_FLUSH_SECONDS`` later, whichever comes first. This replica's
capacity checks discount them at once. If the replica dies first, the entries
are leftovers that ``prune`` removes (it reads each job) when a claim finds
fewer free slots than it asks for (``services/claims.py``, step 2), so nothing
is lost, only a little capacity for a while.

Claims of one agent within a replica are serialised by ``lock(agent_id)``, so
they coalesce instead of fighting over its ledger; across replicas the
conditional write decides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog
from fleet_datastore import Document, Patch

from ..domain import AgentState, Clock, JobState, is_stale
from ..errors import CoordinatorError
from ..store import held_to_doc
from .agent_docs import AgentDocs, StoredAgent
from .keyed_locks import KeyedLocks

__all__ = ["Ledger"]

_SEEN_EVERY = 10.0
"""Seconds between last-seen updates from claims that lease nothing."""

JobOrNone = Callable[[str], Awaitable[JobState | None]]
"""Reads a job by id, fresh (None when it is gone): what a prune checks each entry against.

Not ``transitions.read_job``, which returns the document and raises for a missing job.
"""


def _epoch_to_lease(candidate: Document) -> int:
    """The epoch a claim reserves a candidate job at: the one its lease will carry."""
    return int(candidate.body.get("epoch", 0)) + 1


class Ledger:
    """Reserves, releases and prunes agents' ledgers; remembers leases that ended here."""

    def __init__(
        self,
        agents: AgentDocs,
        job_or_none: JobOrNone,
        clock: Clock,
        flush_seconds: float,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.agents = agents
        self.job_or_none = job_or_none
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.log = log
        self._ended: dict[str, dict[str, int]] = {}
        self._flushes: dict[str, asyncio.Task[None]] = {}
        self._locks = KeyedLocks()
        self._closing = False

    # -- what this replica knows -----------------------------------------------------

    def ended(self, agent_id: str) -> Mapping[str, int]:
        """Leases of ``agent_id`` that ended here and may still be in its stored ledger."""
        return self._ended.get(agent_id, {})

    def live_leases(self, agent: AgentState) -> int:
        """The agent's ledger size as this replica knows it (``GET /v1/agents``)."""
        return len(agent.holding(self.ended(agent.id)))

    def free_slots(self, agent: StoredAgent) -> int:
        """Slots the agent has free, leases that ended here discounted."""
        return agent.state.free_slots(self.ended(agent.id))

    def held(self, agent: StoredAgent) -> set[str]:
        """Job ids the agent holds or is leasing, as this replica knows it."""
        return set(agent.state.holding(self.ended(agent.id)))

    def lock(self, agent_id: str) -> asyncio.Lock:
        """The lock serialising this replica's claims (and ledger writes) of one agent."""
        return self._locks.lock(agent_id)

    # -- the writes ------------------------------------------------------------------

    async def reserve(
        self, agent: StoredAgent, picks: list[Document]
    ) -> tuple[StoredAgent | None, list[Document]]:
        """Reserve ``picks`` for leasing in one ledger write; the ones granted (free slots)."""
        now = self.clock.now()
        wanted = [(doc.id, _epoch_to_lease(doc)) for doc in picks]
        granted: list[str] = []
        released: dict[str, int] = {}

        def change(state: AgentState) -> Patch | None:
            # Re-decided on every re-read: another claim may have taken the free slots.
            # Leases that ended in this replica leave the ledger in this same write.
            released.clear()
            released.update(self.ended(state.id))
            new, got = state.reserve(wanted, now, released)
            granted[:] = got
            if not got:
                return None
            return Patch(set={"held": held_to_doc(new.held), "last_seen": now})

        written = await self.agents.update(agent, change, "agent.reserve")
        if written is not None and granted:
            self._settle(agent.id, released)
        chosen = set(granted)
        return written, [doc for doc in picks if doc.id in chosen]

    async def unreserve(self, agent: StoredAgent, lost: list[Document]) -> StoredAgent | None:
        """Give back the reservations of jobs another claimer leased first."""
        reserved = {doc.id: _epoch_to_lease(doc) for doc in lost}

        def change(state: AgentState) -> Patch | None:
            return Patch(set={"held": held_to_doc(state.without(reserved).held)})

        return await self.agents.update(agent, change, "agent.unreserve")

    async def prune(self, agent: StoredAgent, enough: int | None = None) -> StoredAgent | None:
        """Drop ledger entries whose lease is no longer live (ended, expired, never taken).

        The oldest entries are checked first (one job read each); with ``enough``,
        the check stops once that many are found stale.
        """
        now = self.clock.now()
        stale: dict[str, int] = {}
        # The leases known to have ended here are not read: this replica discounts them
        # already, and they leave the stored ledger with the next reservation write or
        # the flush (``forget``), not with the write below.
        for job_id, holding in agent.state.holding(self.ended(agent.id)).items():
            if is_stale(agent.id, holding, await self.job_or_none(job_id), now):
                stale[job_id] = holding.epoch
                if enough is not None and len(stale) >= enough:
                    break
        if not stale:
            return agent

        def change(state: AgentState) -> Patch | None:
            return Patch(set={"held": held_to_doc(state.without(stale).held)})

        return await self.agents.update(agent, change, "agent.prune")

    async def touch(self, agent: StoredAgent) -> None:
        """Record that the agent is alive, at most every ``_SEEN_EVERY`` seconds."""
        # A claim that leased nothing still shows the agent is alive; written rarely,
        # so idle polling costs almost no writes. Losing a race here changes nothing.
        now = self.clock.now()
        last = agent.state.last_seen
        if last is not None and now - last < _SEEN_EVERY:
            return
        result = await self.agents.container.update_if_match(
            agent.id, agent.id, agent.doc, Patch(set={"last_seen": now})
        )
        if result.ok and result.document is not None:
            self.agents.cache.put(result.document)

    # -- ended leases ----------------------------------------------------------------

    def forget(self, agent_id: str, job_id: str, epoch: int) -> None:
        """Note that ``agent_id``'s lease on ``job_id`` at ``epoch`` ended."""
        self._ended.setdefault(agent_id, {})[job_id] = epoch
        if agent_id not in self._flushes and not self._closing:
            self._flushes[agent_id] = asyncio.create_task(self._flush_later(agent_id))

    def _settle(self, agent_id: str, written: Mapping[str, int]) -> None:
        """Forget ended leases that a ledger write just removed."""
        pending = self._ended.get(agent_id)
        if pending is None:
            return
        for job_id, epoch in written.items():
            if pending.get(job_id) == epoch:
                del pending[job_id]
        if not pending:
            self._ended.pop(agent_id, None)

    async def _flush_later(self, agent_id: str) -> None:
        try:
            await asyncio.sleep(self.flush_seconds)
            await self.flush(agent_id)
        except CoordinatorError as exc:
            self.log.warning(
                "coordinator.ledger.flush_failed", agent_id=agent_id, error=exc.message
            )
        finally:
            self._flushes.pop(agent_id, None)
            if self._ended.get(agent_id) and not self._closing:
                self._flushes[agent_id] = asyncio.create_task(self._flush_later(agent_id))

    async def flush(self, agent_id: str) -> None:
        """Write the ended leases of one agent out of its stored ledger now."""
        async with self.lock(agent_id):
            pending = dict(self.ended(agent_id))
            if not pending:
                return
            doc = await self.agents.read(agent_id)
            if doc is None:
                self._ended.pop(agent_id, None)  # deleted: nothing left to free
                return

            def change(state: AgentState) -> Patch | None:
                kept = state.without(pending)
                return (
                    None
                    if len(kept.held) == len(state.held)
                    else Patch(set={"held": held_to_doc(kept.held)})
                )

            await self.agents.update(StoredAgent(doc), change, "agent.release")
            self._settle(agent_id, pending)

    async def close(self) -> None:
        """Write every pending release now (at shutdown); failures are left to the prune."""
        self._closing = True
        for task in list(self._flushes.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CoordinatorError):
                await task
        for agent_id in list(self._ended):
            with contextlib.suppress(CoordinatorError):
                await self.flush(agent_id)
