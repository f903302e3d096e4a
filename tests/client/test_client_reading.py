"""The jobs' answers read straight from their bytes, and a batch's specs validated once
per distinct object: the same models, bodies and errors as the old way, value for value.

The old way is written out here (``orjson.loads``, then pydantic on the Python
objects; every spec of a batch validated and dumped): each case is read both ways
and compared, field by field with the exact type of every value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fleet_client import FleetError, Job, JobSpec, calls
from fleet_client.calls import Call, read_answer
from fleet_wire import Answer
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, TypeAdapter, ValidationError

_JOBS = TypeAdapter(list[Job])
_SPECS = TypeAdapter(list[JobSpec])

STAMP = "2026-12-07T21:41:06.942345Z"

JOB: dict[str, Any] = {
    "id": "01a252740cfe6a67b7372bcd36788ac8",
    "queue": "default",
    "kind": "noop",
    "payload": {},
    "traceparent": None,
    "priority": 0,
    "status": "queued",
    "attempts": 0,
    "max_attempts": 3,
    "run_after": STAMP,
    "requires": {},
    "cancel_requested": False,
    "result": None,
    "last_error": None,
    "created_at": STAMP,
    "updated_at": STAMP,
    "lock": None,
    "schedule": None,
    "lease": None,
}

LEASE = {"agent_id": "a1", "run_id": "r1", "epoch": 2, "expires_at": "2026-12-07T21:42:00+01:00"}

# Jobs the coordinator writes, and a few it never would (which pydantic still takes).
VARIANTS: list[dict[str, Any]] = [
    {},
    {"payload": {"n": 1, "x": 0.1, "big": 2**53 - 1, "neg": -(2**53 - 1), "t": True}},
    {"payload": {"floats": [5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, -0.0]}},
    {"payload": {"exp": 123456.789e3, "small": 1e-7, "int_like": 3.0, "nested": [[{"a": []}]]}},
    {"payload": {"text": 'é漢字😀\u0000\t"\\/', "": None, "list": [1, "a", None, False]}},
    {"result": {"ok": True, "rows": [1, 2.5, "x"]}, "status": "succeeded"},
    {"result": 42, "status": "failed", "last_error": "boom: ✗"},
    {"result": [1.5, None], "status": "succeeded"},
    {"result": "plain", "status": "cancelled", "cancel_requested": True},
    {"lease": LEASE, "status": "leased", "attempts": 1},
    {"requires": {"gpu": "a100", "zone": "é"}, "lock": "l", "schedule": "s", "queue": "q"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"run_after": "2026-12-07T22:41:06+01:00", "created_at": "2026-12-07T21:41:06Z"},
    {"created_at": 1765143666, "updated_at": 1765143666.5},  # seconds, as pydantic takes them
    {"priority": "7", "attempts": 1.0, "cancel_requested": "true"},  # lax, as pydantic takes them
    {"priority": -5, "max_attempts": 2**63 - 1},
    {"unknown": {"field": [1, 2]}, "another": None},  # a newer coordinator's field: ignored
    {"payload": {"u64": 2**64 - 1, "i64": -(2**63)}},  # the widest orjson reads as integers
]


def _job(**changes: Any) -> dict[str, Any]:
    job = {**JOB, **changes}
    return {key: value for key, value in job.items() if value is not _MISSING}


_MISSING = object()


def _old_one(content: bytes) -> Job:
    return Job.model_validate(orjson.loads(content))


def _old_many(content: bytes) -> list[Job]:
    return _JOBS.validate_python(orjson.loads(content)["items"])


def _typed(value: Any) -> Any:
    """``value`` with the exact type of everything in it, to compare (1 == 1.0 == True)."""
    if isinstance(value, BaseModel):
        fields = {name: _typed(getattr(value, name)) for name in type(value).model_fields}
        return (type(value), fields, sorted(value.model_fields_set))
    if isinstance(value, dict):
        return (dict, [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return (list, [_typed(item) for item in value])
    if isinstance(value, float) and value != value:
        return (float, "nan")
    if hasattr(value, "isoformat"):
        return (type(value), value.isoformat(), str(value.tzinfo))
    return (type(value), repr(value))


def _answer(content: bytes) -> Answer:
    return Answer(200, "OK", {"content-type": "application/json"}, content)


def _outcome(read: Callable[[], Any]) -> Any:
    try:
        return ("value", _typed(read()))
    except FleetError as exc:
        return ("error", type(exc), str(exc), exc.status, exc.code)


ONE_CALLS: dict[str, Callable[[], Call[Any]]] = {
    "enqueue": lambda: calls.enqueue({"kind": "noop"}),
    "cancel_job": lambda: calls.cancel_job("j1"),
    "retry_job": lambda: calls.retry_job("j1"),
}
MANY_CALLS: dict[str, Callable[[], Call[Any]]] = {
    "enqueue_batch": lambda: calls.enqueue_batch([{"kind": "noop"}] * 3),
    "cancel_jobs": lambda: calls.cancel_jobs(queue="q"),
    "retry_jobs": lambda: calls.retry_jobs(queue="q"),
}


def _new_way(call: Call[Any], content: bytes) -> Any:
    """What the call reads now."""
    return _outcome(lambda: read_answer(call, _answer(content)))


def _old_way(call: Call[Any], content: bytes) -> Any:
    """What the call read before: its ``read`` of ``orjson.loads``, errors as ``read_answer``."""
    plain = Call(call.method, call.path, call.read, call.body, call.params, call.safe)
    return _outcome(lambda: read_answer(plain, _answer(content)))


@pytest.mark.parametrize("name", sorted(ONE_CALLS))
@pytest.mark.parametrize("changes", VARIANTS, ids=range(len(VARIANTS)))
def test_a_job_answer_is_read_as_before(name: str, changes: dict[str, Any]) -> None:
    """The same model: every field's value and type, and the fields set."""
    call = ONE_CALLS[name]()
    assert call.read_body is not None
    content = orjson.dumps(_job(**changes))
    got = _new_way(call, content)
    assert got[0] == "value"
    assert got == _old_way(call, content) == ("value", _typed(_old_one(content)))


