"""The reaper: end leases past their expiry or attempt deadline, safely from any replica.

Each tick also releases what deleted agents still hold (``departed.sweep_departed``),
runs retention (``retention.purge_once``) and the scheduler (``schedules.fire_due``),
each single-winner through its own conditional writes.

Each tick queries ``status = leased, due_at <= now`` (index ``status, due_at``)
and applies ``domain.reap`` with a conditional write on the etag it read. Two
replicas reaping the same job race on that etag, so exactly one acts; a job an
agent completed in between has a new etag (and is terminal, which ``reap``
refuses anyway), so a sweep never overwrites it.
"""

from __future__ import annotations

import asyncio

from fleet_datastore import Query, eq, le

from .. import domain
from ..domain import JobStatus
from ..errors import CoordinatorError
from ..store import job_from_doc
from .context import Coordinator
from .departed import sweep_departed
from .leases import lease_ended
from .pauses import refresh_paused
from .retention import purge_once
from .schedules import fire_due
from .throughput import Event
from .transitions import write_job

__all__ = ["reap_once", "reaper_tick", "run_reaper"]

_PAGE = 200
_MAX_PAGES = 10
"""Pages one sweep handles; the rest waits for the next tick."""


async def reap_once(co: Coordinator) -> int:
    """One sweep: end every lease due by now; return how many jobs this replica changed."""
    now = co.clock.now()
    changed = 0
    query = Query(
        where=[eq("status", JobStatus.LEASED.value), le("due_at", now)],
        order_by=["due_at"],
        limit=_PAGE,
    )
    for _ in range(_MAX_PAGES):
        page = await co.jobs.query(query)
        for doc in page.items:
            # 1. Decide on the document as read: refused if no longer due or terminal.
            old = job_from_doc(doc.body)
            new = domain.reap(old, now, backoff=co.backoff, rng=co.rng.random)
            if isinstance(new, domain.Rejected) or old.lease is None:
                continue
            # 2. Conditional write on the read etag: a heartbeat, completion or another
            #    replica's reaper that wrote since makes this a conflict, and we skip it
            #    (the next tick re-reads if it is still due).
            if await write_job(co, doc, new, "reap") is None:
                continue
            changed += 1
            outcome = new.runs[-1].outcome.value if new.runs else "unknown"
            co.metrics.expiries.labels(outcome).inc()
            co.metrics.reaper_actions.labels(new.status.value).inc()
            if new.status is JobStatus.FAILED:
                co.throughput.add(Event.FAILED, now)
            co.log.info(
                "coordinator.job.reaped",
                job_id=new.id,
                agent_id=old.lease.agent_id,
                epoch=old.epoch,
                outcome=outcome,
                status=new.status.value,
            )
            await lease_ended(co, old, new)
        if page.continuation is None:
            break
        # Keyset continuation: jobs reaped on this page leaving the index skip nothing.
        query = Query(
            where=query.where, order_by=query.order_by, limit=_PAGE, continuation=page.continuation
        )
    return changed


async def reaper_tick(co: Coordinator) -> None:
    """One tick of the reaper: every sweep once; a sweep the store fails is logged, not raised.

    Each tick re-reads which queues are paused (SPEC 10: within one interval), ends
    leases past their expiry, releases what deleted agents still hold (SPEC 4, 9),
    deletes terminal jobs past retention (SPEC 12) and fires due schedules (SPEC 11);
    each sweep is single-winner on its own.
    """
    for sweep in (refresh_paused, reap_once, sweep_departed, purge_once, fire_due):
        try:
            await sweep(co)
        except CoordinatorError as exc:
            # The store may be down for a while; the next tick tries again. ``reason`` is
            # the store's own text: a full disk, a lock or a damaged file read alike as
            # ``store_unavailable``.
            co.log.warning(
                "coordinator.reaper.failed", sweep=sweep.__name__, code=exc.code, error=exc.reason
            )


async def run_reaper(co: Coordinator) -> None:
    """A ``reaper_tick`` every ``reaper_interval_seconds`` until cancelled."""
    while True:
        await reaper_tick(co)
        await asyncio.sleep(co.settings.reaper_interval_seconds)
