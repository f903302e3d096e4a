"""Shared building blocks of the transition functions (private to the domain)."""

from __future__ import annotations

from typing import Any

from ._replace import replace
from .clock import Timestamp
from .job import MAX_RUNS, JobState, Lease, Run
from .rejections import Rejected, Rejection
from .statuses import JobStatus, RunOutcome, can_transition

__all__ = ["append_run", "end_lease", "held_lease", "moved"]


def moved(job: JobState, status: JobStatus, now: Timestamp, **changes: Any) -> JobState:
    """Return ``job`` in ``status`` with ``changes``, refusing a change the table forbids."""
    if status is not job.status and not can_transition(job.status, status):
        # A bug in this package, never a user error: fail loudly rather than store it.
        raise AssertionError(f"transition {job.status.value} -> {status.value} is not allowed")
    return replace(job, status=status, updated_at=now, **changes)


def append_run(job: JobState, run: Run) -> tuple[tuple[Run, ...], int]:
    """The run history with ``run`` appended, trimmed to ``MAX_RUNS``, and the new drop count."""
    runs = (*job.runs, run)
    dropped = max(len(runs) - MAX_RUNS, 0)
    return runs[dropped:], job.runs_dropped + dropped


def held_lease(job: JobState, agent_id: str, epoch: int, now: Timestamp) -> Lease | Rejected:
    """The job's lease if ``agent_id`` holds it live at exactly ``epoch``, else ``lease_lost``."""
    lease = job.lease
    if job.status is not JobStatus.LEASED or lease is None:
        return Rejected(Rejection.LEASE_LOST, f"job is {job.status.value}; there is no lease")
    if not lease.is_held_by(agent_id, epoch):
        return Rejected(
            Rejection.LEASE_LOST, f"epoch {epoch} of this agent is not the job's current lease"
        )
    # Judged by the coordinator's clock: a lease past expiry or deadline is lost even
    # if the reaper has not swept it yet, so the result never depends on reaper timing.
    if not lease.is_live(now):
        return Rejected(Rejection.LEASE_LOST, "the lease has expired")
    return lease


def end_lease(
    job: JobState,
    now: Timestamp,
    *,
    outcome: RunOutcome,
    error: str | None,
    counted: bool,
    requeue: bool,
    retry_at: Timestamp | None,
) -> JobState:
    """End the current lease and run with ``outcome`` and decide what the job becomes.

    ``counted=False`` gives the attempt back (release). The job is cancelled if a
    cancel was requested, requeued if ``requeue`` and an attempt is left (due at
    ``retry_at``, or unchanged when None), and failed otherwise.
    """
    runs = job.runs
    current = job.current_run
    if current is not None:
        runs = (*runs[:-1], replace(current, ended_at=now, outcome=outcome, error=error))
    attempts = job.attempts if counted else max(job.attempts - 1, 0)
    last_error = error if error is not None else job.last_error
    common: dict[str, Any] = {
        "lease": None,
        "runs": runs,
        "attempts": attempts,
        "last_error": last_error,
    }
    if job.cancel_requested:
        # SPEC 6: a cancel-requested job whose lease ends is cancelled, not requeued.
        return moved(job, JobStatus.CANCELLED, now, **common)
    if requeue and attempts < job.max_attempts:
        run_after = job.run_after if retry_at is None else retry_at
        return moved(job, JobStatus.QUEUED, now, run_after=run_after, **common)
    return moved(job, JobStatus.FAILED, now, **common)
