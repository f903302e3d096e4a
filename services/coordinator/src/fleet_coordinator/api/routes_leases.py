"""Agent endpoints: claim, heartbeat, complete, fail, release, reports (caller's leases only).

A well-formed request reaches these functions through ``api/hot.py``, not FastAPI:
the guard (``api/middleware.py``) has already checked the token and passes the
agent's document in for ``AgentAuth``. A claim continues in ``services/claims.py``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from fastapi import APIRouter, Response
from fleet_datastore import Document

from ..domain import JobState
from ..errors import ConflictError, CoordinatorError
from ..services import (
    claim_jobs,
    claim_waiting,
    complete_job,
    fail_job,
    heartbeat_job,
    release_job,
    wait_and_claim,
)
from ..services.context import Coordinator
from ..services.reports import Action, Report, ReportOutcome, apply_reports
from .convert import Answer, job_json, lease_json, lease_out
from .deps import AgentAuth, Co
from .models import (
    ClaimOut,
    ClaimRequest,
    CompleteItem,
    CompleteRequest,
    ErrorOut,
    FailItem,
    FailRequest,
    HeartbeatItem,
    HeartbeatOut,
    HeartbeatRequest,
    JobOut,
    ReleaseRequest,
    ReportItem,
    ReportOut,
    ReportRequest,
)
from .routes_jobs import check_size

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["agent"])


_TOO_MANY = "this agent's long-polls waiting on this replica are at the cap (too_many_long_polls)"


def _claimed(jobs: list[JobState]) -> list[dict[str, Any]]:
    """The leases of a claim as ``ClaimedLease`` shows them, as plain values."""
    leases = []
    for job in jobs:
        shown = job_json(job)
        if shown["lease"] is not None:
            leases.append({"job": shown, "lease": shown["lease"]})
    return leases


@router.post(
    "/claims",
    response_model=ClaimOut,
    responses={429: {"model": ErrorOut, "description": _TOO_MANY}},
)
async def claim(body: ClaimRequest, agent: AgentAuth, co: Co) -> Response:
    """Lease up to ``max_jobs`` jobs, long-polling up to ``wait_seconds``."""
    jobs = await wait_and_claim(co, agent, body.queues, body.max_jobs, body.wait_seconds)
    return Answer({"leases": _claimed(jobs)})


@router.post("/jobs/{job_id}/heartbeat")
async def heartbeat(job_id: str, body: HeartbeatRequest, agent: AgentAuth, co: Co) -> HeartbeatOut:
    """Renew the lease; 409 ``lease_lost`` if the caller no longer holds that epoch."""
    check_size(co, body.progress, "progress")
    job = await heartbeat_job(co, agent.id, job_id, body.epoch, body.progress)
    lease = lease_out(job)
    if lease is None:  # heartbeat keeps a job leased; this guards the type only
        raise ConflictError("the lease is gone", code="lease_lost")
    return HeartbeatOut(lease=lease, cancel_requested=job.cancel_requested)


@router.post("/jobs/{job_id}/complete", response_model=JobOut)
async def complete(job_id: str, body: CompleteRequest, agent: AgentAuth, co: Co) -> Response:
    """Mark the job succeeded with its result."""
    check_size(co, body.result, "result")
    return Answer(job_json(await complete_job(co, agent.id, job_id, body.epoch, body.result)))


@router.post("/jobs/{job_id}/fail", response_model=JobOut)
async def fail(job_id: str, body: FailRequest, agent: AgentAuth, co: Co) -> Response:
    """End the attempt as failed; requeued with backoff while attempts remain."""
    job = await fail_job(co, agent.id, job_id, body.epoch, body.error, body.retryable)
    return Answer(job_json(job))


@router.post("/jobs/{job_id}/release", response_model=JobOut)
async def release(job_id: str, body: ReleaseRequest, agent: AgentAuth, co: Co) -> Response:
    """Give the job back to the queue without counting the attempt."""
    return Answer(job_json(await release_job(co, agent.id, job_id, body.epoch)))


def _report(co: Coordinator, item: ReportItem) -> Report | CoordinatorError:
    """The item as a service report, or the error its single endpoint's size check raises."""
    job_id, epoch, action = item.job_id, item.epoch, Action(item.action)
    try:
        if isinstance(item, CompleteItem):
            check_size(co, item.result, "result")
            return Report(job_id=job_id, epoch=epoch, action=action, result=item.result)
        if isinstance(item, HeartbeatItem):
            check_size(co, item.progress, "progress")
            return Report(job_id=job_id, epoch=epoch, action=action, progress=item.progress)
    except CoordinatorError as exc:
        return exc
    if isinstance(item, FailItem):
        return Report(
            job_id=job_id, epoch=epoch, action=action, error=item.error, retryable=item.retryable
        )
    return Report(job_id=job_id, epoch=epoch, action=action)


