"""Schedules (SPEC 11): the endpoints, validation, one job per occurrence, downtime and pause."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fleet_coordinator.services import NewJob, enqueue, fire_due
from structlog.testing import capture_logs

from .conftest import Api

START = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC).timestamp()


async def _put(api: Api, name: str, **body: Any) -> Any:
    body.setdefault("job", {"kind": "report", "queue": "cron"})
    return await api.client.put(f"/v1/schedules/{name}", json=body, headers=api.admin)


async def _scheduled(api: Api, name: str) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/jobs?kind=report&limit=1000", headers=api.admin)
    return [j for j in r.json()["items"] if j["schedule"] == name]


async def test_a_schedule_is_created_replaced_listed_and_deleted(api: Api) -> None:
    """PUT creates (201) then replaces (200); GET, list and DELETE behave as their verbs."""
    api.clock.set(START)
    r = await _put(api, "nightly", cron="0 3 * * *", timezone="Europe/Berlin")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["next_run_at"] == "2026-05-05T01:00:00Z"
    assert created["last_run_at"] is None
    assert created["paused"] is False
    assert created["job"]["kind"] == "report"
    r = await _put(api, "nightly", cron="15 3 * * *", timezone="Europe/Berlin")
    assert r.status_code == 200
    assert r.json()["next_run_at"] == "2026-05-05T01:15:00Z"
    r = await api.client.get("/v1/schedules", headers=api.admin)
    assert [s["name"] for s in r.json()["items"]] == ["nightly"]
    assert (await api.client.delete("/v1/schedules/nightly", headers=api.admin)).status_code == 204
    assert (await api.client.get("/v1/schedules/nightly", headers=api.admin)).status_code == 404
    assert (await api.client.delete("/v1/schedules/nightly", headers=api.admin)).status_code == 404


@pytest.mark.parametrize(
    ("cron", "timezone"),
    [
        ("0 0 * * * *", "UTC"),  # six fields (seconds)
        ("@daily", "UTC"),
        ("0 0 * JAN *", "UTC"),  # names
        ("0 0 L * *", "UTC"),
        ("0 0 1#2 * *", "UTC"),
        ("61 * * * *", "UTC"),
        ("0 0 * * *", "Mars/Olympus"),
        # Files of the zone database that are no IANA name: each host's own zone, a
        # default rule set, the POSIX and leap-second copies (all were accepted).
        ("0 0 * * *", "localtime"),
        ("0 0 * * *", "posixrules"),
        ("0 0 * * *", "posix/Europe/Paris"),
        ("0 0 * * *", "right/UTC"),
    ],
)
async def test_cron_and_timezone_outside_the_spec_are_refused(
    api: Api, cron: str, timezone: str
) -> None:
    """Anything but five fields of numbers, *, ranges, lists and steps, or an unknown zone: 422
    naming the field at fault."""
    r = await _put(api, "bad", cron=cron, timezone=timezone)
    assert r.status_code == 422, r.text
    field = "cron" if timezone == "UTC" else "timezone"
    assert r.json()["error"]["details"]["field"] == field
    assert (await api.client.get("/v1/schedules/bad", headers=api.admin)).status_code == 404


@pytest.mark.parametrize(
    ("cron", "named"),
    [
        ("*/60 * * * *", "minute field '*/60'"),
        ("5/60 * * * *", "minute field '5/60'"),
        ("0 */24 * * *", "hour field '*/24'"),
        ("0 */25 * * *", "hour field '*/25'"),
        ("0 0 1-31/31 * *", "day of month field '1-31/31'"),
        ("0 0 1 */12 *", "month field '*/12'"),
        ("0 0 * * */7", "day of week field '*/7'"),
        ("1,*/" + "9" * 150 + " * * * *", "minute field"),
    ],
)
async def test_a_step_past_its_fields_range_is_refused(api: Api, cron: str, named: str) -> None:
    """``*/60`` minutes or ``*/24`` hours match the field's first value only (once an hour,
    a day): 422 naming the field and the step, nothing stored; the largest steps pass."""
    r = await _put(api, "bad", cron=cron)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"]["field"] == "cron", r.text
    assert named in error["message"], r.text
    assert "past the field's range" in error["message"], r.text
    assert (await api.client.get("/v1/schedules/bad", headers=api.admin)).status_code == 404
    assert (await _put(api, "widest", cron="*/59 */23 */30 */11 */6")).status_code == 201


async def test_a_schedule_stored_with_a_step_now_refused_keeps_firing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``*/60`` schedule stored before steps were checked is listed and fires hourly
    as before; only a PUT of it is refused."""
    from fleet_coordinator.domain.cron import CronSchedule

    api.clock.set(START)
    with monkeypatch.context() as before:  # the check as it was: cronsim's own
        before.setattr(CronSchedule, "parse_new", CronSchedule.parse)
        assert (await _put(api, "hourly", cron="*/60 * * * *")).status_code == 201
    r = await api.client.get("/v1/schedules/hourly", headers=api.admin)
    assert r.json()["next_run_at"] == "2026-05-04T11:00:00Z"
    api.clock.set(datetime(2026, 5, 4, 11, 0, 1, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    assert (await _put(api, "hourly", cron="*/60 * * * *")).status_code == 422


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("idempotency_key", "x"),
        ("run_after", "2030-01-01T00:00:00Z"),
        ("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
    ],
)
async def test_a_scheduled_job_may_not_carry_a_key_a_due_time_or_a_trace(
    api: Api, field: str, value: str
) -> None:
    """The occurrence decides the idempotency key, the time and the trace: 422 naming the field,
    nothing stored. (A traceparent was accepted and silently dropped.)"""
    r = await _put(api, "s", cron="* * * * *", job={"kind": "report", field: value})
    assert r.status_code == 422, r.text
    [detail] = r.json()["error"]["details"]["errors"]
    assert detail["loc"] == ["body", "job"]
    assert f"a scheduled job takes no {field}" in detail["msg"]
    assert (await api.client.get("/v1/schedules/s", headers=api.admin)).status_code == 404


async def test_the_schema_of_a_scheduled_job_is_what_a_schedule_keeps(api: Api) -> None:
    """OpenAPI's ``ScheduledJob`` lists exactly the template fields a schedule stores and fires."""
    from fleet_coordinator.services.schedules import TEMPLATE_FIELDS

    schema = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    assert set(schema["ScheduledJob"]["properties"]) == set(TEMPLATE_FIELDS)
    job = {"kind": "report", "queue": "cron", "payload": {"a": 1}, "priority": 2, "lock": "l"}
    job |= {"max_attempts": 4, "lease_seconds": 5.0, "timeout_seconds": 6.0, "requires": {"a": "b"}}
    assert set(job) == set(TEMPLATE_FIELDS)
    r = await _put(api, "s", cron="* * * * *", job=job)
    assert r.status_code == 201, r.text
    assert r.json()["job"] == job


@pytest.mark.parametrize("segment", ["%2E", "%2E%2E", "%2e%2E"])
async def test_the_names_dot_and_dot_dot_are_refused(api: Api, segment: str) -> None:
    """The names "." and ".." (percent-encoded here, as a raw request reaches the route) are
    refused with 422 and nothing is stored: ordinary clients drop such a segment, so the
    schedule could not be paused or deleted."""
    body = {"cron": "* * * * *", "job": {"kind": "report"}}
    r = await api.client.put(f"/v1/schedules/{segment}", json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["details"]["errors"][0]["loc"] == ["path", "name"]
    assert (await api.client.get("/v1/schedules", headers=api.admin)).json()["items"] == []
    assert (await _put(api, ".x", cron="* * * * *")).status_code == 201  # a dot inside is fine


async def test_each_occurrence_is_enqueued_once_and_carries_the_schedule(api: Api) -> None:
    """Sweeps before, at and after an occurrence enqueue exactly one job for it."""
    api.clock.set(START)
    assert (await _put(api, "five", cron="*/5 * * * *")).status_code == 201
    assert await fire_due(api.co) == 0
    api.clock.set(datetime(2026, 5, 4, 10, 5, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    assert await fire_due(api.co) == 0
    (job,) = await _scheduled(api, "five")
    assert job["queue"] == "cron"
    r = await api.client.get("/v1/schedules/five", headers=api.admin)
    assert r.json()["last_run_at"] == "2026-05-04T10:05:00Z"
    assert r.json()["next_run_at"] == "2026-05-04T10:10:00Z"


async def test_after_a_downtime_only_the_latest_missed_occurrence_runs(api: Api) -> None:
    """An hour without sweeps: one job, for the latest occurrence; eleven counted as skipped."""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    api.clock.set(datetime(2026, 5, 4, 10, 5, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    api.clock.set(datetime(2026, 5, 4, 11, 7, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    jobs = await _scheduled(api, "five")
    assert len(jobs) == 2
    r = await api.client.get("/v1/schedules/five", headers=api.admin)
    assert r.json()["last_run_at"] == "2026-05-04T11:05:00Z"
    metrics = (await api.client.get("/metrics")).text
    assert 'fleet_schedule_occurrences_total{result="fired"} 2.0' in metrics
    assert 'fleet_schedule_occurrences_total{result="skipped"} 11.0' in metrics


async def test_a_paused_schedule_fires_nothing_and_resuming_makes_nothing_up(api: Api) -> None:
    """Paused through occurrences: none enqueued, then or after resume; the next one fires."""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    r = await api.client.post("/v1/schedules/five/pause", headers=api.admin)
    assert r.json()["paused"] is True
    assert r.json()["next_run_at"] == "2026-05-04T10:05:00Z"
    api.clock.set(datetime(2026, 5, 4, 10, 31, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 0
    r = await api.client.post("/v1/schedules/five/resume", headers=api.admin)
    assert r.json()["next_run_at"] == "2026-05-04T10:35:00Z"
    assert await fire_due(api.co) == 0
    api.clock.set(datetime(2026, 5, 4, 10, 35, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    assert len(await _scheduled(api, "five")) == 1


async def _schedule(api: Api, name: str) -> Any:
    r = await api.client.get(f"/v1/schedules/{name}", headers=api.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_unchanged_put_keeps_the_occurrence_that_is_due(api: Api) -> None:
    """The same schedule put again (a deploy re-applying it) after 10:05 is due and before a
    sweep fired it: 10:05 stays next and the next sweep enqueues it, once. (It jumped to
    10:10 and 10:05 was never enqueued.)"""
    api.clock.set(START)
    assert (await _put(api, "five", cron="*/5 * * * *")).status_code == 201
    api.clock.set(datetime(2026, 5, 4, 10, 5, 2, tzinfo=UTC).timestamp())
    r = await _put(api, "five", cron="*/5 * * * *")
    assert r.status_code == 200, r.text
    assert (r.json()["next_run_at"], r.json()["last_run_at"]) == ("2026-05-04T10:05:00Z", None)
    assert r.json()["updated_at"] == "2026-05-04T10:05:02Z"
    # Only the template changed (and the cron's spacing): still the same occurrences.
    r = await _put(api, "five", cron="*/5  *  * * *", job={"kind": "report", "priority": 3})
    assert r.json()["next_run_at"] == "2026-05-04T10:05:00Z"
    assert await fire_due(api.co) == 1
    assert await fire_due(api.co) == 0
    (job,) = await _scheduled(api, "five")
    assert job["priority"] == 3  # the template in force when it fired
    s = await _schedule(api, "five")
    assert (s["last_run_at"], s["next_run_at"]) == ("2026-05-04T10:05:00Z", "2026-05-04T10:10:00Z")


@pytest.mark.parametrize(
    ("cron", "timezone"), [("*/10 * * * *", "UTC"), ("*/5 * * * *", "Europe/London")]
)
async def test_a_put_that_changes_the_cron_or_zone_starts_from_now(
    api: Api, cron: str, timezone: str
) -> None:
    """Another cron or time zone is a schedule in another form: it fires from the PUT on.
    The old form's occurrence due before it (10:05), not yet swept, fell due while that form
    was in force: it is enqueued once, as a pause keeps it. (It was dropped.)"""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    api.clock.set(datetime(2026, 5, 4, 10, 5, 2, tzinfo=UTC).timestamp())
    r = await _put(api, "five", cron=cron, timezone=timezone)
    assert r.status_code == 200, r.text
    assert r.json()["next_run_at"] == "2026-05-04T10:05:00Z"
    assert await fire_due(api.co) == 1
    assert await fire_due(api.co) == 0
    s = await _schedule(api, "five")
    assert (s["last_run_at"], s["next_run_at"]) == ("2026-05-04T10:05:00Z", "2026-05-04T10:10:00Z")
    api.clock.set(datetime(2026, 5, 4, 10, 10, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    created = sorted(j["created_at"] for j in await _scheduled(api, "five"))
    assert created == ["2026-05-04T10:05:02Z", "2026-05-04T10:10:00Z"]


async def test_a_cron_change_before_anything_is_due_owes_nothing(api: Api) -> None:
    """Changed at 10:03, nothing of the old form was due: the new form's first is next."""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    api.clock.set(datetime(2026, 5, 4, 10, 3, tzinfo=UTC).timestamp())
    r = await _put(api, "five", cron="*/10 * * * *")
    assert r.json()["next_run_at"] == "2026-05-04T10:10:00Z"
    api.clock.set(datetime(2026, 5, 4, 10, 9, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 0


async def _pause(api: Api, name: str, how: str, paused: bool) -> Any:
    if how == "put":
        r = await _put(api, name, cron="*/5 * * * *", paused=paused)
    else:
        verb = "pause" if paused else "resume"
        r = await api.client.post(f"/v1/schedules/{name}/{verb}", headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["paused"] is paused
    return r.json()


@pytest.mark.parametrize("how", ["post", "put"])
async def test_a_pause_resumed_at_once_keeps_the_occurrence_due_before_it(
    api: Api, how: str
) -> None:
    """Paused and resumed (by their endpoints or by PUTs of ``paused``) after 10:05 is due and
    before a sweep: 10:05 fell due while the schedule was active, and is enqueued once. (It
    was dropped.)"""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    api.clock.set(datetime(2026, 5, 4, 10, 5, 2, tzinfo=UTC).timestamp())
    await _pause(api, "five", how, True)
    assert await fire_due(api.co) == 0
    resumed = await _pause(api, "five", how, False)
    assert resumed["next_run_at"] == "2026-05-04T10:05:00Z"
    assert await fire_due(api.co) == 1
    assert await fire_due(api.co) == 0
    assert [j["created_at"] for j in await _scheduled(api, "five")] == ["2026-05-04T10:05:02Z"]
    s = await _schedule(api, "five")
    assert (s["last_run_at"], s["next_run_at"]) == ("2026-05-04T10:05:00Z", "2026-05-04T10:10:00Z")


@pytest.mark.parametrize("how", ["post", "put"])
async def test_a_long_pause_keeps_the_occurrence_due_before_it_and_makes_up_none_after(
    api: Api, how: str
) -> None:
    """Paused just after 10:05 fell due, resumed at 10:31: 10:05 is enqueued after the resume,
    10:10 to 10:30 (missed while paused) are not, and 10:35 fires as usual."""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    api.clock.set(datetime(2026, 5, 4, 10, 5, 2, tzinfo=UTC).timestamp())
    await _pause(api, "five", how, True)
    for minute in range(10, 35, 5):
        api.clock.set(datetime(2026, 5, 4, 10, minute, tzinfo=UTC).timestamp())
        assert await fire_due(api.co) == 0
    api.clock.set(datetime(2026, 5, 4, 10, 31, tzinfo=UTC).timestamp())
    await _pause(api, "five", how, False)
    assert await fire_due(api.co) == 1
    assert await fire_due(api.co) == 0
    s = await _schedule(api, "five")
    assert (s["last_run_at"], s["next_run_at"]) == ("2026-05-04T10:05:00Z", "2026-05-04T10:35:00Z")
    api.clock.set(datetime(2026, 5, 4, 10, 35, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    created = sorted(j["created_at"] for j in await _scheduled(api, "five"))
    assert created == ["2026-05-04T10:31:00Z", "2026-05-04T10:35:00Z"]  # 10:05, then 10:35


async def test_a_deleted_schedule_fires_nothing(api: Api) -> None:
    """Deleting stops the schedule; what it enqueued stays."""
    api.clock.set(START)
    await _put(api, "five", cron="*/5 * * * *")
    await api.client.delete("/v1/schedules/five", headers=api.admin)
    api.clock.set(datetime(2026, 5, 4, 10, 5, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 0


async def test_a_schedule_that_cannot_fire_does_not_hold_back_the_others(api: Api) -> None:
    """An occurrence key taken by a job with another body: that schedule logs, the rest fire.

    Such a job could be enqueued through the API before ``schedule:`` keys were
    reserved. Before, its conflict ended the whole sweep on every tick, and every
    schedule named after it lost its occurrences.
    """
    api.clock.set(START)
    for name in ("a-poison", "b-victim"):
        assert (await _put(api, name, cron="* * * * *")).status_code == 201
    squat = NewJob(
        kind="squat", payload={}, idempotency_key="schedule:a-poison:2026-05-04T10:01:00+00:00"
    )
    await enqueue(api.co, squat)
    api.clock.set(datetime(2026, 5, 4, 10, 1, 2, tzinfo=UTC).timestamp())
    with capture_logs() as logs:
        assert await fire_due(api.co) == 1
    assert len(await _scheduled(api, "b-victim")) == 1
    [failed] = [e for e in logs if e["event"] == "coordinator.schedule.fire_failed"]
    assert failed["name"] == "a-poison"
    assert failed["code"] == "idempotency_conflict"
    api.clock.set(datetime(2026, 5, 4, 10, 2, 2, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 2  # the next occurrence of each


async def test_an_enqueue_may_not_use_a_schedule_occurrence_key(api: Api) -> None:
    """Keys starting with ``schedule:`` are the scheduler's: 422 alone or in a batch, nothing
    stored."""
    key = "schedule:nightly:2026-05-05T01:00:00+00:00"
    r = await api.client.post(
        "/v1/jobs", json={"kind": "report", "idempotency_key": key}, headers=api.admin
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    [detail] = error["details"]["errors"]
    assert detail["loc"] == ["body", "idempotency_key"]
    assert "reserved for the occurrences of schedules" in detail["msg"]
    jobs = [{"kind": "report"}, {"kind": "report", "idempotency_key": key}]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 422, r.text
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []
    r = await api.client.post(
        "/v1/jobs", json={"kind": "report", "idempotency_key": "Schedule:x"}, headers=api.admin
    )
    assert r.status_code == 201, r.text  # another key: its id is not an occurrence's


async def test_a_downtime_ending_in_a_repeated_hour_enqueues_only_the_latest_missed_at_once(
    api: Api,
) -> None:
    """Down from 02:00 CEST into the second pass of the repeated hour (02:05 CET): the
    first sweep enqueues each schedule's latest missed occurrence, from the first pass,
    and the repeated wall times fire no more until 03:00 CET."""

    def utc(hour: int, minute: int, day: int = 31) -> float:
        return datetime(2027, 10, day, hour, minute, tzinfo=UTC).timestamp()

    api.clock.set(utc(23, 50, day=30))
    crons = {"minutely": "* * * * *", "quarterly": "*/15 * * * *", "daily": "30 2 * * *"}
    for name, cron in crons.items():
        assert (await _put(api, name, cron=cron, timezone="Europe/Berlin")).status_code == 201
    api.clock.set(utc(0, 0))  # 02:00 CEST, the last sweep before the downtime
    assert await fire_due(api.co) == 2  # minutely and quarterly, for 00:00Z
    api.clock.set(utc(1, 5))  # 02:05 CET: the clocks went back at 01:00Z
    assert await fire_due(api.co) == 3
    latest = {
        name: (await api.client.get(f"/v1/schedules/{name}", headers=api.admin)).json()
        for name in crons
    }
    assert {name: s["last_run_at"] for name, s in latest.items()} == {
        "minutely": "2027-10-31T00:59:00Z",  # 02:59 CEST
        "quarterly": "2027-10-31T00:45:00Z",
        "daily": "2027-10-31T00:30:00Z",
    }
    assert {name: s["next_run_at"] for name, s in latest.items()} == {
        "minutely": "2027-10-31T02:00:00Z",  # 03:00 CET
        "quarterly": "2027-10-31T02:00:00Z",
        "daily": "2027-11-01T01:30:00Z",
    }
    for minute in range(6, 60):
        api.clock.set(utc(1, minute))
        assert await fire_due(api.co) == 0, minute
    api.clock.set(utc(2, 0))
    assert await fire_due(api.co) == 2
    counts = {name: len(await _scheduled(api, name)) for name in crons}
    assert counts == {"minutely": 3, "quarterly": 3, "daily": 1}
    metrics = (await api.client.get("/metrics")).text
    # minutely skipped 00:01Z-00:58Z; quarterly 00:15Z and 00:30Z
    assert 'fleet_schedule_occurrences_total{result="skipped"} 60.0' in metrics
