"""Which agent may claim which job: label matching and the claimability predicate.

``claim`` itself calls ``claim_rejection``, so the check the service uses to
pick candidates and the check that guards the write can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping

from .clock import Timestamp
from .job import JobState
from .rejections import Rejected, Rejection
from .statuses import JobStatus

__all__ = ["claim_rejection", "is_claimable", "labels_satisfy"]


def labels_satisfy(requires: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` has every key of ``requires`` with an equal value."""
    return all(labels.get(key) == value for key, value in requires.items())


def claim_rejection(
    job: JobState, now: Timestamp, labels: Mapping[str, str] | None
) -> Rejected | None:
    """Why ``job`` cannot be claimed at ``now`` by an agent with ``labels``, or None if it can.

    ``labels=None`` skips label matching, for callers that matched already.
    """
    if job.status is not JobStatus.QUEUED:
        return Rejected(Rejection.NOT_CLAIMABLE, f"job is {job.status.value}, not queued")
    # A queued job never has cancel_requested (cancel of a queued job finishes it),
    # but the check keeps claim safe against a document written by other code.
    if job.cancel_requested:
        return Rejected(Rejection.NOT_CLAIMABLE, "job has a pending cancel request")
    if job.run_after > now:
        return Rejected(Rejection.NOT_CLAIMABLE, "job is not due yet (run_after is later)")
    if job.attempts >= job.max_attempts:
        return Rejected(Rejection.NOT_CLAIMABLE, "job has no attempts left")
    if labels is not None and not labels_satisfy(job.requires, labels):
        return Rejected(Rejection.REQUIREMENTS_UNMET, "agent labels do not satisfy requires")
    return None


def is_claimable(job: JobState, now: Timestamp, labels: Mapping[str, str] | None = None) -> bool:
    """Whether ``job`` can be claimed at ``now`` (by an agent with ``labels``, if given)."""
    return claim_rejection(job, now, labels) is None