@pytest.mark.parametrize("name", sorted(MANY_CALLS))
def test_a_list_of_jobs_is_read_as_before(name: str) -> None:
    """Every variant in one answer (and an empty one), read into the same models."""
    call = MANY_CALLS[name]()
    assert call.read_body is not None
    jobs = [_job(id=f"{n:032x}", **changes) for n, changes in enumerate(VARIANTS)]
    for items in (jobs, [], jobs[:1] * 1000):
        content = orjson.dumps({"items": items, "next_cursor": None})
        got = _new_way(call, content)
        assert got[0] == "value"
        assert got == _old_way(call, content) == ("value", _typed(_old_many(content)))


# Answers pydantic's JSON parser reads otherwise than orjson: NaN and the infinities
# and 1e400 (orjson refuses them: "not JSON"), integers past 64 bits (orjson: floats).
DIVERGENT = [
    b'{"n": NaN}',
    b'{"n": Infinity}',
    b'{"n": -Infinity}',
    b'{"n": 1e400}',
    b'{"n": [1, {"m": -1e400}]}',
    b'{"n": 18446744073709551616}',
    b'{"n": -9223372036854775809}',
    b'{"n": 123456789012345678901234567890}',
]


def _spliced(job: dict[str, Any], field: str, raw: bytes) -> bytes:
    """``job``'s JSON with ``field`` set to the raw JSON text ``raw`` (which orjson may refuse)."""
    content = orjson.dumps({**job, field: "@@"})
    return content.replace(b'"@@"', raw)


