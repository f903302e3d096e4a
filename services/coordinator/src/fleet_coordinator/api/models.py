"""Request and response models of the HTTP API, named for their role."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ..store import OCCURRENCE_KEY_PREFIX

__all__ = [
    "AgentCreate",
    "AgentCreated",
    "AgentList",
    "AgentOut",
    "BatchCreate",
    "BulkCancelRequest",
    "BulkRetryRequest",
    "ClaimOut",
    "ClaimRequest",
    "ClaimedLease",
    "CompleteRequest",
    "ErrorDetail",
    "ErrorOut",
    "FailRequest",
    "HeartbeatOut",
    "HeartbeatRequest",
    "JobCreate",
    "JobDetailOut",
    "JobList",
    "JobOut",
    "JobItems",
    "LeaseOut",
    "QueueList",
    "QueueStatsOut",
    "READ_FROM_JSON",
    "ReleaseRequest",
    "ReportError",
    "ReportItem",
    "ReportItemOut",
    "ReportOut",
    "ReportRequest",
    "RunOut",
    "ScheduleCreate",
    "ScheduleList",
    "ScheduleOut",
    "ScheduledJob",
    "not_a_dot_segment",
]

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
"""A number written as a string, which pydantic would read as Unix seconds."""
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_OUT_OF_RANGE = (
    f"run_after must be from {_EARLIEST:%Y-%m-%dT%H:%M:%SZ} to {_LATEST:%Y-%m-%dT%H:%M:%SZ}"
)
"""Written from the bounds themselves: "between 1970 and 9999" read as if 9999-12-31 passed."""


def not_a_dot_segment(name: str) -> str:
    """``name``, unless it is ``.`` or ``..`` (a queue's or a schedule's name)."""
    # "." and ".." match the name patterns, but ordinary HTTP clients cannot put them in
    # a path as one segment (they are dot-segments, removed before sending): such a
    # queue could be enqueued to and never paused or resumed, such a schedule created
    # and never paused or deleted.
    if name in (".", ".."):
        raise ValueError("'.' and '..' cannot be names: a URL path cannot carry them")
    return name


QueueName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", max_length=64),
    AfterValidator(not_a_dot_segment),
]  # max_length also in the schema: the guard's body limits are computed from it
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=255)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=32)]
# Strict, as every number and flag a request carries (``strict=True`` on each field
# below): a fencing epoch is a JSON integer, never coerced from "1", true or 1.0
# (pydantic's lax mode takes all three as 1; a client sending them has a bug to see).
# A float field takes a JSON integer too; a flag only true or false ("no" is not false).
Epoch = Annotated[int, Field(ge=1, le=2**53 - 1, strict=True)]
Traceparent = Annotated[
    str,
    # max_length as well: the guard's body limits count a string without one as a
    # free-form value (2 x FLEET_MAX_PAYLOAD_BYTES), which doubled POST /v1/jobs's.
    StringConstraints(
        pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", max_length=55
    ),
    Field(description="W3C trace context of the enqueue; the agent runs the job in a child span"),
]
LockName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


_PORTABLE = (
    "Any JSON up to FLEET_MAX_PAYLOAD_BYTES encoded (else 413), with finite numbers, "
    "integers within ±(2**53-1) and at most 64 levels of nested objects and arrays "
    "(else 422): what every store keeps unchanged."
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _JobTemplate(_In):
    """The job fields a schedule's job template shares with a job enqueued on its own."""

    queue: QueueName = "default"
    kind: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: dict[str, Any] = Field(default_factory=dict, description=_PORTABLE)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, strict=True)
    max_attempts: int = Field(default=3, ge=1, le=100, strict=True)
    lease_seconds: float | None = Field(default=None, gt=0, le=86_400, strict=True)
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86_400, strict=True)
    requires: Labels = Field(default_factory=dict)
    lock: LockName | None = Field(
        default=None,
        description="Jobs that share a lock never hold live leases at the same time "
        "(one name is one lock in every queue).",
    )


class JobCreate(_JobTemplate):
    """A job to enqueue."""

    traceparent: Traceparent | None = None
    run_after: AwareDatetime | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None,
        description="A repeat with the same key and body is the same job (200); another body "
        f"is 409. Keys starting with `{OCCURRENCE_KEY_PREFIX}` are reserved for the "
        "occurrences of schedules (422).",
    )

    @field_validator("run_after", mode="before")
    @classmethod
    def _iso_only(cls, value: object) -> object:
        # SPEC: ISO-8601. pydantic would also take a number, or a string of one, as
        # Unix seconds: 1700000000 meant as a delay would land in 2023 and run at once.
        if value is not None and (not isinstance(value, str) or _NUMBER.fullmatch(value)):
            raise ValueError("run_after must be an ISO-8601 date and time with a UTC offset")
        return value

    @field_validator("idempotency_key")
    @classmethod
    def _not_an_occurrence_key(cls, value: str | None) -> str | None:
        # A job under a schedule's occurrence key, with its own body, would make the
        # occurrence's enqueue a conflict: that occurrence would never run.
        if value is not None and value.startswith(OCCURRENCE_KEY_PREFIX):
            raise ValueError(
                f"idempotency keys starting with {OCCURRENCE_KEY_PREFIX!r} are reserved for "
                "the occurrences of schedules"
            )
        return value

    @field_validator("run_after")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not _EARLIEST <= value <= _LATEST:
            raise ValueError(_OUT_OF_RANGE)
        return value


