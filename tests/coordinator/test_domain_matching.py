"""Label matching and the claimability predicate."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fleet_coordinator.domain import (
    JobStatus,
    Rejection,
    cancel,
    claim_rejection,
    is_claimable,
    labels_satisfy,
)

from tests.coordinator.domain_support import T0, leased, new_job, ok


@pytest.mark.parametrize(
    ("requires", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"gpu": "a100"}, True),
        ({"gpu": "a100"}, {"gpu": "a100"}, True),
        ({"gpu": "a100"}, {"gpu": "a100", "zone": "eu"}, True),
        ({"gpu": "a100", "zone": "eu"}, {"gpu": "a100", "zone": "eu"}, True),
        ({"gpu": "a100"}, {}, False),
        ({"gpu": "a100"}, {"gpu": "h100"}, False),
        ({"gpu": "a100"}, {"GPU": "a100"}, False),
        ({"gpu": "a100", "zone": "eu"}, {"gpu": "a100"}, False),
        ({"zone": ""}, {}, False),
    ],
)
def test_labels_must_contain_every_required_key_with_an_equal_value(
    requires: dict[str, str], labels: dict[str, str], expected: bool
) -> None:
    """Every required key must be present with the same value; extra labels do not matter."""
    assert labels_satisfy(requires, labels) is expected


def test_a_queued_due_job_is_claimable() -> None:
    """A fresh job is claimable at its enqueue time by any agent when it requires nothing."""
    job = new_job()
    assert claim_rejection(job, T0, {}) is None
    assert is_claimable(job, T0)
    assert is_claimable(job, T0, {"any": "label"})


def test_a_job_is_not_claimable_before_run_after() -> None:
    """``run_after`` is the first moment a job may be claimed, inclusive."""
    job = new_job(run_after=T0 + 10)
    early = claim_rejection(job, T0 + 9.999, {})
    assert early is not None
    assert early.reason is Rejection.NOT_CLAIMABLE
    assert is_claimable(job, T0 + 10)


def test_leased_and_terminal_jobs_are_not_claimable() -> None:
    """Only queued jobs can be claimed."""
    held = leased()
    cancelled = ok(cancel(new_job(), T0))
    for job in (held, cancelled):
        rejection = claim_rejection(job, T0 + 1, {})
        assert rejection is not None
        assert rejection.reason is Rejection.NOT_CLAIMABLE


def test_a_job_without_attempts_left_is_not_claimable() -> None:
    """A queued job whose attempts are used up is refused (defensive; transitions avoid it)."""
    job = replace(new_job(max_attempts=2), attempts=2)
    rejection = claim_rejection(job, T0, {})
    assert rejection is not None
    assert rejection.reason is Rejection.NOT_CLAIMABLE


def test_a_queued_job_with_a_cancel_request_is_not_claimable() -> None:
    """A cancel request always blocks a claim (defensive; cancel of a queued job finishes it)."""
    job = replace(new_job(), cancel_requested=True)
    assert job.status is JobStatus.QUEUED
    assert not is_claimable(job, T0)


def test_unmatched_labels_give_requirements_unmet() -> None:
    """An agent without the required labels is refused with its own reason."""
    job = new_job(requires={"gpu": "a100"})
    rejection = claim_rejection(job, T0, {"gpu": "t4"})
    assert rejection is not None
    assert rejection.reason is Rejection.REQUIREMENTS_UNMET
    assert not is_claimable(job, T0, {"gpu": "t4"})


def test_labels_none_skips_matching() -> None:
    """Passing no labels means the caller matched already, so only the job's state counts."""
    job = new_job(requires={"gpu": "a100"})
    assert is_claimable(job, T0, None)
