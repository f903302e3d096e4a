"""The job as a plain immutable value: its fields, its lease and its bounded run history.

The lease and the run history live inside the job value (and so inside the job
document) so that claiming, renewing or ending a lease is one conditional write
of one document. The history keeps the newest ``MAX_RUNS`` runs and counts the
ones it dropped, which bounds the document size however often a job is retried.

Invariants every transition keeps (checked by the stateful tests):

* ``lease is not None`` exactly when ``status`` is ``leased``, and then
  ``lease.epoch == epoch`` and the last run is the only ``running`` one;
* ``epoch`` counts claims ever made: ``epoch == len(runs) + runs_dropped``;
* ``0 <= attempts <= max_attempts``, and a queued job has an attempt left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Timestamp
from .statuses import TERMINAL_STATUSES, JobStatus, RunOutcome

__all__ = ["MAX_RUNS", "JobState", "Lease", "Run"]

MAX_RUNS = 20
"""How many runs a job keeps in its history; older ones are dropped and counted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A claim on a job by one agent, fenced by ``epoch`` and judged by the coordinator's clock."""

    agent_id: str
    run_id: str
    epoch: int
    expires_at: Timestamp
    """When the lease is lost unless renewed; never after ``deadline`` (``leasing._expiry``)."""
    claimed_at: Timestamp
    deadline: Timestamp | None = None
    """When the attempt times out (``claimed_at + timeout_seconds``); heartbeats never move it."""

    def is_live(self, now: Timestamp) -> bool:
        """Whether the lease still holds at ``now``: not expired and not past its deadline."""
        return now < self.expires_at and (self.deadline is None or now < self.deadline)

    def is_held_by(self, agent_id: str, epoch: int) -> bool:
        """Whether ``agent_id`` with exactly ``epoch`` is this lease's holder."""
        return self.agent_id == agent_id and self.epoch == epoch


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One claim of a job, from ``claimed_at`` until it ended with ``outcome``."""

    run_id: str
    epoch: int
    agent_id: str
    claimed_at: Timestamp
    ended_at: Timestamp | None = None
    outcome: RunOutcome = RunOutcome.RUNNING
    error: str | None = None
    progress: Any = None
    """The last progress its agent reported with a heartbeat, as sent (None if none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobState:
    """Everything the coordinator knows about one job; replaced, never mutated."""

    id: str
    queue: str
    kind: str
    payload: Mapping[str, Any]
    traceparent: str | None = None
    """The W3C trace context of the enqueue, handed to the agent with the lease."""
    priority: int = 0
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    """Claims that counted against the budget: incremented at claim, given back on release."""
    max_attempts: int = 3
    lease_seconds: float = 60.0
    timeout_seconds: float | None = None
    run_after: Timestamp = 0.0
    requires: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    lock: str | None = None
    """Jobs sharing a lock never hold live leases at the same time (SPEC semantics 9)."""
    schedule: str | None = None
    """The name of the schedule that enqueued the job, if one did."""
    cancel_requested: bool = False
    result: Any = None
    last_error: str | None = None
    created_at: Timestamp = 0.0
    updated_at: Timestamp = 0.0
    lease: Lease | None = None
    epoch: int = 0
    """The last fencing epoch handed out; the next claim gets ``epoch + 1``."""
    runs: tuple[Run, ...] = ()
    runs_dropped: int = 0

    @property
    def is_terminal(self) -> bool:
        """Whether the job is succeeded, failed or cancelled."""
        return self.status in TERMINAL_STATUSES

    @property
    def attempts_left(self) -> int:
        """How many more attempts the job may still make."""
        return max(self.max_attempts - self.attempts, 0)

    @property
    def current_run(self) -> Run | None:
        """The run that is still ``running``, if the job is leased."""
        if self.runs and self.runs[-1].outcome is RunOutcome.RUNNING:
            return self.runs[-1]
        return None
