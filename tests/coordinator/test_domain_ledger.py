"""``AgentState``'s ledger decisions: a job takes one entry, entries leave at their epoch only."""

from __future__ import annotations

from fleet_coordinator.domain import AgentState, Holding

AGENT = AgentState(
    id="a1",
    name="n",
    labels={},
    capacity=3,
    queues=(),
    draining=False,
    token_hash="h",
    created_at=0.0,
    last_seen=None,
    held={"j1": Holding(1, 1.0)},
)


def test_a_job_already_in_the_ledger_is_not_reserved_again_and_the_next_pick_is() -> None:
    """Two claims of one agent (two replicas) picked ``j1``: the second must not share the
    first one's entry (it would count one slot for two claims); it gets the next picks."""
    state, granted = AGENT.reserve([("j1", 1), ("j2", 1), ("j3", 1)], 5.0, {})
    assert granted == ["j2", "j3"]
    assert state.held == {"j1": Holding(1, 1.0), "j2": Holding(1, 5.0), "j3": Holding(1, 5.0)}


def test_a_job_whose_lease_ended_here_may_be_reserved_at_its_next_epoch() -> None:
    """The entry of a lease known to have ended is not in the ledger any more."""
    state, granted = AGENT.reserve([("j1", 2)], 5.0, {"j1": 1})
    assert granted == ["j1"]
    assert state.held == {"j1": Holding(2, 5.0)}


def test_reservations_stop_at_the_free_slots() -> None:
    state, granted = AGENT.reserve([("j2", 1), ("j3", 1), ("j4", 1)], 5.0, {})
    assert granted == ["j2", "j3"]
    assert len(state.held) == AGENT.capacity


def test_entries_leave_only_at_the_epoch_named() -> None:
    """A give-back or prune re-applied to a re-read ledger leaves a newer entry of the job."""
    assert AGENT.without({"j1": 1}).held == {}
    assert AGENT.without({"j1": 2}).held == AGENT.held
    assert AGENT.without({"j9": 1}).held == AGENT.held
