"""What the admin API takes and answers, as pydantic models.

Answers ignore fields they do not know, so a newer coordinator does not break an
older client; fields newer than some coordinators (``lock``, ``schedule``,
``traceparent``) default to None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict

from fleet_wire import all_finite, encode
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Agent",
    "AgentCreated",
    "Job",
    "JobDetail",
    "JobOptions",
    "JobPage",
    "JobSpec",
    "JobStatus",
    "Lease",
    "QueueStats",
    "Run",
    "Schedule",
    "TERMINAL",
]

JobStatus = Literal["queued", "leased", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses a job never leaves except through ``retry``."""


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Lease(_Answer):
    """A live lease: who holds the job, with which fencing epoch, until when."""

    agent_id: str
    run_id: str
    epoch: int
    expires_at: datetime


class Run(_Answer):
    """One claim of a job and how it ended (``running`` while it has not)."""

    run_id: str
    epoch: int
    agent_id: str
    claimed_at: datetime
    ended_at: datetime | None = None
    outcome: str
    error: str | None = None


class Job(_Answer):
    """A job as the coordinator shows it."""

    id: str
    queue: str
    kind: str
    payload: dict[str, Any]
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: datetime
    requires: dict[str, str] = Field(default_factory=dict)
    cancel_requested: bool = False
    result: Any = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    lease: Lease | None = None
    lock: str | None = None
    schedule: str | None = None
    traceparent: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job is succeeded, failed or cancelled."""
        return self.status in TERMINAL


class JobDetail(Job):
    """A job with its runs, as ``get_job`` answers it."""

    runs: list[Run] = Field(default_factory=list)
    runs_dropped: int = 0
    """Runs older than those in ``runs`` (the coordinator keeps a job's newest 20)."""


class JobPage(_Answer):
    """One page of ``GET /v1/jobs``; ``next_cursor`` is None on the last."""

    items: list[Job]
    next_cursor: str | None = None


class Agent(_Answer):
    """A registered agent (never its token)."""

    id: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: int
    queues: list[str] = Field(default_factory=list)
    draining: bool = False
    live_leases: int = 0
    last_seen: datetime | None = None
    created_at: datetime


class AgentCreated(_Answer):
    """A new agent and its token, which the coordinator shows only this once."""

    agent: Agent
    token: str = Field(repr=False)


class QueueStats(_Answer):
    """One queue: jobs per status, whether it is paused, the oldest queued job's age."""

    queue: str
    paused: bool = False
    queued: int = 0
    leased: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    oldest_queued_age_seconds: float = 0.0


class Schedule(_Answer):
    """A periodic schedule: a five-field ``cron`` in ``timezone`` enqueuing ``job``."""

    name: str
    cron: str
    timezone: str = "UTC"
    job: dict[str, Any]
    paused: bool = False
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class JobOptions(TypedDict, total=False):
    """The optional job fields, as keyword arguments of ``enqueue``."""

    queue: str
    priority: int
    max_attempts: int
    lease_seconds: float
    timeout_seconds: float
    run_after: datetime
    requires: dict[str, str]
    idempotency_key: str
    lock: str
    traceparent: str


class JobSpec(BaseModel):
    """A job to enqueue: the body of ``POST /v1/jobs`` (checked here before it is sent)."""

    # NaN and ±∞ have no JSON form: pydantic would send them as null.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Annotated[str, Field(min_length=1, max_length=200)]
    payload: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    lease_seconds: float | None = None
    timeout_seconds: float | None = None
    run_after: AwareDatetime | None = None
    requires: dict[str, str] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    lock: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    traceparent: str | None = None

    @field_validator("payload")
    @classmethod
    def _payload_has_a_json_form(cls, payload: dict[str, Any]) -> dict[str, Any]:
        # Dumped as JSON, pydantic turns NaN and ±∞ into null and lets a lone
        # surrogate through to fail the request's encoding; both are refused here,
        # with the field's name, before anything is sent.
        if not all_finite(payload):
            raise ValueError("NaN and ±Infinity have no JSON form")
        try:
            encode(payload)
        except ValueError as exc:  # a lone surrogate (UnicodeEncodeError) …
            raise ValueError(f"has no JSON form: {_reason(exc)}") from None
        return payload

    @field_validator("kind", "queue", "idempotency_key", "lock", "traceparent", "requires")
    @classmethod
    def _text_is_unicode(cls, value: Any) -> Any:
        if value is None:
            return value
        texts = [value] if isinstance(value, str) else [*value.keys(), *value.values()]
        for text in texts:
            try:
                text.encode()
            except UnicodeEncodeError:
                raise ValueError("not valid Unicode (a lone surrogate)") from None
        return value

    def body(self) -> dict[str, Any]:
        """The JSON body: unset fields left out, so the coordinator's defaults apply."""
        return self.model_dump(mode="json", exclude_none=True)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return "a string is not valid Unicode (a lone surrogate)"
    return str(exc)
