"""Heartbeat, complete, fail, release: fenced by holder and epoch, judged by our own clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from fleet_coordinator.domain import (
    BackoffPolicy,
    JobState,
    JobStatus,
    Rejected,
    Rejection,
    RunOutcome,
    cancel,
    complete,
    fail,
    heartbeat,
    release,
)

from tests.coordinator.domain_support import AGENT, OTHER, T0, leased, new_job, ok, refused

AgentCall = Callable[[JobState, str, int, float], JobState | Rejected]

AGENT_CALLS: dict[str, AgentCall] = {
    "heartbeat": lambda job, agent, epoch, now: heartbeat(job, agent, epoch, now),
    "complete": lambda job, agent, epoch, now: complete(job, agent, epoch, now, result={"ok": 1}),
    "fail": lambda job, agent, epoch, now: fail(job, agent, epoch, now, error="boom"),
    "release": lambda job, agent, epoch, now: release(job, agent, epoch, now),
}


@pytest.fixture(params=sorted(AGENT_CALLS))
def call(request: pytest.FixtureRequest) -> AgentCall:
    """Each of the four fenced agent calls in turn."""
    return AGENT_CALLS[request.param]


def test_the_holder_at_the_current_epoch_is_accepted(call: AgentCall) -> None:
    """The agent holding a live lease with its exact epoch may make any fenced call."""
    held = leased(lease_seconds=30)
    ok(call(held, AGENT, 1, T0 + 29.9))


def test_another_agent_gets_lease_lost(call: AgentCall) -> None:
    """An agent that does not hold the lease is refused, even with the right epoch."""
    held = leased()
    refused(call(held, OTHER, 1, T0 + 1), Rejection.LEASE_LOST)


@pytest.mark.parametrize("epoch", [0, 2, -1])
def test_a_wrong_epoch_gets_lease_lost(call: AgentCall, epoch: int) -> None:
    """A stale or future epoch is refused even from the holding agent."""
    held = leased()
    refused(call(held, AGENT, epoch, T0 + 1), Rejection.LEASE_LOST)


def test_an_old_epoch_of_a_reclaimed_job_gets_lease_lost(call: AgentCall) -> None:
    """After release and re-claim by the same agent, the old epoch is dead."""
    first = leased()
    again = leased(ok(release(first, AGENT, 1, T0 + 1)), now=T0 + 2)
    refused(call(again, AGENT, 1, T0 + 3), Rejection.LEASE_LOST)
    ok(call(again, AGENT, 2, T0 + 3))


@pytest.mark.parametrize("late", [0.0, 0.001, 1000.0])
def test_an_expired_lease_is_lost_even_before_the_reaper_runs(call: AgentCall, late: float) -> None:
    """At or after ``expires_at`` the lease is lost, whether or not it was reaped."""
    held = leased(lease_seconds=30)
    refused(call(held, AGENT, 1, T0 + 30 + late), Rejection.LEASE_LOST)


def test_an_attempt_past_its_deadline_is_lost(call: AgentCall) -> None:
    """At the timeout deadline the lease is lost even if heartbeats kept it from expiring."""
    held = leased(lease_seconds=30, timeout_seconds=50)
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 25))
    assert renewed.lease is not None
    assert renewed.lease.expires_at == T0 + 50  # T0 + 55, capped at the deadline
    refused(call(renewed, AGENT, 1, T0 + 50), Rejection.LEASE_LOST)


def test_a_queued_job_has_no_lease_to_act_on(call: AgentCall) -> None:
    """Fenced calls on a job nobody holds are lease_lost."""
    refused(call(new_job(), AGENT, 0, T0), Rejection.LEASE_LOST)


@pytest.mark.parametrize("ending", ["complete", "fail_final", "cancelled"])
def test_late_calls_never_touch_a_terminal_job(call: AgentCall, ending: str) -> None:
    """A late agent call on a succeeded, failed or cancelled job is lease_lost."""
    held = leased(max_attempts=1)
    if ending == "complete":
        done = ok(complete(held, AGENT, 1, T0 + 1))
    elif ending == "fail_final":
        done = ok(fail(held, AGENT, 1, T0 + 1, error="x"))
    else:
        done = ok(release(ok(cancel(held, T0 + 1)), AGENT, 1, T0 + 1))
    assert done.is_terminal
    refused(call(done, AGENT, 1, T0 + 2), Rejection.LEASE_LOST)


def test_heartbeat_extends_the_lease_from_now() -> None:
    """A heartbeat moves ``expires_at`` to now plus the job's lease seconds."""
    held = leased(lease_seconds=30)
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 20))
    assert renewed.lease is not None
    assert renewed.lease.expires_at == T0 + 50
    assert renewed.lease.epoch == 1
    assert renewed.lease.claimed_at == T0
    assert renewed.updated_at == T0 + 20
    assert renewed.status is JobStatus.LEASED
    assert renewed.runs == held.runs
    # The renewed lease is live past the original expiry.
    ok(heartbeat(renewed, AGENT, 1, T0 + 45))


