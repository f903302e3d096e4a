"""Why the domain refused a transition, as data rather than exceptions.

Transition functions return either the new ``JobState`` or a ``Rejected``; a
rejection always means "nothing changed", so the service writes nothing and maps
the reason to an HTTP answer (all of them are 409 conflicts in SPEC.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Rejected", "Rejection"]


class Rejection(StrEnum):
    """The reason a transition was refused; the value doubles as the API error code."""

    LEASE_LOST = "lease_lost"
    """The caller is not the holder of a live lease with that exact epoch."""
    NOT_CLAIMABLE = "not_claimable"
    """The job is not queued, not yet due, out of attempts or cancel-requested."""
    REQUIREMENTS_UNMET = "requirements_unmet"
    """The agent's labels do not satisfy the job's ``requires``."""
    ALREADY_TERMINAL = "already_terminal"
    """The job is succeeded, failed or cancelled and cannot be changed this way."""
    INVALID_TRANSITION = "invalid_transition"
    """The job's status does not allow this operation (e.g. retry of a queued job)."""
    NOTHING_TO_REAP = "nothing_to_reap"
    """The reaper found no expired lease or overrun attempt on this job."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused transition: the reason code and a human-readable message."""

    reason: Rejection
    message: str
