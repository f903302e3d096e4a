"""Agent-side transitions: claim, heartbeat, complete, fail and release.

Each takes the current job, the coordinator's ``now`` and the caller's inputs,
and returns the new ``JobState`` or a ``Rejected``; the input job is never
mutated. Every call after the claim is fenced: it succeeds only for the agent
holding a live lease with exactly the given epoch (SPEC semantics 1 and 2).

Attempts are counted at claim time, as in River and Oban: a crash mid-run
(lease expiry) then costs an attempt without any extra bookkeeping, and
``release`` gives the attempt back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._changes import append_run, end_lease, held_lease, moved
from ._replace import replace
from .backoff import DEFAULT_BACKOFF, BackoffPolicy, RandomSource
from .clock import Timestamp
from .job import JobState, Lease, Run
from .matching import claim_rejection
from .rejections import Rejected
from .statuses import JobStatus, RunOutcome

__all__ = ["claim", "complete", "fail", "heartbeat", "release"]


def claim(
    job: JobState,
    agent_id: str,
    run_id: str,
    now: Timestamp,
    *,
    labels: Mapping[str, str] | None,
    lease_seconds: float | None = None,
) -> JobState | Rejected:
    """Lease a queued, due job to ``agent_id``: epoch + 1, attempts + 1, a new running run.

    ``labels`` are the agent's labels, matched against ``requires``; pass None
    only when the caller matched them already.
    """
    refused = claim_rejection(job, now, labels)
    if refused is not None:
        return refused
    seconds = job.lease_seconds if lease_seconds is None else lease_seconds
    epoch = job.epoch + 1
    deadline = None if job.timeout_seconds is None else now + job.timeout_seconds
    lease = Lease(
        agent_id=agent_id,
        run_id=run_id,
        epoch=epoch,
        expires_at=_expiry(now, seconds, deadline),
        claimed_at=now,
        deadline=deadline,
    )
    run = Run(run_id=run_id, epoch=epoch, agent_id=agent_id, claimed_at=now)
    runs, dropped = append_run(job, run)
    return moved(
        job,
        JobStatus.LEASED,
        now,
        lease=lease,
        epoch=epoch,
        attempts=job.attempts + 1,
        runs=runs,
        runs_dropped=dropped,
    )


def _expiry(now: Timestamp, seconds: float, deadline: Timestamp | None) -> Timestamp:
    """``now + seconds``, but never past the attempt's deadline.

    The lease is lost at the deadline whatever ``expires_at`` says (``Lease.is_live``),
    and agents schedule their heartbeats and give up their reports by ``expires_at``
    (SPEC 3: a lease not renewed by then is lost): a later value would promise time
    the attempt does not have. At the deadline ``reap`` still names the outcome
    ``timed_out`` (the deadline is not after the expiry).
    """
    expires = now + seconds
    return expires if deadline is None or expires < deadline else deadline


def heartbeat(
    job: JobState,
    agent_id: str,
    epoch: int,
    now: Timestamp,
    *,
    lease_seconds: float | None = None,
    progress: Any = None,
) -> JobState | Rejected:
    """Renew the holder's live lease to ``now + lease_seconds`` (at most its deadline).

    The deadline never moves: a heartbeat cannot stretch an attempt past its timeout.

    A ``progress`` other than None is kept on the current run (the console shows it).
    """
    lease = held_lease(job, agent_id, epoch, now)
    if isinstance(lease, Rejected):
        return lease
    seconds = job.lease_seconds if lease_seconds is None else lease_seconds
    renewed = replace(lease, expires_at=_expiry(now, seconds, lease.deadline))
    current = job.current_run
    if progress is None or current is None:
        return moved(job, JobStatus.LEASED, now, lease=renewed)
    runs = (*job.runs[:-1], replace(current, progress=progress))
    return moved(job, JobStatus.LEASED, now, lease=renewed, runs=runs)


def complete(
    job: JobState, agent_id: str, epoch: int, now: Timestamp, *, result: Any = None
) -> JobState | Rejected:
    """Mark the job succeeded with ``result``; completion wins over a pending cancel request."""
    lease = held_lease(job, agent_id, epoch, now)
    if isinstance(lease, Rejected):
        return lease
    runs = job.runs
    current = job.current_run
    if current is not None:
        ended = replace(current, ended_at=now, outcome=RunOutcome.SUCCEEDED)
        runs = (*runs[:-1], ended)
    return moved(job, JobStatus.SUCCEEDED, now, lease=None, runs=runs, result=result)


def fail(
    job: JobState,
    agent_id: str,
    epoch: int,
    now: Timestamp,
    *,
    error: str,
    retryable: bool = True,
    backoff: BackoffPolicy = DEFAULT_BACKOFF,
    rng: RandomSource | None = None,
) -> JobState | Rejected:
    """End the attempt as failed: requeue after backoff while attempts remain, else failed.

    A non-retryable failure fails the job at once; a cancel-requested job is cancelled.
    """
    lease = held_lease(job, agent_id, epoch, now)
    if isinstance(lease, Rejected):
        return lease
    return end_lease(
        job,
        now,
        outcome=RunOutcome.FAILED,
        error=error,
        counted=True,
        requeue=retryable,
        retry_at=now + backoff.delay(job.attempts, rng),
    )


def release(job: JobState, agent_id: str, epoch: int, now: Timestamp) -> JobState | Rejected:
    """Give the job back to the queue at once without counting the attempt.

    Releasing a cancel-requested job is how an agent acknowledges the cancel:
    the job becomes cancelled and the run's outcome is ``cancelled``.
    """
    lease = held_lease(job, agent_id, epoch, now)
    if isinstance(lease, Rejected):
        return lease
    outcome = RunOutcome.CANCELLED if job.cancel_requested else RunOutcome.RELEASED
    return end_lease(
        job, now, outcome=outcome, error=None, counted=False, requeue=True, retry_at=None
    )
