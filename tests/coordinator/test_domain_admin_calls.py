"""Cancel and retry: cancel never clobbers a terminal job; retry gives a fresh budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fleet_coordinator.domain import (
    JobState,
    JobStatus,
    Rejection,
    cancel,
    claim,
    complete,
    fail,
    heartbeat,
    release,
    retry,
)

from tests.coordinator.domain_support import AGENT, T0, leased, new_job, ok, refused


def succeeded_job() -> JobState:
    """A job that was claimed and completed."""
    return ok(complete(leased(), AGENT, 1, T0 + 1, result="done"))


def failed_job() -> JobState:
    """A job whose only attempt failed."""
    return ok(fail(leased(max_attempts=1), AGENT, 1, T0 + 1, error="boom"))


def cancelled_job() -> JobState:
    """A job cancelled while queued."""
    return ok(cancel(new_job(), T0 + 1))


TERMINAL_BUILDERS = {
    "succeeded": succeeded_job,
    "failed": failed_job,
    "cancelled": cancelled_job,
}


def test_cancel_of_a_queued_job_cancels_it_at_once() -> None:
    """A queued job nobody holds becomes cancelled immediately."""
    gone = ok(cancel(new_job(), T0 + 2))
    assert gone.status is JobStatus.CANCELLED
    assert gone.updated_at == T0 + 2
    assert gone.cancel_requested is False
    assert gone.runs == ()


def test_cancel_of_a_leased_job_only_requests_it() -> None:
    """A leased job keeps its lease and gets ``cancel_requested``."""
    held = leased()
    asked = ok(cancel(held, T0 + 2))
    assert asked.status is JobStatus.LEASED
    assert asked.cancel_requested is True
    assert asked.lease == held.lease
    assert asked.runs == held.runs
    assert asked.updated_at == T0 + 2


def test_a_second_cancel_request_returns_the_same_job() -> None:
    """Asking again changes nothing, so the caller can skip the write."""
    asked = ok(cancel(leased(), T0 + 1))
    assert cancel(asked, T0 + 2) is asked


@pytest.mark.parametrize("name", sorted(TERMINAL_BUILDERS))
def test_cancel_never_clobbers_a_terminal_job(name: str) -> None:
    """Cancel of a succeeded, failed or cancelled job is refused (409)."""
    job = TERMINAL_BUILDERS[name]()
    result = cancel(job, T0 + 5)
    refused(result, Rejection.ALREADY_TERMINAL)


@pytest.mark.parametrize("name", ["failed", "cancelled"])
def test_retry_requeues_with_a_fresh_attempt_budget(name: str) -> None:
    """Retry of a failed or cancelled job queues it now with zero attempts used."""
    job = TERMINAL_BUILDERS[name]()
    again = ok(retry(job, T0 + 100))
    assert again.status is JobStatus.QUEUED
    assert again.attempts == 0
    assert again.attempts_left == again.max_attempts
    assert again.run_after == T0 + 100
    assert again.updated_at == T0 + 100
    assert again.cancel_requested is False
    assert again.result is None
    assert again.lease is None
    assert again.epoch == job.epoch
    assert again.runs == job.runs


def test_retry_clears_a_cancel_request() -> None:
    """A job cancelled through a cancel request can be claimed again after retry."""
    gone = ok(release(ok(cancel(leased(), T0 + 1)), AGENT, 1, T0 + 2))
    assert gone.cancel_requested is True
    again = ok(retry(gone, T0 + 3))
    assert again.cancel_requested is False
    assert ok(claim(again, AGENT, "r2", T0 + 3, labels={})).epoch == 2


def test_retry_keeps_fencing_old_runs() -> None:
    """The epoch carries on across retry, so a call from before the retry stays lease_lost."""
    again = ok(retry(failed_job(), T0 + 2))
    held = ok(claim(again, AGENT, "r2", T0 + 3, labels={}))
    assert held.epoch == 2
    assert held.attempts == 1
    refused(heartbeat(held, AGENT, 1, T0 + 4), Rejection.LEASE_LOST)
    ok(heartbeat(held, AGENT, 2, T0 + 4))


def test_retry_keeps_the_last_error_for_diagnosis() -> None:
    """The last error stays visible until a new attempt ends."""
    assert ok(retry(failed_job(), T0 + 2)).last_error == "boom"


@pytest.mark.parametrize(
    "job_factory",
    [new_job, leased, succeeded_job],
    ids=["queued", "leased", "succeeded"],
)
def test_retry_is_refused_unless_failed_or_cancelled(job_factory: Callable[[], JobState]) -> None:
    """Queued, leased and succeeded jobs cannot be retried (409)."""
    refused(retry(job_factory(), T0 + 5), Rejection.INVALID_TRANSITION)
