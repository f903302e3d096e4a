"""What the agent API answers, as small frozen dataclasses parsed from JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Claimed", "HeartbeatAnswer", "JobInfo", "Lease"]


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lease: the fencing ``epoch`` goes with every later call on the job."""

    agent_id: str
    run_id: str
    epoch: int
    expires_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        """Parse the API's ``lease`` object."""
        return cls(
            agent_id=str(data["agent_id"]),
            run_id=str(data["run_id"]),
            epoch=int(data["epoch"]),
            expires_at=_when(str(data["expires_at"])),
        )


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as the coordinator showed it (``raw`` keeps every field)."""

    id: str
    queue: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInfo:
        """Parse the API's job object."""
        return cls(
            id=str(data["id"]),
            queue=str(data["queue"]),
            kind=str(data["kind"]),
            payload=dict(data.get("payload") or {}),
            status=str(data["status"]),
            attempts=int(data["attempts"]),
            max_attempts=int(data["max_attempts"]),
            cancel_requested=bool(data.get("cancel_requested")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """One job won by a claim, with its lease."""

    job: JobInfo
    lease: Lease

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Claimed:
        """Parse one entry of ``{"leases": [...]}``."""
        return cls(job=JobInfo.from_json(data["job"]), lease=Lease.from_json(data["lease"]))


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """The renewed lease and whether an admin asked the job to stop."""

    lease: Lease
    cancel_requested: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeartbeatAnswer:
        """Parse a heartbeat answer."""
        return cls(
            lease=Lease.from_json(data["lease"]),
            cancel_requested=bool(data["cancel_requested"]),
        )
