"""Releasing ended leases from agents' ledgers, batched into fewer writes.

When a lease ends (complete, fail, release, expiry) its entry must leave the
agent's ledger so the slot frees up. Writing the agent document at once would
cost one more store request per job; instead the replica remembers the ended
``(job, epoch)`` pairs and drops them in the agent's next reservation write (a
claim), or in one write ``FLEET_LEDGER_FLUSH_SECONDS`` later, whichever comes
first. Capacity checks in this replica already discount them. If the replica
dies first, the entries are leftovers that a full ledger's prune removes (it
reads each job), so nothing is lost, only a little capacity for a while.
Entries are matched by epoch, so a job the same agent claimed again is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fleet_datastore import Document, Patch

from ..errors import CoordinatorError
from .agents import read_agent, update_agent
from .context import Coordinator

__all__ = [
    "flush_all",
    "flush_released",
    "forget_lease",
    "held_after_release",
    "settle",
    "without_released",
]


def without_released(held: dict[str, Any], released: dict[str, int]) -> dict[str, Any]:
    """The ledger ``held`` minus entries whose lease ended at exactly that epoch."""
    return {k: v for k, v in held.items() if released.get(k) != int(v.get("epoch", -1))}


def held_after_release(co: Coordinator, agent: Document) -> dict[str, Any]:
    """The agent's ledger as this replica knows it: stored entries minus ended leases."""
    return without_released(dict(agent.body.get("held") or {}), co.released.get(agent.id, {}))


def settle(co: Coordinator, agent_id: str, written: dict[str, int]) -> None:
    """Forget released entries that a ledger write just removed."""
    pending = co.released.get(agent_id)
    if pending is None:
        return
    for job_id, epoch in written.items():
        if pending.get(job_id) == epoch:
            del pending[job_id]
    if not pending:
        co.released.pop(agent_id, None)


async def forget_lease(co: Coordinator, agent_id: str, job_id: str, epoch: int) -> None:
    """Note that ``agent_id``'s lease on ``job_id`` at ``epoch`` ended."""
    co.released.setdefault(agent_id, {})[job_id] = epoch
    if agent_id not in co.flushes:
        co.flushes[agent_id] = asyncio.create_task(_flush_later(co, agent_id))


async def _flush_later(co: Coordinator, agent_id: str) -> None:
    try:
        await asyncio.sleep(co.settings.ledger_flush_seconds)
        await flush_released(co, agent_id)
    except CoordinatorError as exc:
        co.log.warning("coordinator.ledger.flush_failed", agent_id=agent_id, error=exc.message)
    finally:
        co.flushes.pop(agent_id, None)
        if co.released.get(agent_id) and not co.closing:
            co.flushes[agent_id] = asyncio.create_task(_flush_later(co, agent_id))


async def flush_released(co: Coordinator, agent_id: str) -> None:
    """Write the pending releases of one agent's ledger now."""
    async with co.agent_lock(agent_id):
        pending = dict(co.released.get(agent_id, {}))
        if not pending:
            return
        doc = await read_agent(co, agent_id)
        if doc is None:
            co.released.pop(agent_id, None)  # deleted: nothing left to free
            return

        def change(body: dict[str, Any]) -> Patch | None:
            held = dict(body.get("held") or {})
            kept = without_released(held, pending)
            return None if len(kept) == len(held) else Patch(set={"held": kept})

        await update_agent(co, doc, change, "agent.release")
        settle(co, agent_id, pending)


async def flush_all(co: Coordinator) -> None:
    """Write every pending release now (at shutdown); failures are left to the prune."""
    co.closing = True
    for task in list(co.flushes.values()):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, CoordinatorError):
            await task
    for agent_id in list(co.released):
        with contextlib.suppress(CoordinatorError):
            await flush_released(co, agent_id)
