"""Agent calls on a held lease: heartbeat, complete, fail, release (all fenced by epoch)."""

from __future__ import annotations

from typing import Any

from .. import domain
from ..domain import JobState, JobStatus, Timestamp
from ..errors import UnavailableError
from ..tracing import job_span
from .context import Coordinator
from .locks import release
from .throughput import Event
from .transitions import transition

__all__ = [
    "complete_job",
    "fail_job",
    "heartbeat_job",
    "lease_ended",
    "release_job",
]


async def lease_ended(co: Coordinator, old: JobState, new: JobState) -> None:
    """A lease ended (complete, fail, release, expiry, timeout, agent delete): free what it held.

    The one place every end of a lease passes through, once its write landed:
    the job's lock (SPEC 9: free at once), the agent's capacity slot, and the
    waiting claimers when the job is queued again.

    The lease has ended in the store before this runs: if freeing the lock is
    cancelled (a long-polling report whose client left) or fails, the slot and the
    waiters are still seen to; the lock document left behind names a lease that
    ended, which ``locks.holder_state`` judges free, so the next claimer takes it over.
    A store outage while freeing it is therefore logged, not answered (503).
    """
    lease = old.lease
    try:
        if lease is not None:
            try:
                await release(co, old.lock, new.id, lease.epoch, lease.run_id)
            except UnavailableError:
                # The end is written, so the answer is its success, not a 503 whose retry
                # would find the lease gone (409): the lock left behind is judged free.
                co.log.warning("coordinator.lock.release_left", lock=old.lock, job_id=new.id)
    finally:
        if lease is not None:
            co.ledger.forget(lease.agent_id, new.id, lease.epoch)
        if new.status is JobStatus.QUEUED:
            co.notifier.notify()


async def _ended(co: Coordinator, op: str, agent_id: str, old: JobState, new: JobState) -> None:
    try:
        await lease_ended(co, old, new)
    finally:
        # The end is written: counted and logged even if freeing its lock did not finish.
        # ``_value_``, not the ``value`` property (domain/statuses.py): every job ends here.
        co.metrics.labelled(co.metrics.finished, op, new.status._value_).inc()
        _count_end(co, new)
        co.log.info(
            f"coordinator.job.{op}",
            job_id=new.id,
            agent_id=agent_id,
            epoch=old.epoch,
            status=new.status._value_,
        )
        job_span(f"coordinator.job.{op}", new, agent_id, old.epoch)


def _count_end(co: Coordinator, job: JobState) -> None:
    if job.status is JobStatus.SUCCEEDED:
        co.throughput.add(Event.SUCCEEDED, job.updated_at)
    elif job.status is JobStatus.FAILED:
        co.throughput.add(Event.FAILED, job.updated_at)


async def heartbeat_job(
    co: Coordinator, agent_id: str, job_id: str, epoch: int, progress: Any = None
) -> JobState:
    """Renew the caller's live lease (keeping ``progress`` on its run); 409 ``lease_lost``."""

    def decide(job: JobState, now: Timestamp) -> JobState | domain.Rejected:
        return domain.heartbeat(job, agent_id, epoch, now, progress=progress)

    _, new = await transition(co, job_id, decide, "heartbeat")
    co.log.debug("coordinator.job.heartbeat", job_id=job_id, agent_id=agent_id, epoch=epoch)
    return new


async def complete_job(
    co: Coordinator, agent_id: str, job_id: str, epoch: int, result: Any
) -> JobState:
    """Mark the job succeeded; 409 ``lease_lost`` unless the caller holds that epoch."""

    def decide(job: JobState, now: Timestamp) -> JobState | domain.Rejected:
        return domain.complete(job, agent_id, epoch, now, result=result)

    old, new = await transition(co, job_id, decide, "complete")
    await _ended(co, "completed", agent_id, old, new)
    return new


async def fail_job(
    co: Coordinator, agent_id: str, job_id: str, epoch: int, error: str, retryable: bool
) -> JobState:
    """End the attempt as failed: requeued with backoff while attempts remain, else failed."""

    def decide(job: JobState, now: Timestamp) -> JobState | domain.Rejected:
        return domain.fail(
            job,
            agent_id,
            epoch,
            now,
            error=error,
            retryable=retryable,
            backoff=co.backoff,
            rng=co.rng.random,
        )

    old, new = await transition(co, job_id, decide, "fail")
    await _ended(co, "failed", agent_id, old, new)
    return new


async def release_job(co: Coordinator, agent_id: str, job_id: str, epoch: int) -> JobState:
    """Give the job back to the queue without counting the attempt."""

    def decide(job: JobState, now: Timestamp) -> JobState | domain.Rejected:
        return domain.release(job, agent_id, epoch, now)

    old, new = await transition(co, job_id, decide, "release")
    await _ended(co, "released", agent_id, old, new)
    return new