def test_heartbeat_lease_seconds_overrides_the_jobs_own() -> None:
    """An explicit ``lease_seconds`` sets the new expiry."""
    renewed = ok(heartbeat(leased(lease_seconds=30), AGENT, 1, T0 + 1, lease_seconds=5))
    assert renewed.lease is not None
    assert renewed.lease.expires_at == T0 + 6


def test_heartbeat_never_moves_the_deadline() -> None:
    """Renewing a lease cannot stretch an attempt past ``timeout_seconds``."""
    held = leased(timeout_seconds=100, lease_seconds=30)
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 20))
    assert renewed.lease is not None
    assert renewed.lease.deadline == T0 + 100


def test_a_lease_never_promises_time_past_the_attempts_deadline() -> None:
    """``expires_at`` is capped at the deadline, at the claim and at every heartbeat."""
    held = leased(lease_seconds=30, timeout_seconds=2)
    assert held.lease is not None
    assert held.lease.deadline == T0 + 2
    assert held.lease.expires_at == T0 + 2
    renewed = ok(heartbeat(held, AGENT, 1, T0 + 1))
    assert renewed.lease is not None
    assert renewed.lease.expires_at == T0 + 2
    ok(heartbeat(renewed, AGENT, 1, T0 + 1.999))
    refused(heartbeat(renewed, AGENT, 1, T0 + 2), Rejection.LEASE_LOST)
    # Far from the deadline the lease runs its own length.
    far = leased(lease_seconds=30, timeout_seconds=100)
    assert far.lease is not None
    assert far.lease.expires_at == T0 + 30
    for at, expires in ((T0 + 20, T0 + 50), (T0 + 45, T0 + 75), (T0 + 70, T0 + 100)):
        far = ok(heartbeat(far, AGENT, 1, at))
        assert far.lease is not None
        assert far.lease.expires_at == expires


def test_heartbeat_on_a_cancel_requested_job_succeeds_and_shows_the_request() -> None:
    """The holder keeps its lease after a cancel request and learns of it from the job."""
    asked = ok(cancel(leased(), T0 + 1))
    renewed = ok(heartbeat(asked, AGENT, 1, T0 + 2))
    assert renewed.cancel_requested is True
    assert renewed.status is JobStatus.LEASED


def test_complete_marks_the_job_succeeded_with_its_result() -> None:
    """Completion ends the lease, records the result and closes the run as succeeded."""
    done = ok(complete(leased(), AGENT, 1, T0 + 3, result={"answer": 42}))
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"answer": 42}
    assert done.lease is None
    assert done.attempts == 1
    assert done.updated_at == T0 + 3
    (run,) = done.runs
    assert (run.outcome, run.ended_at, run.error) == (RunOutcome.SUCCEEDED, T0 + 3, None)
    assert done.current_run is None


def test_complete_wins_over_a_pending_cancel_request() -> None:
    """Work that finished is recorded as succeeded even if a cancel was requested meanwhile."""
    asked = ok(cancel(leased(), T0 + 1))
    done = ok(complete(asked, AGENT, 1, T0 + 2))
    assert done.status is JobStatus.SUCCEEDED


def test_fail_with_attempts_left_requeues_after_backoff() -> None:
    """A retryable failure with attempts left requeues the job, due after the backoff."""
    held = leased(max_attempts=3)
    back = ok(fail(held, AGENT, 1, T0 + 10, error="disk full"))
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 1
    assert back.run_after == T0 + 10 + 1.0
    assert back.last_error == "disk full"
    assert back.lease is None
    (run,) = back.runs
    assert (run.outcome, run.ended_at, run.error) == (RunOutcome.FAILED, T0 + 10, "disk full")


