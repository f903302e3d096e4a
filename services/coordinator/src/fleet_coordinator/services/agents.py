"""The agent registry: create, authenticate, list, drain, delete.

An agent document (``store/codec.py``: ``AgentState``) carries the agent's
lease ledger, which only ``services/ledger.py`` writes.

Tokens look like ``fa.<agent id>.<secret>``: the id gives a point read, and only
``sha256(token)`` is stored, compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from fleet_datastore import Document, Outcome, Patch

from ..domain import AgentState
from ..errors import CoordinatorError, UnavailableError
from ..errors import NotFoundError as AgentNotFoundError
from ..store import agent_from_doc, agent_to_doc, new_id
from .agent_docs import StoredAgent
from .boundary import MAX_CAS_ATTEMPTS
from .context import Coordinator
from .departed import GONE

__all__ = [
    "authenticate",
    "create_agent",
    "delete_agent",
    "drain_agent",
    "get_agent",
    "list_agents",
    "read_agent",
    "remember_agents",
]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_agent(
    co: Coordinator,
    *,
    name: str,
    labels: Mapping[str, str],
    capacity: int,
    queues: Sequence[str],
) -> tuple[AgentState, str]:
    """Register an agent; return it and its token (shown once)."""
    agent_id = new_id()
    token = f"fa.{agent_id}.{secrets.token_urlsafe(32)}"
    agent = AgentState(
        id=agent_id,
        name=name,
        labels=dict(labels),
        capacity=capacity,
        queues=tuple(queues),
        draining=False,
        token_hash=_hash(token),
        created_at=co.clock.now(),
        last_seen=None,
        held={},
    )
    co.agent_cache.put(await co.agents.create(agent_to_doc(agent)))
    co.agent_docs.unknown.found(agent_id)
    co.log.info("coordinator.agent.created", agent_id=agent_id, capacity=capacity)
    return agent, token


async def read_agent(co: Coordinator, agent_id: str, *, fresh: bool = False) -> Document | None:
    """The agent document, or None if unknown or deleted; ``fresh`` skips the cache."""
    return await co.agent_docs.read(agent_id, fresh=fresh)


async def authenticate(co: Coordinator, token: str) -> Document | None:
    """The agent document a token belongs to, or None for an unknown or revoked token."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "fa":
        return None
    doc = await co.agent_docs.read_for_token(parts[1])
    if doc is None:
        return None
    if not hmac.compare_digest(str(doc.body.get("token_hash", "")), _hash(token)):
        return None
    return doc


async def get_agent(co: Coordinator, agent_id: str) -> AgentState:
    """One agent; 404 if unknown or deleted."""
    doc = await co.agent_docs.read(agent_id, fresh=True)
    if doc is None:
        raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
    return agent_from_doc(doc.body)


async def list_agents(co: Coordinator) -> list[AgentState]:
    """Every registered agent, oldest first."""
    return [agent_from_doc(d.body) async for page in co.agent_docs.pages() for d in page]


async def remember_agents(co: Coordinator) -> None:
    """At start-up, tell the replica's budget for unknown agents every registered one.

    Without it, every agent of a fleet reconnecting to a restarted replica on a
    remote store would spend the budget (``UnknownAgents``) once, and past its
    1,000 wait for a catch-up. A store that fails here only costs that: logged,
    and the first catch-up reads every agent instead.
    """
    try:
        await co.agent_docs.learn_registered()
    except CoordinatorError as exc:
        co.log.warning("coordinator.agents.not_remembered", error=exc.code)


async def drain_agent(co: Coordinator, agent_id: str) -> AgentState:
    """Stop giving the agent new claims; its current leases carry on."""
    doc = await co.agent_docs.read(agent_id, fresh=True)
    new = None
    if doc is not None:
        new = await co.agent_docs.update(
            StoredAgent(doc),
            lambda a: None if a.draining else Patch(set={"draining": True}),
            "agent.drain",
        )
    if new is None:
        raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
    co.log.info("coordinator.agent.drained", agent_id=agent_id)
    return new.state


async def delete_agent(co: Coordinator, agent_id: str) -> Document:
    """Delete an agent: revoke its token and leave a tombstone of its ledger (``departed.py``).

    Returns the tombstone, whose leases ``departed.settle`` releases.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the ledger; 2. turn it into a tombstone only if nobody reserved a lease
        #    since (etag), so the ledger it keeps is complete; 3. otherwise re-read.
        doc = await co.agent_docs.read(agent_id, fresh=True)
        if doc is None:
            raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
        gone = Patch(set={"kind": GONE, "deleted_at": co.clock.now()}, remove=("token_hash",))
        try:
            result = await co.agents.update_if_match(agent_id, agent_id, doc, gone)
        finally:
            co.agent_cache.evict(agent_id)
        if result.outcome is Outcome.NOT_FOUND:
            raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
        if result.ok and result.document is not None:
            co.log.info("coordinator.agent.deleted", agent_id=agent_id)
            return result.document
    raise UnavailableError("the agent kept changing under this request; retry")
