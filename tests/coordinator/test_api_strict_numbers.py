"""Numbers and flags in request bodies are JSON numbers and booleans, never coerced.

pydantic's lax mode, the default, takes ``"5"``, ``true`` and ``5.0`` as the
integer 5, ``"1"`` as the float 1.0, and ``"no"``, ``0`` or ``"off"`` as the flag
false. A client sending those has a bug (a number read from a form or an
environment variable and never converted, a flag written as a string); answered as
if it had sent what it meant, it never sees the bug. SPEC types these fields as
``int``, numbers and booleans: the wrong type is a 422 on the hot path and on
FastAPI's alike, and nothing is written.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api

NOT_INTS = ("5", True, 5.0)
NOT_FLOATS = ("5", True)
NOT_FLAGS = ("no", 0, "true")


async def _refused(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    for query in ("", "?via=plain"):  # the hot path, then FastAPI's (a query string)
        r = await api.client.post(f"{path}{query}", json=body, headers=headers)
        assert r.status_code == 422, (path, query, body, r.text)
        assert r.json()["error"]["code"] == "validation_error", r.text


@pytest.mark.parametrize("field", ["priority", "max_attempts"])
async def test_a_job_integer_that_is_not_a_json_integer_is_refused(api: Api, field: str) -> None:
    """``priority`` and ``max_attempts`` of "5", true or 5.0: 422, alone or in a batch."""
    for value in NOT_INTS:
        await _refused(api, "/v1/jobs", {"kind": "k", field: value}, api.admin)
        batch = {"jobs": [{"kind": "ok"}, {"kind": "k", field: value}]}
        await _refused(api, "/v1/jobs/batch", batch, api.admin)
    r = await api.client.get("/v1/jobs", headers=api.admin)
    assert r.json()["items"] == []  # not even the batch's valid job


@pytest.mark.parametrize("field", ["lease_seconds", "timeout_seconds"])
async def test_a_job_duration_that_is_not_a_json_number_is_refused(api: Api, field: str) -> None:
    """Durations of "5" or true: 422; a JSON integer is a number and is taken."""
    for value in NOT_FLOATS:
        await _refused(api, "/v1/jobs", {"kind": "k", field: value}, api.admin)
    job = await api.enqueue(**{field: 30})
    assert job["id"]
    r = await api.client.get("/v1/jobs", headers=api.admin)
    assert [item["id"] for item in r.json()["items"]] == [job["id"]]


async def test_an_agent_capacity_that_is_not_a_json_integer_is_refused(api: Api) -> None:
    """``capacity`` of "2", true or 2.0 registers no agent."""
    for value in NOT_INTS:
        await _refused(api, "/v1/agents", {"name": "a", "capacity": value}, api.admin)
    r = await api.client.get("/v1/agents", headers=api.admin)
    assert r.json()["items"] == []


async def test_claim_numbers_that_are_not_json_numbers_are_refused(api: Api) -> None:
    """``max_jobs`` and ``wait_seconds`` of the wrong type lease nothing, alone or in a report."""
    _, headers = await api.agent()
    job = await api.enqueue()
    for value in NOT_INTS:
        await _refused(api, "/v1/claims", {"max_jobs": value}, headers)
        await _refused(api, "/v1/reports", {"claim": {"max_jobs": value}}, headers)
    for value in NOT_FLOATS:
        await _refused(api, "/v1/claims", {"wait_seconds": value}, headers)
    assert (await api.job(job["id"]))["status"] == "queued"


async def test_a_retryable_flag_that_is_not_a_json_boolean_is_refused(api: Api) -> None:
    """``retryable: "no"`` (or 0) fails nothing: it is not false, and not true either."""
    _, headers = await api.agent()
    job = await api.enqueue(max_attempts=3)
    await api.claim(headers)
    before = await api.job(job["id"])
    for value in NOT_FLAGS:
        body = {"epoch": 1, "error": "x", "retryable": value}
        await _refused(api, f"/v1/jobs/{job['id']}/fail", body, headers)
        item = {"job_id": job["id"], "action": "fail", **body}
        await _refused(api, "/v1/reports", {"items": [item]}, headers)
    assert await api.job(job["id"]) == before


async def test_bulk_limits_and_schedule_flags_of_the_wrong_type_are_refused(api: Api) -> None:
    """A bulk call's ``limit`` of "5" and a schedule's ``paused`` of "true" change nothing."""
    cancelled = await api.enqueue()
    r = await api.client.post(f"/v1/jobs/{cancelled['id']}/cancel", headers=api.admin)
    assert r.json()["status"] == "cancelled"
    queued = await api.enqueue()
    for value in NOT_INTS:  # accepted, the retry would requeue one and the cancel end one
        await _refused(api, "/v1/jobs/retry", {"status": "cancelled", "limit": value}, api.admin)
        await _refused(api, "/v1/jobs/cancel", {"limit": value}, api.admin)
    assert (await api.job(cancelled["id"]))["status"] == "cancelled"
    assert (await api.job(queued["id"]))["status"] == "queued"
    for value in NOT_FLAGS:
        body = {"cron": "* * * * *", "job": {"kind": "k"}, "paused": value}
        for query in ("", "?via=plain"):
            r = await api.client.put(f"/v1/schedules/nightly{query}", json=body, headers=api.admin)
            assert r.status_code == 422, (value, r.text)
        body = {"cron": "* * * * *", "job": {"kind": "k", "priority": "5"}}
        r = await api.client.put("/v1/schedules/nightly", json=body, headers=api.admin)
        assert r.status_code == 422, r.text
    r = await api.client.get("/v1/schedules", headers=api.admin)
    assert r.json()["items"] == []


async def test_a_run_after_that_is_not_an_iso_8601_string_is_refused(api: Api) -> None:
    """SPEC's ``run_after`` is ISO-8601: a number (or a string of one) is not Unix seconds."""
    for value in (1_700_000_000, "1700000000", 1.7e9, True):
        await _refused(api, "/v1/jobs", {"kind": "k", "run_after": value}, api.admin)
    r = await api.client.get("/v1/jobs", headers=api.admin)
    assert r.json()["items"] == []
    job = await api.enqueue(run_after="2030-01-01T00:00:00Z")
    assert job["run_after"].startswith("2030-01-01T00:00:00")


NOT_DECIMAL = ("5_0", "+5", "5.0", " 5", "0x5", "\u0665", "9" * 5000)
"""Text pydantic's lax mode read as an integer (the first four), or that is none."""


async def test_a_query_integer_that_is_not_decimal_digits_is_refused(api: Api) -> None:
    """``GET /v1/jobs?limit=5_0`` (or ``+5``, ``5.0``) is 422 naming ``limit``, not 50 jobs."""
    for _ in range(2):
        await api.enqueue()
    for value in NOT_DECIMAL:
        r = await api.client.get("/v1/jobs", params={"limit": value}, headers=api.admin)
        assert r.status_code == 422, (value, r.text)
        error = r.json()["error"]
        assert error["code"] == "validation_error", r.text
        assert [e["loc"] for e in error["details"]["errors"]] == [["query", "limit"]], r.text
    r = await api.client.get("/v1/jobs", params={"limit": "01"}, headers=api.admin)
    assert len(r.json()["items"]) == 1  # decimal digits, a leading zero among them, are read