def test_backoff_grows_with_each_failed_attempt() -> None:
    """The second failure waits longer than the first, per the policy."""
    policy = BackoffPolicy(base_seconds=10, factor=3, max_seconds=1000)
    job = leased(max_attempts=3)
    job = ok(fail(job, AGENT, 1, T0, error="e", backoff=policy))
    assert job.run_after == T0 + 10
    job = leased(job, now=T0 + 10)
    job = ok(fail(job, AGENT, 2, T0 + 10, error="e", backoff=policy))
    assert job.run_after == T0 + 10 + 30


def test_fail_uses_the_injected_random_source_for_jitter() -> None:
    """Jitter comes from the random source passed in, so the result is reproducible."""
    policy = BackoffPolicy(base_seconds=8, jitter=0.5)
    back = ok(fail(leased(), AGENT, 1, T0, error="e", backoff=policy, rng=lambda: 0.5))
    assert back.run_after == T0 + 6


def test_fail_on_the_last_attempt_fails_the_job() -> None:
    """With no attempts left a failure is final."""
    job = leased(max_attempts=2)
    job = leased(ok(fail(job, AGENT, 1, T0, error="one")), now=T0 + 5)
    final = ok(fail(job, AGENT, 2, T0 + 6, error="two"))
    assert final.status is JobStatus.FAILED
    assert final.attempts == 2 == final.max_attempts
    assert final.last_error == "two"
    assert [r.outcome for r in final.runs] == [RunOutcome.FAILED, RunOutcome.FAILED]


def test_a_non_retryable_failure_fails_at_once() -> None:
    """``retryable=False`` fails the job even with attempts left."""
    final = ok(fail(leased(max_attempts=5), AGENT, 1, T0, error="bad input", retryable=False))
    assert final.status is JobStatus.FAILED
    assert final.attempts == 1


def test_fail_of_a_cancel_requested_job_cancels_it() -> None:
    """A failure ends a cancel-requested lease as cancelled, not requeued (SPEC 6)."""
    asked = ok(cancel(leased(), T0 + 1))
    gone = ok(fail(asked, AGENT, 1, T0 + 2, error="stopped"))
    assert gone.status is JobStatus.CANCELLED
    assert gone.runs[-1].outcome is RunOutcome.FAILED
    assert gone.last_error == "stopped"


def test_release_requeues_at_once_without_counting_the_attempt() -> None:
    """Release gives the attempt back and leaves the job due immediately."""
    held = leased(max_attempts=1, run_after=T0 - 5, now=T0)
    back = ok(release(held, AGENT, 1, T0 + 4))
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 0
    assert back.run_after == T0 - 5
    assert back.lease is None
    assert back.epoch == 1
    (run,) = back.runs
    assert (run.outcome, run.ended_at) == (RunOutcome.RELEASED, T0 + 4)


def test_release_of_a_cancel_requested_job_cancels_it() -> None:
    """Releasing after a cancel request acknowledges it: the job and the run are cancelled."""
    asked = ok(cancel(leased(), T0 + 1))
    gone = ok(release(asked, AGENT, 1, T0 + 2))
    assert gone.status is JobStatus.CANCELLED
    assert gone.runs[-1].outcome is RunOutcome.CANCELLED
    assert gone.attempts == 0


def test_agent_calls_never_mutate_their_input(call: AgentCall) -> None:
    """Accepted or refused, the job passed in is unchanged."""
    held = leased()
    snapshot = replace(held)
    call(held, AGENT, 1, T0 + 1)
    call(held, OTHER, 1, T0 + 1)
    assert held == snapshot


def test_heartbeat_keeps_progress_on_the_current_run() -> None:
    """A heartbeat's progress is kept on the running run; one without progress keeps the last."""
    job = leased(new_job())
    beat = ok(heartbeat(job, AGENT, job.epoch, T0 + 1, progress={"done": 3}))
    assert beat.runs[-1].progress == {"done": 3}
    again = ok(heartbeat(beat, AGENT, job.epoch, T0 + 2))
    assert again.runs[-1].progress == {"done": 3}
