"""What the agent API answers, as small frozen dataclasses parsed from JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Claimed", "HeartbeatAnswer", "JobInfo", "Lease", "Report", "ReportAnswer", "Reported"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One item of ``POST /v1/reports``: a heartbeat, complete, fail or release of a lease."""

    job_id: str
    epoch: int
    action: str
    result: Any = None
    error: str | None = None
    retryable: bool = True
    progress: Any = None

    def to_json(self) -> dict[str, Any]:
        """The item as the API takes it (fields that do not apply are left out)."""
        body: dict[str, Any] = {"job_id": self.job_id, "epoch": self.epoch, "action": self.action}
        if self.action == "complete" and self.result is not None:
            # None is the API's default: left out, the request holds no ``null`` for the
            # encoder to look behind for a NaN (fleet_wire.encode).
            body["result"] = self.result
        elif self.action == "fail":
            body["error"] = self.error or ""
            body["retryable"] = self.retryable
        elif self.action == "heartbeat" and self.progress is not None:
            body["progress"] = self.progress
        return body


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """The answer to one report: ok with the job's status, or the error code and message."""

    job_id: str
    ok: bool
    status: str | None
    lease: Lease | None
    cancel_requested: bool
    code: str | None
    message: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReportAnswer:
        """Parse one entry of a reports answer's ``items``."""
        error = data.get("error") or {}
        lease = data.get("lease")
        return cls(
            job_id=str(data["job_id"]),
            ok=bool(data["ok"]),
            status=data.get("status"),
            lease=None if lease is None else Lease.from_json(lease),
            cancel_requested=bool(data.get("cancel_requested")),
            code=error.get("code"),
            message=error.get("message"),
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """A reports answer: one ``ReportAnswer`` per report in order, and the claim's leases."""

    items: list[ReportAnswer]
    leases: list[Claimed]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reported:
        """Parse ``{"items": [...], "leases": [...]}``."""
        return cls(
            items=[ReportAnswer.from_json(item) for item in data["items"]],
            leases=[Claimed.from_json(item) for item in data["leases"]],
        )
