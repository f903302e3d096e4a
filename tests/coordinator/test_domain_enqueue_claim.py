"""Enqueue builds a queued job; claim leases it with the next fencing epoch."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_coordinator.domain import (
    MAX_RUNS,
    JobState,
    JobStatus,
    Rejection,
    RunOutcome,
    cancel,
    claim,
    complete,
    enqueue,
    release,
)

from tests.coordinator.domain_support import AGENT, OTHER, T0, leased, new_job, ok, refused


def test_enqueue_builds_a_queued_job_with_spec_defaults() -> None:
    """A new job is queued, due now, with three attempts, no lease and no runs."""
    job = enqueue(job_id="j", kind="build", payload={"a": 1}, now=T0)
    assert job.status is JobStatus.QUEUED
    assert job.queue == "default"
    assert job.priority == 0
    assert job.max_attempts == 3
    assert job.attempts == 0
    assert job.run_after == T0
    assert job.created_at == job.updated_at == T0
    assert job.requires == {}
    assert job.lease is None
    assert job.epoch == 0
    assert job.runs == ()
    assert job.runs_dropped == 0
    assert job.cancel_requested is False
    assert job.result is None
    assert job.last_error is None


def test_enqueue_keeps_every_given_field() -> None:
    """Queue, priority, limits, run_after, requires and idempotency key are kept as given."""
    job = new_job(
        queue="gpu",
        priority=7,
        max_attempts=5,
        lease_seconds=30,
        timeout_seconds=600,
        run_after=T0 + 60,
        requires={"gpu": "a100"},
        idempotency_key="key-1",
    )
    assert (job.queue, job.priority, job.max_attempts) == ("gpu", 7, 5)
    assert (job.lease_seconds, job.timeout_seconds) == (30, 600)
    assert job.run_after == T0 + 60
    assert job.requires == {"gpu": "a100"}
    assert job.idempotency_key == "key-1"


def test_enqueue_copies_the_callers_mappings() -> None:
    """Mutating the dicts passed in afterwards does not change the job."""
    payload: dict[str, Any] = {"a": 1}
    requires = {"gpu": "a100"}
    job = new_job(payload=payload, requires=requires)
    payload["a"] = 2
    requires["gpu"] = "t4"
    assert job.payload == {"a": 1}
    assert job.requires == {"gpu": "a100"}


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"lease_seconds": 0},
        {"lease_seconds": -1},
        {"timeout_seconds": 0},
    ],
)
def test_enqueue_refuses_impossible_settings(bad: dict[str, Any]) -> None:
    """Settings no job could honour raise ValueError (the API validates before this)."""
    with pytest.raises(ValueError, match="must be"):
        new_job(**bad)


def test_first_claim_gets_epoch_one_and_counts_an_attempt() -> None:
    """Claiming leases the job to the agent at epoch 1, attempt 1, with a running run."""
    job = new_job(lease_seconds=30)
    held = ok(claim(job, AGENT, "run-x", T0 + 5, labels={}))
    assert held.status is JobStatus.LEASED
    assert held.epoch == 1
    assert held.attempts == 1
    assert held.updated_at == T0 + 5
    assert held.lease is not None
    assert held.lease.agent_id == AGENT
    assert held.lease.run_id == "run-x"
    assert held.lease.epoch == 1
    assert held.lease.claimed_at == T0 + 5
    assert held.lease.expires_at == T0 + 35
    assert held.lease.deadline is None
    assert len(held.runs) == 1
    run = held.runs[0]
    assert (run.run_id, run.epoch, run.agent_id) == ("run-x", 1, AGENT)
    assert (run.claimed_at, run.ended_at, run.outcome, run.error) == (
        T0 + 5,
        None,
        RunOutcome.RUNNING,
        None,
    )
    assert held.current_run == run


def test_claim_does_not_mutate_its_input() -> None:
    """The job passed to claim is left exactly as it was."""
    job = new_job()
    snapshot = JobState(**{f: getattr(job, f) for f in job.__dataclass_fields__})
    ok(claim(job, AGENT, "r", T0, labels={}))
    assert job == snapshot


def test_claim_sets_the_attempt_deadline_from_timeout_seconds() -> None:
    """With ``timeout_seconds`` the lease carries a deadline of claim time plus the timeout."""
    held = leased(timeout_seconds=120, now=T0)
    assert held.lease is not None
    assert held.lease.deadline == T0 + 120


def test_claim_lease_seconds_overrides_the_jobs_own() -> None:
    """An explicit ``lease_seconds`` sets the expiry instead of the job's default."""
    held = ok(claim(new_job(lease_seconds=60), AGENT, "r", T0, labels={}, lease_seconds=5))
    assert held.lease is not None
    assert held.lease.expires_at == T0 + 5


def test_each_claim_increments_the_epoch_by_exactly_one() -> None:
    """Claim, release, claim again: epochs 1 then 2, across different agents."""
    first = leased(agent=AGENT)
    back = ok(release(first, AGENT, 1, T0 + 1))
    second = ok(claim(back, OTHER, "r2", T0 + 2, labels={}))
    assert second.epoch == 2
    assert second.lease is not None
    assert second.lease.agent_id == OTHER
    assert [r.epoch for r in second.runs] == [1, 2]


def test_claim_of_a_leased_job_is_refused() -> None:
    """A second claimer of a leased job loses: there is one live lease at a time."""
    held = leased()
    refused(claim(held, OTHER, "r2", T0, labels={}), Rejection.NOT_CLAIMABLE)


def test_claim_before_run_after_is_refused() -> None:
    """A job is not claimable before its ``run_after``."""
    job = new_job(run_after=T0 + 10)
    refused(claim(job, AGENT, "r", T0 + 9, labels={}), Rejection.NOT_CLAIMABLE)
    assert ok(claim(job, AGENT, "r", T0 + 10, labels={})).epoch == 1


def test_claim_of_terminal_jobs_is_refused() -> None:
    """Succeeded and cancelled jobs cannot be claimed."""
    done = ok(complete(leased(), AGENT, 1, T0 + 1))
    gone = ok(cancel(new_job(), T0))
    for job in (done, gone):
        refused(claim(job, AGENT, "r", T0 + 2, labels={}), Rejection.NOT_CLAIMABLE)


def test_claim_with_unmatched_labels_is_refused() -> None:
    """An agent whose labels miss a requirement cannot claim."""
    job = new_job(requires={"gpu": "a100"})
    refused(claim(job, AGENT, "r", T0, labels={"gpu": "t4"}), Rejection.REQUIREMENTS_UNMET)
    assert ok(claim(job, AGENT, "r", T0, labels={"gpu": "a100"})).epoch == 1


def test_run_history_keeps_the_newest_runs_and_counts_dropped_ones() -> None:
    """After more than MAX_RUNS claims only the newest MAX_RUNS runs are kept."""
    job = new_job(max_attempts=1)
    total = MAX_RUNS + 5
    for n in range(1, total + 1):
        job = ok(claim(job, AGENT, f"r{n}", T0 + n, labels={}))
        job = ok(release(job, AGENT, n, T0 + n))
    assert len(job.runs) == MAX_RUNS
    assert job.runs_dropped == 5
    assert job.epoch == total == len(job.runs) + job.runs_dropped
    assert [r.epoch for r in job.runs] == list(range(6, total + 1))
    assert all(r.outcome is RunOutcome.RELEASED for r in job.runs)
