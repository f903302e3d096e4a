"""Agent endpoints: claim, heartbeat, complete, fail, release (only on the caller's leases)."""

from __future__ import annotations

from fastapi import APIRouter

from ..errors import ConflictError
from ..services import complete_job, fail_job, heartbeat_job, release_job, wait_and_claim
from .convert import job_out, lease_out
from .deps import AgentAuth, Co
from .models import (
    ClaimedLease,
    ClaimOut,
    ClaimRequest,
    CompleteRequest,
    ErrorOut,
    FailRequest,
    HeartbeatOut,
    HeartbeatRequest,
    JobOut,
    ReleaseRequest,
)
from .routes_jobs import check_size

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["agent"])


_TOO_MANY = "this agent's long-polls waiting on this replica are at the cap (too_many_long_polls)"


@router.post("/claims", responses={429: {"model": ErrorOut, "description": _TOO_MANY}})
async def claim(body: ClaimRequest, agent: AgentAuth, co: Co) -> ClaimOut:
    """Lease up to ``max_jobs`` jobs, long-polling up to ``wait_seconds``."""
    jobs = await wait_and_claim(co, agent, body.queues, body.max_jobs, body.wait_seconds)
    leases = []
    for job in jobs:
        lease = lease_out(job)
        if lease is not None:
            leases.append(ClaimedLease(job=job_out(job), lease=lease))
    return ClaimOut(leases=leases)


@router.post("/jobs/{job_id}/heartbeat")
async def heartbeat(job_id: str, body: HeartbeatRequest, agent: AgentAuth, co: Co) -> HeartbeatOut:
    """Renew the lease; 409 ``lease_lost`` if the caller no longer holds that epoch."""
    check_size(co, body.progress, "progress")
    job = await heartbeat_job(co, agent.id, job_id, body.epoch)
    lease = lease_out(job)
    if lease is None:  # heartbeat keeps a job leased; this guards the type only
        raise ConflictError("the lease is gone", code="lease_lost")
    return HeartbeatOut(lease=lease, cancel_requested=job.cancel_requested)


@router.post("/jobs/{job_id}/complete")
async def complete(job_id: str, body: CompleteRequest, agent: AgentAuth, co: Co) -> JobOut:
    """Mark the job succeeded with its result."""
    check_size(co, body.result, "result")
    return job_out(await complete_job(co, agent.id, job_id, body.epoch, body.result))


@router.post("/jobs/{job_id}/fail")
async def fail(job_id: str, body: FailRequest, agent: AgentAuth, co: Co) -> JobOut:
    """End the attempt as failed; requeued with backoff while attempts remain."""
    return job_out(await fail_job(co, agent.id, job_id, body.epoch, body.error, body.retryable))


@router.post("/jobs/{job_id}/release")
async def release(job_id: str, body: ReleaseRequest, agent: AgentAuth, co: Co) -> JobOut:
    """Give the job back to the queue without counting the attempt."""
    return job_out(await release_job(co, agent.id, job_id, body.epoch))
