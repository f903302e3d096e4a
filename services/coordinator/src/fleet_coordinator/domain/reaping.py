"""The reaper's transition: end leases that expired or attempts that ran too long.

``reap`` is what makes SPEC semantics 3 (expiry) and 7 (timeout) hold. It acts
only on a leased job whose lease is no longer live by the coordinator's clock;
every other job, and above all every terminal job, is refused and unchanged, so
a sweep can never overwrite a job that an agent just completed. The service
pairs it with a conditional write on the document's etag, which makes the
recovery single-winner across replicas.
"""

from __future__ import annotations

from ._changes import end_lease
from .backoff import DEFAULT_BACKOFF, BackoffPolicy, RandomSource
from .clock import Timestamp
from .job import JobState
from .rejections import Rejected, Rejection
from .statuses import JobStatus, RunOutcome

__all__ = ["reap", "reap_due_at"]


def reap_due_at(job: JobState) -> Timestamp | None:
    """When the reaper should next look at ``job``: the earlier of expiry and deadline."""
    lease = job.lease
    if job.status is not JobStatus.LEASED or lease is None:
        return None
    if lease.deadline is None:
        return lease.expires_at
    return min(lease.expires_at, lease.deadline)


def reap(
    job: JobState,
    now: Timestamp,
    *,
    backoff: BackoffPolicy = DEFAULT_BACKOFF,
    rng: RandomSource | None = None,
) -> JobState | Rejected:
    """End a lease that is no longer live at ``now``.

    An expired lease ends with run outcome ``lease_expired`` and the job goes
    straight back to the queue (the agent most likely crashed; nothing says
    the job itself is at fault). An attempt past its deadline ends with
    ``timed_out`` and counts as a failed attempt, so it is requeued after
    backoff. Either way the attempt is counted: with none left the job fails,
    and a cancel-requested job is cancelled. When both moments have passed,
    whichever came first names the outcome; a tie is a timeout, which is what a
    lease whose expiry was capped at its deadline (``leasing._expiry``) ends as.
    """
    if job.is_terminal:
        return Rejected(Rejection.ALREADY_TERMINAL, f"job is already {job.status.value}")
    due = reap_due_at(job)
    lease = job.lease
    if due is None or lease is None:
        return Rejected(Rejection.NOTHING_TO_REAP, f"job is {job.status.value}; no lease to end")
    if now < due:
        return Rejected(Rejection.NOTHING_TO_REAP, "the lease is still live")
    if lease.deadline is not None and lease.deadline <= lease.expires_at:
        return end_lease(
            job,
            now,
            outcome=RunOutcome.TIMED_OUT,
            error=f"attempt exceeded its timeout of {job.timeout_seconds} s",
            counted=True,
            requeue=True,
            retry_at=now + backoff.delay(job.attempts, rng),
        )
    return end_lease(
        job,
        now,
        outcome=RunOutcome.LEASE_EXPIRED,
        error="lease expired without a heartbeat",
        counted=True,
        requeue=True,
        retry_at=None,
    )