DIVERGENT_CASES = [("payload", raw) for raw in DIVERGENT] + [
    ("result", raw) for raw in DIVERGENT[:3] + DIVERGENT[5:6]
]
TYPED_INTS = [b"18446744073709551617", b"-9223372036854775809", b"1" * 30, b"9223372036854775808"]


@pytest.mark.parametrize(("field", "raw"), DIVERGENT_CASES)
def test_what_the_parsers_read_otherwise_is_read_the_old_way(field: str, raw: bytes) -> None:
    """A job holding NaN, an infinity, 1e400 or a huge integer: the old value or error."""
    for name, make in {**ONE_CALLS, **MANY_CALLS}.items():
        call = make()
        content = _spliced(JOB, field, raw)
        if name in MANY_CALLS:
            content = b'{"items": [' + orjson.dumps(JOB) + b"," + content + b"]}"
        assert _new_way(call, content) == _old_way(call, content), name


@pytest.mark.parametrize("raw", TYPED_INTS)
@pytest.mark.parametrize("field", ["priority", "attempts", "max_attempts", "lease"])
def test_a_huge_integer_in_a_typed_field_is_read_the_old_way(field: str, raw: bytes) -> None:
    """orjson reads it as a float, which pydantic refuses or rounds: as before."""
    job = JOB
    if field == "lease":
        job, field = {**JOB, "lease": {**LEASE, "epoch": "@@"}}, "lease"
        content = orjson.dumps(job).replace(b'"@@"', raw)
    else:
        content = _spliced(JOB, field, raw)
    for make in ONE_CALLS.values():
        call = make()
        old = _old_way(call, content)
        assert _new_way(call, content) == old


MALFORMED = [
    b"",
    b"not json",
    b"\xef\xbb\xbf" + orjson.dumps(JOB),  # a BOM
    orjson.dumps(JOB)[:-1],  # cut short
    orjson.dumps(JOB).replace(b'"noop"', b'"\\ud800"'),  # a lone surrogate
    orjson.dumps(JOB).replace(b'"noop"', b'"\\udc00x"'),
    orjson.dumps(JOB).replace(b'"noop"', b'"\xff"'),  # not UTF-8
    orjson.dumps([JOB]),
    b"null",
    b'{"items": null}',
    orjson.dumps({**JOB, "status": "nonsense"}),
    orjson.dumps({**JOB, "created_at": "yesterday"}),
    orjson.dumps({k: v for k, v in JOB.items() if k != "id"}),
    b'{"priority": NaN}',
    orjson.dumps({**JOB, "priority": "@@"}).replace(b'"@@"', b"NaN"),
    orjson.dumps({**JOB, "priority": "@@"}).replace(b'"@@"', b"1e400"),
    orjson.dumps({**JOB, "kind": "@@"}).replace(b'"@@"', b"Infinity"),
]


@pytest.mark.parametrize("content", MALFORMED, ids=range(len(MALFORMED)))
def test_an_answer_that_is_not_a_job_is_the_same_error(content: bytes) -> None:
    """Not JSON, or not the shape: the same ``FleetError`` as before, word for word."""
    for make in {**ONE_CALLS, **MANY_CALLS}.values():
        call = make()
        assert _old_way(call, content)[0] == "error"
        for body in (content, b'{"items": [' + content + b"]}"):
            old = _old_way(call, body)
            assert _new_way(call, body) == old


# -- a batch's specs --------------------------------------------------------------------


def _old_batch(jobs: list[Any]) -> tuple[dict[str, Any], bool]:
    specs = _SPECS.validate_python(list(jobs))
    body = {"jobs": _SPECS.dump_python(specs, mode="json", exclude_none=True)}
    return body, all(spec.idempotency_key is not None for spec in specs)


SPEC_A = {"kind": "a", "payload": {"n": 1.5, "s": "é"}, "queue": "q", "priority": 3}
SPEC_B = {"kind": "b", "idempotency_key": "k1", "requires": {"gpu": "x"}}
SPEC_M = JobSpec(kind="m", lock="L", payload={"x": [1, 2]})


