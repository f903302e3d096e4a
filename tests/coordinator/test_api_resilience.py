"""Store outages, cancel-on-expiry and the structured log events."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_coordinator.services import reap_once, reaper_tick
from fleet_datastore import StoreUnavailableError
from structlog.testing import capture_logs

from .conftest import Api


def _down(*args: Any, **kwargs: Any) -> Any:
    raise StoreUnavailableError("down for the test")


async def test_store_outage_answers_503_in_the_error_shape(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the store cannot be reached, reads and writes answer 503, and /readyz too."""
    job = await api.enqueue()
    api.co.job_cache.evict(job["id"])
    monkeypatch.setattr(api.co.containers.jobs, "get", _down)
    monkeypatch.setattr(api.co.containers.jobs, "create", _down)
    monkeypatch.setattr(api.co.containers.store, "ping", _down)
    r = await api.client.get(f"/v1/jobs/{job['id']}", headers=api.admin)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "store_unavailable"
    r = await api.client.post("/v1/jobs", json={"kind": "k"}, headers=api.admin)
    assert r.status_code == 503
    assert (await api.client.get("/readyz")).status_code == 503


async def test_expiry_of_a_cancel_requested_lease_cancels_the_job(api: Api) -> None:
    """A cancel-requested job whose lease expires becomes cancelled, not requeued."""
    _, headers = await api.agent()
    job = await api.enqueue(lease_seconds=10)
    await api.claim(headers)
    await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    api.clock.advance(10)
    assert await reap_once(api.co) == 1
    stored = await api.job(job["id"])
    assert stored["status"] == "cancelled"
    assert stored["runs"][-1]["outcome"] == "lease_expired"


async def test_last_attempt_expiring_fails_the_job(api: Api) -> None:
    """A lease expiring on the last attempt fails the job."""
    _, headers = await api.agent()
    job = await api.enqueue(lease_seconds=10, max_attempts=1)
    await api.claim(headers)
    api.clock.advance(10)
    await reap_once(api.co)
    assert (await api.job(job["id"]))["status"] == "failed"


async def test_state_changes_are_logged_with_ids_but_no_payloads_or_tokens(api: Api) -> None:
    """Each state change logs a dotted event with job id, agent id and epoch only."""
    agent_id, headers = await api.agent()
    with capture_logs() as logs:
        job = await api.enqueue(payload={"secret": "s3cr3t"})
        await api.claim(headers)
        await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    events = [entry["event"] for entry in logs]
    assert events == [
        "coordinator.job.enqueued",
        "coordinator.job.claimed",
        "coordinator.job.completed",
    ]
    claimed = logs[1]
    assert claimed["job_id"] == job["id"]
    assert claimed["agent_id"] == agent_id
    assert claimed["epoch"] == 1
    text = repr(logs)
    assert "s3cr3t" not in text
    assert headers["Authorization"].split()[1] not in text


async def test_an_unexpected_crash_answers_500_with_an_error_id_the_log_carries(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is answered 500 internal_error (never 503) with an error id; the log line
    carries that id and the traceback, and neither the payload nor the token."""
    from fleet_coordinator.api import routes_jobs

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(routes_jobs, "enqueue", crash)
    with capture_logs() as logs:
        r = await api.client.post(
            "/v1/jobs", json={"kind": "k", "payload": {"secret": "s3cr3t"}}, headers=api.admin
        )
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error"
    error_id = error["details"]["error_id"]
    assert "retry-after" not in r.headers
    [entry] = logs
    assert entry["event"] == "coordinator.request.crashed"
    assert entry["error_id"] == error_id
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True  # structlog renders the traceback of the exception
    text = repr(logs)
    assert "s3cr3t" not in text
    assert api.admin["Authorization"].split()[1] not in text


async def test_a_store_error_that_is_not_an_outage_is_a_defect_not_a_503(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an unavailable store answers 503 (with Retry-After); any other store error
    escaping a service is a bug and answers 500."""
    from fleet_datastore import PreconditionFailedError

    job = await api.enqueue()
    api.co.job_cache.evict(job["id"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise PreconditionFailedError("escaped by mistake")

    monkeypatch.setattr(api.co.containers.jobs, "get", broken)
    r = await api.client.get(f"/v1/jobs/{job['id']}", headers=api.admin)
    assert r.status_code == 500, r.text
    assert r.json()["error"]["code"] == "internal_error"
    monkeypatch.setattr(api.co.containers.jobs, "get", _down)
    r = await api.client.get(f"/v1/jobs/{job['id']}", headers=api.admin)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"


async def test_the_reaper_logs_what_the_store_said(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coordinator.reaper.failed`` carries the store error's own text (before: the type
    name, ``store error: StoreUnavailableError``, whatever had failed)."""

    def full(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("sqlite: database or disk is full")

    monkeypatch.setattr(api.co.containers.jobs, "query", full)
    with capture_logs() as logs:
        await reaper_tick(api.co)
    failed = {e["sweep"]: e for e in logs if e["event"] == "coordinator.reaper.failed"}
    assert failed["reap_once"]["error"] == "sqlite: database or disk is full"
    assert failed["reap_once"]["code"] == "store_unavailable"
    assert failed["reap_once"]["log_level"] == "warning"


async def test_answers_503_are_logged_once_a_second_with_the_store_text(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request answered 503 ``store_unavailable`` logs a warning naming its route
    template and what the store said, at most one a second per replica, the next one
    counting those left out (before: nothing was logged). The answer itself says only
    that the store is unavailable: the store's text can name a file or a host."""
    agent_id, agent = await api.agent()
    job = await api.enqueue()
    api.co.job_cache.evict(job["id"])
    api.co.agent_cache.evict(agent_id)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("sqlite: database or disk is full (/var/lib/fleet/fleet.db)")

    for method in ("get", "create"):
        monkeypatch.setattr(api.co.containers.jobs, method, full)
    monkeypatch.setattr(api.co.containers.agents, "get", full)
    monkeypatch.setattr(api.co.containers.store, "ping", full)
    answers = []
    with capture_logs() as logs:
        answers.append(await api.client.get(f"/v1/jobs/{job['id']}", headers=api.admin))
        for _ in range(3):  # the hot path; within the same second: counted, not logged
            body = {"kind": "k", "payload": {"secret": "s3cr3t"}}
            answers.append(await api.client.post("/v1/jobs", json=body, headers=api.admin))
        api.clock.advance(1.0)
        answers.append(await api.client.post("/v1/jobs", json={"kind": "k"}, headers=api.admin))
        api.clock.advance(1.0)
        answers.append(await api.client.post("/v1/claims", json={}, headers=agent))  # the guard
        api.clock.advance(1.0)
        answers.append(await api.client.get("/readyz"))
    assert [r.status_code for r in answers] == [503] * 7
    for r in answers[:-1]:
        assert r.json()["error"] == {
            "code": "store_unavailable",
            "message": "the store is unavailable; retry later",
            "details": {},
        }
    lines = [e for e in logs if e["event"] == "coordinator.request.unavailable"]
    assert [(e["method"], e["route"], e["suppressed"]) for e in lines] == [
        ("GET", "/v1/jobs/{job_id}", 0),
        ("POST", "/v1/jobs", 3),
        ("POST", "/v1/claims", 0),
        ("GET", "/readyz", 0),
    ]
    for line in lines:
        assert line["error"] == "sqlite: database or disk is full (/var/lib/fleet/fleet.db)"
        assert line["log_level"] == "warning"
    text = repr(logs)
    assert "s3cr3t" not in text
    for headers in (api.admin, agent):
        assert headers["Authorization"].split()[1] not in text
