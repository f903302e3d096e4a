"""Deleted agents: their leases released at the delete, and on every reaper tick until none is left.

Deleting an agent (``agents.delete_agent``) turns its document into a
*tombstone* with one conditional write: ``kind`` becomes ``"agent_gone"`` and the
token hash goes, so the token is refused at once. The tombstone keeps the ledger
(``held``), and that ledger is complete: a claim that reserved a slot after the
delete's read changed the etag, and the delete re-read. Nothing reserves on a
tombstone afterwards (every read of an agent skips it, ``AgentDocs.read``), so its
ledger never changes again.

Each entry is a lease the agent held, or a claim in flight that reserved a job
before the delete and may still lease it after. ``settle_departed`` releases every lease
still live, fenced by its epoch as the agent's own release would be (so replicas
settling one tombstone at once release each lease once: the job's conditional
write decides), and deletes the tombstone, on its etag, once no entry can become a
lease any more (``domain.is_stale``: ended, expired, or a reservation past its
grace). The delete settles at once; the reaper settles every tombstone on each
tick (``sweep_departed``). So a lease the delete could not release (a store
outage, a replica that died between the two writes, a claim whose lease landed
after the delete) is released, and its lock freed, within one reaper interval
(SPEC 4 and 9), where it used to wait out its lease and spend an attempt.
"""

from __future__ import annotations

from fleet_datastore import Document, PreconditionFailedError, Query, eq

from ..domain import is_stale
from ..errors import CoordinatorError, UnavailableError
from ..store import agent_from_doc
from .context import Coordinator
from .leases import release_job

__all__ = ["GONE", "settle_departed", "sweep_departed"]

GONE = "agent_gone"
"""The ``kind`` of a deleted agent's tombstone (a live agent's is ``"agent"``)."""

_PAGE = 100
"""Tombstones one sweep settles; the rest wait for the next tick."""


async def settle_departed(co: Coordinator, tomb: Document) -> bool:
    """Release the live leases of a deleted agent; drop its tombstone once nothing is left.

    True when the tombstone is gone (by this call or another replica's). A store
    failure leaves it for the next sweep, which tries again.
    """
    agent = agent_from_doc(tomb.body)
    now = co.clock.now()
    settled = True
    for job_id, holding in agent.held.items():
        try:
            job = await co.ledger.job_or_none(job_id)
            lease = None if job is None else job.lease
            if lease is None or not lease.is_held_by(agent.id, holding.epoch):
                pass  # not (or not yet) a lease of this agent: judged below
            elif lease.is_live(now):
                await release_job(co, agent.id, job_id, holding.epoch)
                continue
        except UnavailableError:
            # The store is failing: said where operators look; the next sweep tries again.
            # The delete itself stands (its answer is 204), the tombstone with it.
            co.log.warning("coordinator.agent.lease_left", agent_id=agent.id, job_id=job_id)
            settled = False
            continue
        except CoordinatorError:
            settled = False  # ended meanwhile (the reaper, another settle): look again
            continue
        if not is_stale(agent.id, holding, job, now):
            settled = False  # a claim in flight may still lease this job to the agent
    if not settled:
        return False
    # Nothing writes a tombstone after the delete: on its etag, the delete finds it as
    # read, or gone (another replica's settle deleted it first, and logged it).
    try:
        if await co.agents.delete(tomb.id, tomb.id, etag=tomb.etag):
            co.log.info("coordinator.agent.settled", agent_id=agent.id, leases=len(agent.held))
    except PreconditionFailedError:
        return False  # changed after all: the next sweep settles it as it is then
    return True


async def sweep_departed(co: Coordinator) -> int:
    """One reaper sweep: settle the oldest tombstones; return how many are gone."""
    page = await co.agents.query(
        Query(where=[eq("kind", GONE)], order_by=["created_at"], limit=_PAGE)
    )
    gone = 0
    for tomb in page.items:
        gone += await settle_departed(co, tomb)
    return gone
