"""The reaper's transition: expiry and timeout end a lease; nothing else is touched."""

from __future__ import annotations

import pytest
from fleet_coordinator.domain import (
    BackoffPolicy,
    JobState,
    JobStatus,
    Rejection,
    RunOutcome,
    cancel,
    complete,
    fail,
    heartbeat,
    reap,
    reap_due_at,
    release,
)

from tests.coordinator.domain_support import AGENT, T0, leased, new_job, ok, refused


def test_a_queued_job_has_nothing_to_reap() -> None:
    """The reaper leaves queued jobs alone."""
    refused(reap(new_job(), T0 + 1000), Rejection.NOTHING_TO_REAP)


def test_a_live_lease_is_not_reaped() -> None:
    """Just before expiry the lease still holds and the reaper does nothing."""
    held = leased(lease_seconds=30)
    refused(reap(held, T0 + 29.999), Rejection.NOTHING_TO_REAP)


@pytest.mark.parametrize("ending", ["complete", "fail", "release_cancelled", "cancel_queued"])
def test_a_terminal_job_is_never_touched(ending: str) -> None:
    """However late the reaper runs, a terminal job is refused and unchanged (the seed lesson)."""
    held = leased(max_attempts=1, lease_seconds=10)
    if ending == "complete":
        done = ok(complete(held, AGENT, 1, T0 + 9))
    elif ending == "fail":
        done = ok(fail(held, AGENT, 1, T0 + 9, error="x"))
    elif ending == "release_cancelled":
        done = ok(release(ok(cancel(held, T0 + 1)), AGENT, 1, T0 + 9))
    else:
        done = ok(cancel(new_job(), T0))
    assert done.is_terminal
    refused(reap(done, T0 + 10_000), Rejection.ALREADY_TERMINAL)


def test_an_expired_lease_requeues_the_job_at_once_with_the_attempt_counted() -> None:
    """Expiry ends the run as lease_expired and the job is claimable again immediately."""
    held = leased(lease_seconds=30, max_attempts=3)
    back = ok(reap(held, T0 + 30))
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 1
    assert back.run_after == held.run_after
    assert back.lease is None
    assert back.updated_at == T0 + 30
    assert back.last_error is not None
    (run,) = back.runs
    assert run.outcome is RunOutcome.LEASE_EXPIRED
    assert run.ended_at == T0 + 30
    assert run.error is not None


def test_an_expired_lease_on_the_last_attempt_fails_the_job() -> None:
    """With no attempts left, expiry makes the job failed."""
    held = leased(lease_seconds=30, max_attempts=1)
    final = ok(reap(held, T0 + 31))
    assert final.status is JobStatus.FAILED
    assert final.attempts == 1
    assert final.runs[-1].outcome is RunOutcome.LEASE_EXPIRED


def test_a_cancel_requested_job_whose_lease_expires_is_cancelled() -> None:
    """Expiry of a cancel-requested lease cancels the job instead of requeueing it."""
    asked = ok(cancel(leased(lease_seconds=30), T0 + 1))
    gone = ok(reap(asked, T0 + 30))
    assert gone.status is JobStatus.CANCELLED
    assert gone.runs[-1].outcome is RunOutcome.LEASE_EXPIRED


def test_an_attempt_past_its_timeout_is_a_failed_attempt_with_backoff() -> None:
    """A timed-out attempt ends as timed_out, counts, and is requeued after the backoff."""
    policy = BackoffPolicy(base_seconds=7)
    held = leased(lease_seconds=30, timeout_seconds=50, max_attempts=2)
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 25))  # T0 + 55, capped at the deadline
    back = ok(reap(renewed, T0 + 50, backoff=policy))
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 1
    assert back.run_after == T0 + 57
    assert back.runs[-1].outcome is RunOutcome.TIMED_OUT
    assert back.last_error is not None
    assert "timeout" in back.last_error


def test_a_timeout_on_the_last_attempt_fails_the_job() -> None:
    """With no attempts left, a timeout makes the job failed."""
    held = leased(lease_seconds=100, timeout_seconds=50, max_attempts=1)
    final = ok(reap(held, T0 + 60))
    assert final.status is JobStatus.FAILED
    assert final.runs[-1].outcome is RunOutcome.TIMED_OUT


def test_a_cancel_requested_job_that_times_out_is_cancelled() -> None:
    """A timeout of a cancel-requested lease cancels the job."""
    asked = ok(cancel(leased(lease_seconds=100, timeout_seconds=50), T0 + 1))
    gone = ok(reap(asked, T0 + 50))
    assert gone.status is JobStatus.CANCELLED
    assert gone.runs[-1].outcome is RunOutcome.TIMED_OUT


@pytest.mark.parametrize(
    ("lease_seconds", "timeout_seconds", "outcome"),
    [
        (30, 20, RunOutcome.TIMED_OUT),
        (20, 30, RunOutcome.LEASE_EXPIRED),
        (25, 25, RunOutcome.TIMED_OUT),
    ],
)
def test_when_both_have_passed_the_earlier_names_the_outcome(
    lease_seconds: float, timeout_seconds: float, outcome: RunOutcome
) -> None:
    """A late reaper names the outcome by whichever moment came first (a tie is a timeout)."""
    held = leased(lease_seconds=lease_seconds, timeout_seconds=timeout_seconds)
    assert ok(reap(held, T0 + 1000)).runs[-1].outcome is outcome


def test_a_lease_capped_at_its_deadline_ends_timed_out_not_expired() -> None:
    """Its expiry and deadline coincide, and the outcome is the timeout (SPEC 7)."""
    held = leased(lease_seconds=30, timeout_seconds=2, max_attempts=2)
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 1))
    assert renewed.lease is not None
    assert renewed.lease.expires_at == renewed.lease.deadline == T0 + 2
    assert reap_due_at(renewed) == T0 + 2
    refused(reap(renewed, T0 + 1.999), Rejection.NOTHING_TO_REAP)
    back = ok(reap(renewed, T0 + 2))
    assert back.runs[-1].outcome is RunOutcome.TIMED_OUT
    assert back.status is JobStatus.QUEUED
    assert back.run_after > T0 + 2  # after the backoff of a failed attempt


def test_reap_due_at_is_the_earlier_of_expiry_and_deadline() -> None:
    """The reaper's next look at a job is its expiry or its deadline, whichever is first."""
    assert reap_due_at(new_job()) is None
    assert reap_due_at(leased(lease_seconds=30)) == T0 + 30
    assert reap_due_at(leased(lease_seconds=30, timeout_seconds=10)) == T0 + 10
    assert reap_due_at(leased(lease_seconds=30, timeout_seconds=90)) == T0 + 30
    done = ok(complete(leased(), AGENT, 1, T0 + 1))
    assert reap_due_at(done) is None


def test_a_stale_reaper_read_cannot_undo_a_completion() -> None:
    """Reap judged on the completed job (the re-read after a conflict) refuses to act."""
    held = leased(lease_seconds=10)
    # Replica A read `held` and is about to reap it; the agent completes first.
    done = ok(complete(held, AGENT, 1, T0 + 9.5))
    # A's conditional write fails on the etag; it re-reads and decides again.
    refused(reap(done, T0 + 11), Rejection.ALREADY_TERMINAL)
    # Deciding on the stale copy would act, which is why the write must be conditional.
    stale: JobState = ok(reap(held, T0 + 11))
    assert stale.status is JobStatus.QUEUED
