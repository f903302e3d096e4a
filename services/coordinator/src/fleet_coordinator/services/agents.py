"""The agent registry: create, authenticate, list, drain, delete, and the held-lease ledger.

An agent document holds ``held: {job_id: epoch}``, the leases it holds, which is
how capacity is enforced across replicas: a claim reserves its jobs in the
ledger with a conditional write before it leases them.

Tokens look like ``fa.<agent id>.<secret>``: the id gives a point read, and only
``sha256(token)`` is stored, compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fleet_datastore import (
    Document,
    NotFoundError,
    Outcome,
    Patch,
    PreconditionFailedError,
    Query,
    eq,
)

from ..errors import NotFoundError as AgentNotFoundError
from ..errors import UnavailableError, translate_store_errors
from ..store import is_valid_id, new_id
from .context import MAX_CAS_ATTEMPTS, Coordinator

__all__ = [
    "authenticate",
    "create_agent",
    "delete_agent",
    "drain_agent",
    "get_agent",
    "list_agents",
    "read_agent",
    "update_agent",
]


AgentChange = Callable[[dict[str, Any]], Patch | None]
"""Decides the patch for an agent document as read; None means nothing to write."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_agent(
    co: Coordinator,
    *,
    name: str,
    labels: Mapping[str, str],
    capacity: int,
    queues: Sequence[str],
) -> tuple[dict[str, Any], str]:
    """Register an agent; return its document and its token (shown once)."""
    agent_id = new_id()
    token = f"fa.{agent_id}.{secrets.token_urlsafe(32)}"
    now = co.clock.now()
    body = {
        "id": agent_id,
        "pk": agent_id,
        "kind": "agent",
        "name": name,
        "labels": dict(labels),
        "capacity": capacity,
        "queues": list(queues),
        "draining": False,
        "token_hash": _hash(token),
        "created_at": now,
        "last_seen": None,
        "held": {},
    }
    with translate_store_errors():
        doc = await co.containers.agents.create(body)
    co.agent_cache.put(doc)
    co.log.info("coordinator.agent.created", agent_id=agent_id, capacity=capacity)
    return doc.body, token


async def read_agent(co: Coordinator, agent_id: str, *, fresh: bool = False) -> Document | None:
    """The agent document, or None if unknown or deleted; ``fresh`` skips the cache."""
    if not is_valid_id(agent_id):
        return None
    cached = None if fresh else co.agent_cache.get(agent_id)
    if cached is not None:
        return cached
    with translate_store_errors():
        try:
            doc = await co.containers.agents.get(agent_id, agent_id)
        except NotFoundError:
            co.agent_cache.evict(agent_id)
            return None
    if doc.body.get("kind") != "agent":
        return None
    co.agent_cache.put(doc)
    return doc


async def authenticate(co: Coordinator, token: str) -> Document | None:
    """The agent document a token belongs to, or None for an unknown or revoked token."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "fa":
        return None
    doc = await read_agent(co, parts[1])
    if doc is None:
        return None
    if not hmac.compare_digest(str(doc.body.get("token_hash", "")), _hash(token)):
        return None
    return doc


async def get_agent(co: Coordinator, agent_id: str) -> Document:
    """One agent document; 404 if unknown or deleted."""
    doc = await read_agent(co, agent_id, fresh=True)
    if doc is None:
        raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
    return doc


async def list_agents(co: Coordinator) -> list[dict[str, Any]]:
    """Every registered agent, oldest first."""
    items: list[dict[str, Any]] = []
    cont: str | None = None
    with translate_store_errors():
        while True:
            query = Query(
                where=[eq("kind", "agent")], order_by=["created_at"], limit=1000, continuation=cont
            )
            page = await co.containers.agents.query(query)
            items.extend(d.body for d in page.items)
            cont = page.continuation
            if cont is None:
                return items


async def update_agent(
    co: Coordinator, doc: Document, change: AgentChange, op: str
) -> Document | None:
    """Apply ``change(body) -> Patch | None`` with a CAS loop; None if the agent is gone.

    ``change`` returning None means there is nothing to write.
    """
    agent_id = doc.id
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Decide on the document as read (the caller's, or the re-read one).
        patch: Patch | None = change(doc.body)
        if patch is None:
            return doc
        # 2. Conditional write: a claim on another replica may have changed the
        #    ledger since our read; writing blindly would lose its reservation.
        with translate_store_errors():
            result = await co.containers.agents.update_if_match(agent_id, agent_id, doc, patch)
        if result.ok and result.document is not None:
            co.agent_cache.put(result.document)
            return result.document
        if result.outcome is Outcome.NOT_FOUND:
            co.agent_cache.evict(agent_id)
            return None
        # 3. Lost the race: re-read and decide again.
        co.metrics.conflicts.labels(op).inc()
        latest = await read_agent(co, agent_id, fresh=True)
        if latest is None:
            return None
        doc = latest
    raise UnavailableError("the agent kept changing under this request; retry")


async def drain_agent(co: Coordinator, agent_id: str) -> dict[str, Any]:
    """Stop giving the agent new claims; its current leases carry on."""
    doc = await get_agent(co, agent_id)
    new = await update_agent(
        co,
        doc,
        lambda b: None if b.get("draining") else Patch(set={"draining": True}),
        "agent.drain",
    )
    if new is None:
        raise AgentNotFoundError(f"no agent {agent_id!r}", agent_id=agent_id)
    co.log.info("coordinator.agent.drained", agent_id=agent_id)
    return new.body


async def delete_agent(co: Coordinator, agent_id: str) -> dict[str, Any]:
    """Delete an agent (revoking its token); return the last document so leases can be released."""
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the ledger; 2. delete only if nobody reserved a lease since (etag),
        #    so the ledger returned is complete; 3. otherwise re-read.
        doc = await get_agent(co, agent_id)
        with translate_store_errors():
            try:
                await co.containers.agents.delete(agent_id, agent_id, etag=doc.etag)
            except PreconditionFailedError:
                continue
            finally:
                co.agent_cache.evict(agent_id)
        co.log.info("coordinator.agent.deleted", agent_id=agent_id)
        return doc.body
    raise UnavailableError("the agent kept changing under this request; retry")
