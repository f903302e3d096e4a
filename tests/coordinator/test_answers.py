"""The routes that answer with ``convert.Answer`` write the bytes their response models would.

Enqueue, claim, reports, complete, fail and release encode plain values with
orjson instead of building ``JobOut``/``ReportOut`` and serialising them
(``api/convert.py``). Clients, the OpenAPI document and SPEC.md know only the
models, so here every value a job can hold is encoded both ways and compared byte
for byte: datetimes (whole seconds, far future), floats, unicode and control
characters, nested results, every optional field set and unset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from fleet_coordinator import domain
from fleet_coordinator.api.convert import Answer, job_json, lease_json
from fleet_coordinator.api.models import JobItems, JobOut, LeaseOut, ReportItemOut
from fleet_coordinator.domain import JobState
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import Response

_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
# Whole seconds and fractions, from 1970 to the end of the year 9998 (run_after may be far off).
_MOMENTS = st.integers(min_value=0, max_value=253_370_764_799).map(float) | st.floats(
    min_value=0, max_value=253_370_764_799, allow_nan=False
)


def _model_bytes(model: type[Any], value: Any) -> bytes:
    """What the route answered before: the model built from the values, serialised."""
    built = model.model_validate(value)
    return bytes(built.__pydantic_serializer__.to_json(built, by_alias=True))


def _job(
    *,
    payload: dict[str, Any],
    result: Any,
    created: float,
    run_after: float,
    lock: str | None,
    claimed: bool,
    text: str,
) -> JobState:
    job = domain.enqueue(
        job_id="01JABCDEFGHJKMNPQRSTVWXYZ",
        kind=text or "k",
        payload=payload,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01" if lock else None,
        now=created,
        run_after=run_after,
        requires={text: text} if text else None,
        lock=lock,
    )
    if claimed:
        labels = {text: text} if text else {}
        leased = domain.claim(job, "agent-" + text, "run-1", run_after, labels=labels)
        assert not isinstance(leased, domain.Rejected)
        job = leased
    if result is not None:
        job = dataclasses.replace(
            job, result=result, last_error=text or None, cancel_requested=True
        )
    return job


@settings(max_examples=300, deadline=None)
@given(
    payload=st.dictionaries(st.text(), _JSON, max_size=5),
    result=_JSON,
    created=_MOMENTS,
    later=_MOMENTS,
    lock=st.none() | st.text(min_size=1),
    claimed=st.booleans(),
    text=st.text(),
)
def test_a_job_and_its_lease_encode_as_their_models_would(
    payload: dict[str, Any],
    result: Any,
    created: float,
    later: float,
    lock: str | None,
    claimed: bool,
    text: str,
) -> None:
    job = _job(
        payload=payload,
        result=result,
        created=created,
        run_after=max(created, later),
        lock=lock,
        claimed=claimed,
        text=text,
    )
    shown = job_json(job)
    assert Answer(shown).body == _model_bytes(JobOut, shown)
    items = {"items": [shown, shown]}
    assert Answer(items).body == _model_bytes(JobItems, items)
    if job.lease is not None:
        lease = lease_json(job.lease)
        assert Answer(lease).body == _model_bytes(LeaseOut, lease)


def test_report_items_encode_as_their_model_would() -> None:
    """Each shape of an item's answer (a failure, a heartbeat's and another action's success)
    encodes as its model would, the fields that do not apply left out rather than null."""
    job = _job(
        payload={}, result=None, created=1.5, run_after=1.5, lock=None, claimed=True, text="é"
    )
    assert job.lease is not None
    failed = {
        "job_id": job.id,
        "ok": False,
        "error": {"code": "lease_lost", "message": "the lease is gone \u2028"},
    }
    beat = {
        "job_id": job.id,
        "ok": True,
        "status": "leased",
        "lease": lease_json(job.lease),
        "cancel_requested": False,
    }
    done = {"job_id": job.id, "ok": True, "status": "succeeded"}
    for item in (failed, beat, done):
        assert Answer(item).body == _model_bytes(ReportItemOut, item)
        assert b"null" not in Answer(item).body


def test_an_answer_keeps_its_status_and_says_it_is_json() -> None:
    answer = Answer({"items": []}, status_code=201)
    assert answer.status_code == 201
    assert dict(answer.raw_headers)[b"content-type"] == b"application/json"
    assert orjson.loads(answer.body) == {"items": []}


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_an_answer_is_what_starlettes_json_response_of_its_bytes_would_be(status: int) -> None:
    """``Answer`` sets its attributes itself: the same status, body, headers (in order)
    and background as Starlette's ``Response`` built from the same bytes."""
    content = {"id": "j1", "payload": {"é": [1, 2.5, None]}}
    answer = Answer(content, status_code=status)
    starlette = Response(orjson.dumps(content), status, media_type="application/json")
    assert answer.status_code == starlette.status_code
    assert answer.body == starlette.body
    assert answer.raw_headers == starlette.raw_headers
    assert answer.background is starlette.background is None
    assert answer.headers == starlette.headers
