"""An enqueued job's value, request and answer built as before, on the paths tuned for CPU.

``domain.enqueue`` fills a draft of ``JobState`` field by field (``_replace.draft``),
``routes_jobs._new_job`` passes ``NewJob``'s fields by position: both must build what
the classes' own keyword calls build, field for field and type for type.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fleet_coordinator import Settings
from fleet_coordinator.api.models import JobCreate
from fleet_coordinator.api.routes_jobs import _digest, _new_job
from fleet_coordinator.domain import JobState, enqueue
from fleet_coordinator.domain._replace import draft
from fleet_coordinator.services import NewJob

_EVERY: dict[str, Any] = {
    "job_id": "j1",
    "kind": "k",
    "payload": {"x": [1]},
    "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    "now": 5.0,
    "queue": "q",
    "priority": -3,
    "max_attempts": 7,
    "lease_seconds": 12.5,
    "timeout_seconds": 99.0,
    "run_after": 9.0,
    "requires": {"gpu": "a100"},
    "idempotency_key": "key",
    "lock": "db",
    "schedule": "nightly",
}


def _same(built: Any, expected: Any) -> None:
    assert type(built) is type(expected)
    assert built == expected
    for f in dataclasses.fields(expected):
        assert type(getattr(built, f.name)) is type(getattr(expected, f.name)), f.name


@pytest.mark.parametrize(
    "given",
    [
        {"job_id": "j1", "kind": "k", "payload": {}, "now": 5.0, "queue": "default"},
        _EVERY,
    ],
)
def test_enqueue_builds_what_the_class_builds(given: dict[str, Any]) -> None:
    job = enqueue(**given)
    fields = {k: v for k, v in given.items() if k not in ("job_id", "now", "run_after")}
    expected = JobState(
        id=given["job_id"],
        **fields,
        run_after=given.get("run_after", given["now"]),
        created_at=given["now"],
        updated_at=given["now"],
    )
    _same(job, expected)
    assert job.payload is not given["payload"]  # the job's own copies
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.epoch = 7  # type: ignore[misc]  # frozen, as the class's own


def test_a_draft_left_unfilled_is_no_value() -> None:
    made: Any = draft(JobState)()
    made.id = "j1"
    made.__class__ = JobState
    with pytest.raises(AttributeError):
        _ = made.queue


def test_a_draft_is_refused_for_a_class_it_cannot_fill_faithfully() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        x: int

    with pytest.raises(TypeError):
        draft(Unslotted)


_BODIES: list[dict[str, Any]] = [
    {"kind": "k"},
    {
        "kind": "train",
        "queue": "gpu",
        "payload": {"n": 1, "f": 0.5},
        "priority": -7,
        "max_attempts": 5,
        "lease_seconds": 30,
        "timeout_seconds": 90.5,
        "run_after": "2030-01-02T03:04:05.123456+01:00",
        "requires": {"gpu": "a100"},
        "idempotency_key": "key-1",
        "lock": "db",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    },
]


@pytest.mark.parametrize("body", _BODIES)
def test_new_job_passes_each_field_to_its_place(body: dict[str, Any]) -> None:
    co: Any = type("Co", (), {"settings": Settings(store_url="memory://", admin_token="t")})()
    parsed = JobCreate.model_validate(body)
    built = _new_job(co, parsed)  # reads only the coordinator's settings
    digest = as_sent = ""
    if parsed.idempotency_key is not None:
        as_sent = _digest(parsed.model_dump(mode="json", exclude={"traceparent"}))
        digest = built.request_hash
        assert digest  # the offset normalized: a second hash
        assert digest != as_sent
    expected = NewJob(
        kind=parsed.kind,
        payload=parsed.payload,
        traceparent=parsed.traceparent,
        queue=parsed.queue,
        priority=parsed.priority,
        max_attempts=parsed.max_attempts,
        lease_seconds=parsed.lease_seconds,
        timeout_seconds=parsed.timeout_seconds,
        run_after=None if parsed.run_after is None else parsed.run_after.timestamp(),
        requires=parsed.requires,
        idempotency_key=parsed.idempotency_key,
        lock=parsed.lock,
        schedule=None,
        request_hash=digest,
        also_replays=as_sent,
    )
    _same(built, expected)
