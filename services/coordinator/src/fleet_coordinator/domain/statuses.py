"""Job statuses, run outcomes and the table of allowed status changes.

The strings are part of the HTTP contract (SPEC.md) and are stored verbatim in
job documents, so the enum values must never be renamed::

    queued ──claim──▶ leased ──complete──▶ succeeded
      │  ▲              │ │ │
      │  └─release/fail/expiry (attempts left)
      │                 │ └──fail/expiry/timeout (no attempts left)──▶ failed
      │                 └────lease ends while cancel requested───────▶ cancelled
      └──────────────cancel─────────────────────────────────────────▶ cancelled
    failed / cancelled ──retry──▶ queued

The paths every job takes read a member's string as ``._value_`` (the enum's own
attribute holding it, a plain read) rather than ``.value``, which in Python 3.11 is
a property: two Python-level calls on every job write, answer and log line.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATUSES",
    "JobStatus",
    "RunOutcome",
    "can_transition",
    "is_terminal",
]


class JobStatus(StrEnum):
    """Where a job is in its life; the last three values are terminal."""

    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunOutcome(StrEnum):
    """How one run (one claim of a job) ended, or ``running`` while it lasts."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RELEASED = "released"
    LEASE_EXPIRED = "lease_expired"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""Statuses that never change again except through ``retry``."""

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # claim; cancel of a job nobody holds.
    JobStatus.QUEUED: frozenset({JobStatus.LEASED, JobStatus.CANCELLED}),
    # complete; fail/release/expiry/timeout requeue or finish; a cancel-requested
    # lease that ends becomes cancelled.
    JobStatus.LEASED: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    # SPEC: retry is allowed only from failed or cancelled; succeeded is final.
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}
"""Status changes the transition functions may make (same-status updates aside)."""


def is_terminal(status: JobStatus) -> bool:
    """Whether ``status`` is terminal (succeeded, failed or cancelled)."""
    return status in TERMINAL_STATUSES


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Whether a job may move from ``current`` to a different status ``new``."""
    return new in ALLOWED_TRANSITIONS[current]
