"""Agent calls on a held lease: heartbeat, complete, fail, release (all fenced by epoch)."""

from __future__ import annotations

from typing import Any

from .. import domain
from ..domain import JobState, JobStatus, Timestamp
from ..errors import CoordinatorError
from .context import Coordinator
from .ledger import forget_lease
from .locks import release
from .transitions import transition

__all__ = ["complete_job", "fail_job", "heartbeat_job", "release_agent_leases", "release_job"]


async def _ended(co: Coordinator, op: str, agent_id: str, old: JobState, new: JobState) -> None:
    # The lease ended: free its lock at once (SPEC 9), free the agent's capacity slot
    # and log the state change.
    if old.lease is not None:
        await release(co, old.lock, new.id, old.epoch, old.lease.run_id)
    await forget_lease(co, agent_id, new.id, old.epoch)
    co.metrics.finished.labels(op, new.status.value).inc()
    co.log.info(
        f"coordinator.job.{op}",
        job_id=new.id,
        agent_id=agent_id,
        epoch=old.epoch,
        status=new.status.value,
    )
    if new.status is JobStatus.QUEUED:
        co.notifier.notify()


async def heartbeat_job(co: Coordinator, agent_id: str, job_id: str, epoch: int) -> JobState:
    """Renew the caller's live lease; 409 ``lease_lost`` otherwise."""

    def decide(job: JobState, now: Timestamp) -> JobState | domain.Rejected:
        return domain.heartbeat(job, agent_id, epoch, now)

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


async def release_agent_leases(co: Coordinator, agent_id: str, held: dict[str, Any]) -> None:
    """Release every lease a deleted agent held (leases already lost are left to the reaper)."""
    for job_id, entry in held.items():
        try:
            await release_job(co, agent_id, job_id, int(entry["epoch"]))
        except CoordinatorError:
            # Already ended, expired or gone: the reaper or nobody has anything to do.
            continue
