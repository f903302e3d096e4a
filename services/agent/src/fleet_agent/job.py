"""``Job``: what a handler receives — the job, its lease and a cancellation signal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .models import JobInfo, Lease

__all__ = ["CancelReason", "Handler", "Job"]


class CancelReason(StrEnum):
    """Why the worker stopped a handler."""

    CANCEL_REQUESTED = "cancel_requested"
    """An admin cancelled the job; the worker releases it and the job ends ``cancelled``."""
    LEASE_LOST = "lease_lost"
    """The lease expired or was taken over; nothing is reported for this run."""
    SHUTDOWN = "shutdown"
    """The worker is stopping and the grace period ran out; the job is released."""
    UNAUTHORIZED = "unauthorized"
    """The agent's token was revoked; the coordinator already released its leases."""


class Job:
    """One claimed job as a handler sees it.

    ``cancelled`` is set (and the handler's task cancelled) when the job must stop;
    ``cancel_reason`` says why. ``progress`` is sent with the next heartbeat.
    """

    def __init__(self, info: JobInfo, lease: Lease) -> None:
        self.info = info
        self.lease = lease
        self.lease_seconds = max((lease.expires_at - _updated_at(info)).total_seconds(), 0.0)
        self.cancelled = asyncio.Event()
        self.cancel_reason: CancelReason | None = None
        self.progress: Any = None

    @property
    def id(self) -> str:
        """The job id."""
        return self.info.id

    @property
    def kind(self) -> str:
        """The job kind, which chose the handler."""
        return self.info.kind

    @property
    def payload(self) -> dict[str, Any]:
        """The job's payload object."""
        return self.info.payload

    @property
    def epoch(self) -> int:
        """The fencing epoch of this run's lease."""
        return self.lease.epoch

    @property
    def attempt(self) -> int:
        """Which attempt this run is (1 for the first)."""
        return self.info.attempts

    def __repr__(self) -> str:  # never the payload
        return f"Job(id={self.id!r}, kind={self.kind!r}, epoch={self.epoch})"


def _updated_at(info: JobInfo) -> datetime:
    # A claim sets updated_at to the coordinator's now and expires_at to now + lease
    # seconds, so their difference is the lease length free of any clock skew. Without
    # it, the local clock is the best guess.
    value = info.raw.get("updated_at")
    if not isinstance(value, str):
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


Handler = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]
"""A job handler: ``async def handler(job) -> result`` (a plain ``def`` runs in a thread)."""
