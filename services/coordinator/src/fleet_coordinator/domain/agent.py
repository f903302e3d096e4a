"""The agent as a plain immutable value, with its lease ledger: how capacity holds across replicas.

An agent's ledger (``held``) maps each job it holds, or is about to hold, to a
``Holding``: the lease epoch and when it was reserved. A claim *reserves* jobs in
the ledger with one conditional write of the agent document before it leases
them, so concurrent claims of one agent on any replicas never exceed its
capacity. Entries leave the ledger when their lease ends; a replica that saw a
lease end discounts it at once (``ended``: job id → epoch) and writes the removal
with the agent's next reservation, or in a flush soon after (``Ledger.forget``).
Entries are matched by epoch, so a job the same agent claimed again is kept.

Everything here is pure: the service joins it to the store (``services/ledger.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._replace import replace
from .clock import Timestamp
from .job import JobState
from .statuses import JobStatus

__all__ = ["RESERVATION_GRACE", "AgentState", "Holding", "is_stale"]

RESERVATION_GRACE = 30.0
"""Seconds a reservation whose job is still queued counts as a claim in flight."""


@dataclass(frozen=True, slots=True)
class Holding:
    """One ledger entry: the lease epoch the agent holds (or is leasing) and when it reserved it."""

    epoch: int
    at: Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentState:
    """Everything the coordinator knows about one agent; replaced, never mutated."""

    id: str
    name: str
    labels: Mapping[str, str]
    capacity: int
    queues: tuple[str, ...]
    """Queues the agent may claim from; empty means every queue."""
    draining: bool
    token_hash: str
    created_at: Timestamp
    last_seen: Timestamp | None
    held: Mapping[str, Holding]

    def holding(self, ended: Mapping[str, int]) -> dict[str, Holding]:
        """The ledger without the entries whose lease ended at exactly that epoch."""
        if not ended:
            return dict(self.held)
        return {k: h for k, h in self.held.items() if ended.get(k) != h.epoch}

    def free_slots(self, ended: Mapping[str, int]) -> int:
        """How many more leases the agent may hold, ``ended`` leases discounted."""
        return self.capacity - len(self.holding(ended))

    def claim_queues(self, asked: Sequence[str] | None) -> tuple[str, ...] | None:
        """The queues a claim asking for ``asked`` may take from: None for all, () for none."""
        if not self.queues:
            return tuple(asked) if asked else None
        if not asked:
            return self.queues
        return tuple(q for q in asked if q in self.queues)

    def reserve(
        self, picks: Sequence[tuple[str, int]], now: Timestamp, ended: Mapping[str, int]
    ) -> tuple[AgentState, list[str]]:
        """Reserve as many of ``picks`` (job id, epoch to lease) as there are free slots.

        Returns the new state (``ended`` leases dropped) and the job ids granted,
        none when the agent is draining or full. A job already in the ledger is not
        granted: the claims of one agent on two replicas can pick the same job (each
        skips what its own copy of the ledger holds), and a second reservation would
        share the first one's entry, so whichever claim lost the lease would give
        back the entry that stands for the winner's.
        """
        held = self.holding(ended)
        free = self.capacity - len(held)
        if self.draining or free <= 0:
            return self, []
        granted: list[str] = []
        for job_id, epoch in picks:
            if len(granted) == free:
                break
            if job_id not in held:
                held[job_id] = Holding(epoch, now)
                granted.append(job_id)
        return replace(self, held=held, last_seen=now), granted

    def without(self, entries: Mapping[str, int]) -> AgentState:
        """The state without the ledger entries of these jobs at exactly these epochs.

        Never by job id alone: a write re-applied to a ledger re-read after a conflict
        must not drop an entry another claim of the agent made for the same job since
        (the job released, then claimed again at the next epoch).
        """
        return replace(self, held=self.holding(entries))


def is_stale(agent_id: str, holding: Holding, job: JobState | None, now: Timestamp) -> bool:
    """Whether a ledger entry no longer stands for a lease (ended, expired, or never taken)."""
    if job is None:
        return True
    lease = job.lease
    if lease is not None and lease.is_held_by(agent_id, holding.epoch):
        return not lease.is_live(now)
    # A claim in flight on another replica reserved this job and has not leased it
    # yet; a crashed one is forgotten after the grace period.
    in_flight = (
        job.status is JobStatus.QUEUED
        and job.epoch + 1 == holding.epoch
        and now - holding.at < RESERVATION_GRACE
    )
    return not in_flight
