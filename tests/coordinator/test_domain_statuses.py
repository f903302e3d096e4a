"""The status vocabulary, terminal set and transition table match SPEC.md."""

from __future__ import annotations

import pytest
from fleet_coordinator.domain import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    JobStatus,
    RunOutcome,
    can_transition,
    is_terminal,
)


def test_job_status_strings_are_the_spec_strings() -> None:
    """Job statuses serialise to exactly the five strings of the HTTP contract."""
    assert [s.value for s in JobStatus] == [
        "queued",
        "leased",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert JobStatus("leased") is JobStatus.LEASED
    assert str(JobStatus.QUEUED) == "queued"


def test_run_outcome_strings_are_the_spec_strings() -> None:
    """Run outcomes serialise to exactly the seven strings of the HTTP contract."""
    assert {o.value for o in RunOutcome} == {
        "running",
        "succeeded",
        "failed",
        "released",
        "lease_expired",
        "timed_out",
        "cancelled",
    }


def test_terminal_set_is_succeeded_failed_cancelled() -> None:
    """The last three statuses are terminal, the first two are not."""
    assert frozenset({"succeeded", "failed", "cancelled"}) == TERMINAL_STATUSES
    assert not is_terminal(JobStatus.QUEUED)
    assert not is_terminal(JobStatus.LEASED)
    assert all(is_terminal(s) for s in TERMINAL_STATUSES)


def test_transition_table_is_exactly_the_documented_one() -> None:
    """The table allows claim/cancel from queued, every ending from leased and retry from two."""
    expected = {
        JobStatus.QUEUED: {JobStatus.LEASED, JobStatus.CANCELLED},
        JobStatus.LEASED: {
            JobStatus.SUCCEEDED,
            JobStatus.QUEUED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        },
        JobStatus.SUCCEEDED: set(),
        JobStatus.FAILED: {JobStatus.QUEUED},
        JobStatus.CANCELLED: {JobStatus.QUEUED},
    }
    assert expected == ALLOWED_TRANSITIONS


def test_terminal_statuses_only_leave_through_retry_to_queued() -> None:
    """A terminal status can change only to queued (retry), and succeeded never changes."""
    for status in TERMINAL_STATUSES:
        assert ALLOWED_TRANSITIONS[status] <= {JobStatus.QUEUED}
    assert ALLOWED_TRANSITIONS[JobStatus.SUCCEEDED] == frozenset()


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (JobStatus.QUEUED, JobStatus.LEASED, True),
        (JobStatus.QUEUED, JobStatus.SUCCEEDED, False),
        (JobStatus.QUEUED, JobStatus.FAILED, False),
        (JobStatus.LEASED, JobStatus.SUCCEEDED, True),
        (JobStatus.SUCCEEDED, JobStatus.QUEUED, False),
        (JobStatus.FAILED, JobStatus.QUEUED, True),
        (JobStatus.FAILED, JobStatus.LEASED, False),
        (JobStatus.CANCELLED, JobStatus.QUEUED, True),
        (JobStatus.CANCELLED, JobStatus.SUCCEEDED, False),
    ],
)
def test_can_transition_reads_the_table(current: JobStatus, new: JobStatus, allowed: bool) -> None:
    """``can_transition`` answers from the table."""
    assert can_transition(current, new) is allowed