def _item_out(item: ReportItem, outcome: ReportOutcome) -> dict[str, Any]:
    """One item's answer as ``ReportItemOut`` shows it, as plain values.

    Only the fields of its outcome, none ``null`` (SPEC: ``status?``, ``lease?`` …).
    """
    error, job = outcome.error, outcome.job
    if error is None and job is not None:
        if item.action != "heartbeat":
            # ``_value_``, not the ``value`` property (domain/statuses.py).
            return {"job_id": outcome.job_id, "ok": True, "status": job.status._value_}
        if job.lease is not None:
            return {
                "job_id": outcome.job_id,
                "ok": True,
                "status": job.status._value_,
                "lease": lease_json(job.lease),
                "cancel_requested": job.cancel_requested,
            }
        # A heartbeat keeps its job leased: this guards the type only, answered as the
        # single endpoint answers it (lease_lost).
    exc = error or ConflictError("the lease is gone", code="lease_lost")
    return {
        "job_id": outcome.job_id,
        "ok": False,
        "error": {"code": exc.code, "message": exc.message},
    }


async def _claim_after(
    co: Coordinator, agent: Document, want: ClaimRequest, done: list[ReportOutcome]
) -> list[JobState]:
    """A report request's claim; when the store fails in it, the items applied are answered.

    Their changes are written: a 503 for the whole request would tell the agent
    that nothing was, and its retry would get ``lease_lost`` for a job it had
    completed. The claim's failure then answers no leases, as a claim that
    found nothing does; with no item applied, it is the request's answer (503).
    """
    try:
        if want.wait_seconds > 0:
            return await claim_waiting(co, agent, want.queues, want.max_jobs, want.wait_seconds)
        return await claim_jobs(co, agent, want.queues, want.max_jobs)
    except CoordinatorError as exc:
        if not any(outcome.job is not None for outcome in done):
            raise
        co.log.warning("coordinator.reports.claim_failed", agent_id=agent.id, error=exc.code)
        return []


@router.post("/reports", response_model=ReportOut)
async def reports(body: ReportRequest, agent: AgentAuth, co: Co) -> Response:
    """Apply many reports, each as its single endpoint; then optionally claim freed slots."""
    checked = [_report(co, item) for item in body.items]
    valid = [r for r in checked if isinstance(r, Report)]
    want = body.claim
    long_poll = want is not None and want.wait_seconds > 0
    jobs: list[JobState] = []
    # A claim that may wait takes its long-poll slot before any item is applied: a 429
    # then refuses the whole request, instead of answering for items it applied.
    with co.long_polls.slot(agent.id) if long_poll else nullcontext():
        # In this replica's current wave of reports (services/waves.py); the claim comes
        # after the reports, so the slots their ended leases freed count already.
        async with co.waves.turn():
            done = await apply_reports(co, agent.id, valid)
            if want is not None and not long_poll:
                jobs = await _claim_after(co, agent, want, done)
        if want is not None and long_poll:
            # A claim that may wait leaves the wave first: the next one must not wait for it.
            jobs = await _claim_after(co, agent, want, done)
    applied = iter(done)
    outcomes = [
        ReportOutcome(item.job_id, error=r) if isinstance(r, CoordinatorError) else next(applied)
        for item, r in zip(body.items, checked, strict=True)
    ]
    answers = [_item_out(i, o) for i, o in zip(body.items, outcomes, strict=True)]
    return Answer({"items": answers, "leases": _claimed(jobs)})