_PER_OCCURRENCE = ("idempotency_key", "run_after", "traceparent")
"""Job fields each occurrence of a schedule decides for itself."""


class ScheduledJob(_JobTemplate):
    """The job a schedule enqueues at each occurrence.

    The occurrence gives each job its idempotency key and due time, and each runs in
    a trace of its own: ``idempotency_key``, ``run_after`` and ``traceparent`` are
    refused (422).
    """

    @model_validator(mode="before")
    @classmethod
    def _nothing_per_occurrence(cls, data: Any) -> Any:
        # Named here, not left to "extra inputs are not permitted": they are job fields
        # a client may well expect a template to take.
        if isinstance(data, dict):
            given = [name for name in _PER_OCCURRENCE if name in data]
            if given:
                raise ValueError(
                    f"a scheduled job takes no {', '.join(given)}: each occurrence gets its "
                    "own idempotency key, due time and trace"
                )
        return data


class ScheduleCreate(_In):
    """A periodic schedule: five-field cron in an IANA time zone, and its job."""

    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="minute hour day-of-month month day-of-week: numbers, *, ranges, lists "
        "and steps only (no seconds, names or @daily; a step within its field's range: "
        "*/59 minutes at most, */23 hours, */30 days, */11 months, */6 days of the week)",
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    job: ScheduledJob
    paused: bool = Field(default=False, strict=True)


class ScheduleOut(BaseModel):
    """A schedule as the API shows it."""

    name: str
    cron: str
    timezone: str
    job: dict[str, Any]
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    """Every schedule."""

    items: list[ScheduleOut]


class BatchCreate(_In):
    """Jobs to enqueue all together."""

    jobs: list[JobCreate] = Field(min_length=1, max_length=1000)


READ_FROM_JSON: frozenset[type[BaseModel]] = frozenset({JobCreate, BatchCreate})
"""Bodies the hot path validates from their bytes (``api/hot.py``'s ``_validate``).

Only models whose every field reads a JSON value as pydantic's Python mode reads the
value ``json.loads`` makes of it: strings, integers, floats, flags, nulls, lists and
objects into ``str``, ``int``, ``float``, ``bool``, dicts, lists and ``Any``, and a time
from a string. Not a strict field of a type JSON has no literal for (an enum, a tuple,
a date, a UUID): JSON mode takes its string or list, Python mode only the type itself.
Checked for these by ``tests/coordinator/test_hot_from_json.py``.
"""


class LeaseOut(BaseModel):
    """A live lease: who holds the job, with which fencing epoch, until when."""

    agent_id: str
    run_id: str
    epoch: int
    expires_at: datetime = Field(
        description="When the lease is lost unless renewed: now + lease_seconds at the claim"
        " and at each heartbeat, never later than the attempt's timeout (claim + timeout_seconds)"
    )


class RunOut(BaseModel):
    """One claim of a job and how it ended."""

    run_id: str
    epoch: int
    agent_id: str
    claimed_at: datetime
    ended_at: datetime | None
    outcome: str
    error: str | None


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    queue: str
    kind: str
    payload: dict[str, Any]
    traceparent: str | None = None
    priority: int
    status: str
    attempts: int
    max_attempts: int
    run_after: datetime
    requires: dict[str, str]
    cancel_requested: bool
    result: Any
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    lock: str | None
    schedule: str | None
    lease: LeaseOut | None


class JobDetailOut(JobOut):
    """A job with its run history: its newest runs, one per claim, oldest first."""

    runs: list[RunOut]
    runs_dropped: int = Field(
        description="Runs older than those in `runs` (a job keeps its newest 20), not kept."
    )


class JobItems(BaseModel):
    """Jobs created by a batch."""

    items: list[JobOut]


class JobList(BaseModel):
    """A page of jobs."""

    items: list[JobOut]
    next_cursor: str | None


