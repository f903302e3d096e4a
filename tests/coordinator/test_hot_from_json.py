"""The hot path's enqueue bodies validated from their bytes read as they were read before.

``api/hot.py``'s ``_validate`` gives the models of ``READ_FROM_JSON`` their body with
``model_validate_json``; every body must come out as ``model_validate(_loads(raw))``
makes it, value for value and type for type, or be refused where that refuses it.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.api.hot import _loads, _post_routes, _Route, _validate
from fleet_coordinator.api.models import READ_FROM_JSON, BatchCreate, JobCreate
from pydantic import BaseModel


@functools.cache
def _route(path: str) -> _Route:
    app = create_app(Settings(store_url="memory://", admin_token="t"))
    found = [r for r in _post_routes(app) if r.path == path]
    assert len(found) == 1
    return found[0]


def _job(inner: bytes) -> bytes:
    return b'{"kind":"a",' + inner + b"}"


_BODIES = [
    _job(b'"kind":"b"'),  # a key twice: the last one
    _job(b'"payload":{"x":1,"y":2,"x":3}'),
    _job(b'"requires":{"x":"y","x":"z"}'),
    _job(b'"payload":{"x":NaN}'),
    _job(b'"payload":{"x":Infinity}'),
    _job(b'"payload":{"x":-Infinity}'),
    _job(b'"payload":{"x":[1,2,{"y":-Infinity}]}'),
    _job(b'"payload":{"x":1e400}'),
    _job(b'"payload":{"x":-1.8e308}'),
    _job(b'"payload":{"x":99999999999999999e300}'),
    _job(b'"payload":{"x":1E+309}'),
    _job(b'"payload":{"x":1e-400,"y":5e-324,"z":1.7976931348623157e308}'),
    _job(b'"payload":{"x":123456789012345678901234}'),
    _job(b'"payload":{"x":18446744073709551615,"y":-9223372036854775809}'),
    _job(b'"payload":{"x":9007199254740993}'),
    _job(b'"payload":{"x":1' + b"0" * 400 + b"}"),
    _job(b'"payload":{"x":1.' + b"0" * 400 + b"1}"),
    _job(b'"payload":{"x":-0,"y":-0.0,"z":0.1,"w":0.30000000000000004,"v":1E5,"u":1.5e-3}'),
    _job(b'"payload":{"x":"\\ud800"}'),  # a lone surrogate: orjson refuses it
    _job(b'"payload":{"x":"\\ud83d\\ude00","y":"\\u00e9\xc3\xa9","z":"a\\u0000b\\/"}'),
    _job(b'"payload":{"x":"\xed\xa0\x80"}'),
    _job(b'"payload":{"x":"\xc0\xaf"}'),
    _job(b'"kind":"\xff"'),
    _job(b'"payload":{"x":[1,{"y":null}],"t":true,"f":false}'),
    _job(b'"payload":{"x":01}'),
    _job(b'"payload":{"x":.5}'),
    _job(b'"payload":{"x":+1}'),
    _job(b'"payload":{"x":nan,"y":inf}'),
    _job(b'"payload":{"x":"\t"}'),
    _job(b'"payload":{"x":' + b"[" * 250 + b"]" * 250 + b"}"),  # past pydantic's parser
    _job(b'"payload":{"x":' + b'{"a":' * 250 + b"1" + b"}" * 250 + b"}"),
    _job(b'"payload":{"x":' + b"[" * 1100 + b"]" * 1100 + b"}"),
    _job(b'"lease_seconds":1,"timeout_seconds":2.5,"priority":-3,"max_attempts":100'),
    _job(b'"lease_seconds":true'),
    _job(b'"priority":1.0'),
    _job(b'"priority":"1"'),
    _job(b'"max_attempts":false'),
    _job(b'"run_after":"2027-01-01T00:00:00Z"'),
    _job(b'"run_after":"2027-01-01 00:00:00.1234567+01:00"'),
    _job(b'"run_after":"2027-01-01T00:00:00"'),
    _job(b'"run_after":"1700000000"'),
    _job(b'"run_after":1700000000'),
    _job(b'"idempotency_key":"k","traceparent":"00-' + b"a" * 32 + b"-" + b"b" * 16 + b'-01"'),
    _job(b'"idempotency_key":""'),
    _job(b'"queue":".."'),
    _job(b'"extra":1'),
    _job(b'"requires":{"k":1}'),
    b'{"queue":"q"}',
]


def _batch(job: bytes) -> list[bytes]:
    return [
        b'{"jobs":[' + job + b"]}",
        b' {"jobs":[' + job + b',{"kind":"z"}]}\n',
    ]


_OTHERS = [
    b'{"jobs":[{"kind":"a"}],"jobs":[]}',
    b'{"jobs":[],"jobs":[{"kind":"a"}]}',
    b'{"jobs":[{"kind":"a"}]}x',
    b'{"jobs":[{"kind":"a"}]}{}',
    b'{"jobs":[{"kind":"a"}]}\x00',
    b'\xef\xbb\xbf{"jobs":[{"kind":"a"}]}',
    b'{"jobs":[{"kind":"a",}]}',
    b'{"jobs":[{"kind":"a"},]}',
    b'{"jobs":[]}',
    b'{"jobs":{}}',
    b"[]",
    b"null",
]


def _shape(value: Any) -> Any:
    """``value`` with every type spelt out: 1 and 1.0 and True differ, as do key orders."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return (type(value).__name__, [(k, _shape(getattr(value, k))) for k in fields])
    if isinstance(value, dict):
        return ("dict", [(_shape(k), _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return (type(value).__name__, repr(value))


def _as_before(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return _shape(model.model_validate(_loads(raw)))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)


def _now(route: _Route, raw: bytes) -> Any:
    try:
        return _shape(_validate(route, raw))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)


@pytest.mark.parametrize("raw", [b for job in _BODIES for b in _batch(job)] + _OTHERS)
def test_a_batch_body_reads_as_it_did(raw: bytes) -> None:
    route = _route("/v1/jobs/batch")
    assert route.from_json
    assert _now(route, raw) == _as_before(BatchCreate, raw)


@pytest.mark.parametrize("raw", _BODIES)
def test_a_job_body_reads_as_it_did(raw: bytes) -> None:
    route = _route("/v1/jobs")
    assert route.from_json
    assert _now(route, raw) == _as_before(JobCreate, raw)


def test_constants_and_huge_exponents_are_refused_not_read() -> None:
    route = _route("/v1/jobs/batch")
    for value in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1.8e308"):
        raw = b'{"jobs":[{"kind":"a","payload":{"x":' + value + b"}}]}"
        with pytest.raises(orjson.JSONDecodeError):
            _validate(route, raw)


def test_other_routes_read_their_bodies_as_before() -> None:
    assert not _route("/v1/claims").from_json


_JSON_TYPES = {"int", "float", "bool", "str"}
_UNSAFE = {"enum", "tuple", "date", "time", "timedelta", "uuid", "decimal", "bytes", "set"}


def _schemas(node: Any) -> Any:
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


@pytest.mark.parametrize("model", sorted(READ_FROM_JSON, key=str))
def test_models_read_from_json_have_no_field_the_two_modes_read_apart(
    model: type[BaseModel],
) -> None:
    for node in _schemas(model.__pydantic_core_schema__):
        assert node["type"] not in _UNSAFE, node
        if node.get("strict"):
            assert node["type"] in _JSON_TYPES, node
