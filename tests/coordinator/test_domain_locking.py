"""The pure judgement of a lock's holder: held, free, or a holder to fence first."""

from __future__ import annotations

import pytest
from fleet_coordinator.domain import (
    Holder,
    HolderState,
    JobState,
    claim,
    complete,
    enqueue,
    judge_holder,
)

NOW = 1_000.0


def _job() -> JobState:
    return enqueue(job_id="j", kind="k", payload={}, now=NOW, lock="L", lease_seconds=10)


def _leased() -> JobState:
    job = claim(_job(), "a", "r1", NOW, labels={})
    assert isinstance(job, JobState)
    return job


def test_a_live_lease_at_the_holders_epoch_holds_the_lock() -> None:
    """Leased at exactly that epoch and live: held."""
    assert judge_holder(Holder("j", 1, NOW), _leased(), NOW + 5, grace=30) is HolderState.HELD


def test_an_expired_lease_holds_nothing_even_before_the_reaper_once_fenced() -> None:
    """Past expires_at by the coordinator's clock: free once the holder job is fenced (a
    heartbeat decided while the lease was live may still be on its way to the store)."""
    assert judge_holder(Holder("j", 1, NOW), _leased(), NOW + 10, grace=30) is HolderState.FENCE


def test_an_ended_or_deleted_holder_holds_nothing() -> None:
    """Completed, or gone (retention): free."""
    done = complete(_leased(), "a", 1, NOW + 1)
    assert isinstance(done, JobState)
    assert judge_holder(Holder("j", 1, NOW), done, NOW + 2, grace=30) is HolderState.FREE
    assert judge_holder(Holder("j", 1, NOW), None, NOW + 2, grace=30) is HolderState.FREE


@pytest.mark.parametrize(("age", "state"), [(29.9, HolderState.HELD), (30.0, HolderState.FENCE)])
def test_a_claim_in_flight_holds_the_lock_for_the_grace_then_must_be_fenced(
    age: float, state: HolderState
) -> None:
    """Queued one epoch before the holder's: its lease write may still land."""
    assert judge_holder(Holder("j", 1, NOW), _job(), NOW + age, grace=30) is state