class AgentCreate(_In):
    """An agent to register."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    labels: Labels = Field(default_factory=dict)
    capacity: int = Field(default=1, ge=1, le=1000, strict=True)
    queues: list[QueueName] = Field(default_factory=list, max_length=100)


class AgentOut(BaseModel):
    """A registered agent (never its token)."""

    id: str
    name: str
    labels: dict[str, str]
    capacity: int
    queues: list[str]
    draining: bool
    live_leases: int
    last_seen: datetime | None
    created_at: datetime


class AgentCreated(BaseModel):
    """A new agent and its token, shown only this once."""

    agent: AgentOut
    token: str


class AgentList(BaseModel):
    """All agents."""

    items: list[AgentOut]


class ClaimRequest(_In):
    """What an agent asks for when claiming."""

    queues: list[QueueName] | None = Field(default=None, max_length=100)
    max_jobs: int = Field(default=1, ge=1, le=100, strict=True)
    wait_seconds: float = Field(default=0, ge=0, le=30, strict=True)


class ClaimedLease(BaseModel):
    """One leased job."""

    job: JobOut
    lease: LeaseOut


class ClaimOut(BaseModel):
    """The leases a claim won (possibly none)."""

    leases: list[ClaimedLease]


class HeartbeatRequest(_In):
    """A lease renewal."""

    epoch: Epoch
    progress: Any = Field(default=None, description=_PORTABLE)


class HeartbeatOut(BaseModel):
    """The renewed lease and whether the job should stop."""

    lease: LeaseOut
    cancel_requested: bool


class CompleteRequest(_In):
    """A successful end of the lease."""

    epoch: Epoch
    result: Any = Field(default=None, description=_PORTABLE)


class FailRequest(_In):
    """A failed attempt."""

    epoch: Epoch
    error: Annotated[str, StringConstraints(max_length=10_000)]
    retryable: bool = Field(default=True, strict=True)


class ReleaseRequest(_In):
    """Give the job back without counting the attempt."""

    epoch: Epoch


class _Report(_In):
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    epoch: Epoch


class HeartbeatItem(_Report):
    """Renew the lease, as ``POST /v1/jobs/{id}/heartbeat``."""

    action: Literal["heartbeat"]
    progress: Any = Field(default=None, description=_PORTABLE)


class CompleteItem(_Report):
    """End the job with its result, as ``POST /v1/jobs/{id}/complete``."""

    action: Literal["complete"]
    result: Any = Field(default=None, description=_PORTABLE)


class FailItem(_Report):
    """End the attempt with an error, as ``POST /v1/jobs/{id}/fail``."""

    action: Literal["fail"]
    error: Annotated[str, StringConstraints(max_length=10_000)]
    retryable: bool = Field(default=True, strict=True)


class ReleaseItem(_Report):
    """Give the job back, as ``POST /v1/jobs/{id}/release``."""

    action: Literal["release"]


ReportItem = Annotated[
    HeartbeatItem | CompleteItem | FailItem | ReleaseItem, Field(discriminator="action")
]
"""One report on a lease the caller holds, applied as its single endpoint would be.

One model per action, chosen by ``action``: each takes only the fields its single
endpoint takes, so a field another action takes (a ``result`` on a heartbeat, even
as null) is refused with 422 as that endpoint refuses it (SPEC 13), and the largest
valid item carries one free-form value, which bounds the request's body
(``api/limits.py``) at half of what a model allowing all of them would.
"""


class ReportRequest(_In):
    """Many reports on the caller's leases, then optionally a claim for the freed slots."""

    items: list[ReportItem] = Field(default_factory=list, max_length=100)
    claim: ClaimRequest | None = None

    @model_validator(mode="after")
    def _jobs_once(self) -> ReportRequest:
        # Two reports on one job would depend on their order; SPEC refuses the request.
        ids = [item.job_id for item in self.items]
        if len(ids) != len(set(ids)):
            raise ValueError("a job appears more than once in items")
        return self


class ReportError(BaseModel):
    """Why one report changed nothing: the code and message its single endpoint would answer."""

    code: str
    message: str


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent, not null: no default value to show


def _only_when(applies: str) -> Any:
    """A field of an item's answer that is left out, never ``null``, when it does not apply.

    SPEC writes these ``status?``, ``lease?``, ``cancel_requested?``, ``error?: {…}``:
    optional and of one type, where the fields that may be null say "or null".
    """
    return Field(
        default=None,
        exclude_if=lambda value: value is None,
        json_schema_extra=_no_default,
        description=f"Only {applies}; left out otherwise.",
    )


class ReportItemOut(BaseModel):
    """The answer to one report, in the place of its request item."""

    job_id: str
    ok: bool
    status: str | SkipJsonSchema[None] = _only_when("on an ok item: the job's status after it")
    lease: LeaseOut | SkipJsonSchema[None] = _only_when("on an ok heartbeat: the renewed lease")
    cancel_requested: bool | SkipJsonSchema[None] = _only_when("on an ok heartbeat")
    error: ReportError | SkipJsonSchema[None] = _only_when("on a failed item")


class ReportOut(BaseModel):
    """One answer per report in request order, and the leases the claim won (or none)."""

    items: list[ReportItemOut]
    leases: list[ClaimedLease]


class BulkRetryRequest(_In):
    """Which failed or cancelled jobs to requeue, oldest first."""

    queue: QueueName | None = None
    kind: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    status: Literal["failed", "cancelled"]
    limit: int = Field(default=100, ge=1, le=1000, strict=True)


class BulkCancelRequest(_In):
    """Which non-terminal jobs to cancel, oldest first."""

    queue: QueueName | None = None
    kind: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    lock: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    limit: int = Field(default=100, ge=1, le=1000, strict=True)


class QueueStatsOut(BaseModel):
    """Counts of one queue, and whether it is paused."""

    queue: str
    paused: bool
    queued: int
    leased: int
    succeeded: int
    failed: int
    cancelled: int
    oldest_queued_age_seconds: float


class QueueList(BaseModel):
    """Every known queue."""

    items: list[QueueStatsOut]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """The shape of every error answer."""

    error: ErrorDetail