@pytest.mark.parametrize(
    "jobs",
    [
        [{"kind": "noop"}] * 1000,
        [SPEC_A] * 3 + [SPEC_B] + [SPEC_A],
        [SPEC_B] * 4,
        [SPEC_M, SPEC_A, SPEC_M, dict(SPEC_A)],
        [SPEC_A, SPEC_B],
    ],
    ids=["one-object", "repeats", "all-keyed", "models", "distinct"],
)
def test_a_batch_body_is_as_before(jobs: list[Any]) -> None:
    """Repeated objects validated once: the same body, job for job, and the same safety."""
    call = calls.enqueue_batch(jobs)
    body, safe = _old_batch(jobs)
    assert orjson.dumps(call.body) == orjson.dumps(body)
    assert call.body == body
    assert call.safe is safe


@pytest.mark.parametrize(
    "jobs",
    [
        [{"kind": ""}] * 3,
        [{"kind": "ok"}, {"kind": "x" * 201}, {"kind": "ok"}, {"kind": "x" * 201}],
        [SPEC_A, {"kind": "a", "payload": []}] * 2 + [{"kind": "a", "bogus": 1}],
        [{"kind": "a", "payload": {"n": float("nan")}}] * 2 + [SPEC_A],
        [SPEC_A] * 2 + [{"kind": "a", "priority": "high"}],
    ],
    ids=["one-bad-object", "bad-twice", "mixed", "nan-twice", "last-bad"],
)
def test_a_batch_with_a_bad_spec_is_the_same_error(jobs: list[Any]) -> None:
    """Every index the whole list names, as before (not only the first of a repeated object)."""
    with pytest.raises(ValidationError) as old:
        _old_batch(jobs)
    with pytest.raises(ValidationError) as new:
        calls.enqueue_batch(jobs)
    plain = {"include_url": False, "include_context": False, "include_input": False}
    assert new.value.errors(**plain) == old.value.errors(**plain)
    assert str(new.value) == str(old.value)


# -- one job of a kind alone, and the trace context ---------------------------------------


def test_a_kind_alone_is_the_same_spec_and_body_every_time() -> None:
    """``enqueue(kind)``'s spec kept by kind: equal to a fresh one, its body too."""
    for kind in ("noop", "other", "noop"):
        fresh = JobSpec.model_validate({"kind": kind, "payload": {}})
        call = calls.enqueue(calls.job_spec(kind, None, {}))
        assert calls.job_spec(kind, None, {}) == fresh
        assert call.body == fresh.body() == {"kind": kind, "payload": {}}
    for bad in ("", "x" * 201, "\ud800"):
        for _ in range(2):
            with pytest.raises(ValidationError):
                calls.job_spec(bad, None, {})
    assert calls.job_spec("noop", {"a": 1}, {}).payload == {"a": 1}
    assert calls.job_spec("noop", None, {"queue": "q"}).queue == "q"


def test_an_enqueue_carries_one_trace_context_in_its_jobs_and_headers() -> None:
    """Under a span: the jobs' ``traceparent`` is the one the request's headers carry."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("app.enqueue") as span:
        one = calls.enqueue(calls.job_spec("noop", None, {}))
        many = calls.enqueue_batch([{"kind": "noop"}] * 3 + [{"kind": "x", "traceparent": "t"}])
    context = span.get_span_context()
    wanted = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    for call in (one, many):
        assert call.trace is not None
        assert call.trace["traceparent"] == wanted
    assert one.body is not None
    assert one.body["traceparent"] == wanted
    assert many.body is not None
    assert [job.get("traceparent") for job in many.body["jobs"]] == [wanted] * 3 + ["t"]
    outside = calls.enqueue(calls.job_spec("noop", None, {}))
    assert outside.trace == {}
    assert outside.body == {"kind": "noop", "payload": {}}
