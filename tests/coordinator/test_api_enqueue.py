"""Enqueue over HTTP: idempotency keys, batches (all or nothing), listing and queue stats."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from .conftest import Api


async def test_same_idempotency_key_and_body_returns_the_same_job(api: Api) -> None:
    """A repeated create with the same key and body answers 200 with the original job."""
    body = {"kind": "build", "payload": {"a": 1}, "idempotency_key": "k-1"}
    first = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    again = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    listed = await api.client.get("/v1/jobs", headers=api.admin)
    assert len(listed.json()["items"]) == 1


async def test_same_idempotency_key_with_another_body_is_a_conflict(api: Api) -> None:
    """A different body under a used key answers 409 and the original job is unchanged."""
    body = {"kind": "build", "payload": {"a": 1}, "idempotency_key": "k-1"}
    first = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    other = await api.client.post("/v1/jobs", json={**body, "payload": {"a": 2}}, headers=api.admin)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert (await api.job(first.json()["id"]))["payload"] == {"a": 1}


async def test_a_retry_naming_the_same_instant_at_another_offset_is_the_same_job(
    api: Api,
) -> None:
    """``run_after`` is an instant: the same one written at another UTC offset, or in
    another form of the same body (defaults spelt out, keys reordered, 30 for 30.0), is
    a replay (200, the same job), alone or in a batch; another instant is 409."""
    first = {"kind": "k", "idempotency_key": "at", "run_after": "2030-01-01T00:00:00Z"}
    created = await api.client.post("/v1/jobs", json=first, headers=api.admin)
    assert created.status_code == 201, created.text
    same = [
        {**first, "run_after": "2030-01-01T01:00:00+01:00"},
        {**first, "run_after": "2029-12-31T19:00:00.000-05:00"},
        {**first, "run_after": "2030-01-01T00:00:00+00:00", "queue": "default", "priority": 0},
    ]
    for body in same:
        for path in ("/v1/jobs", "/v1/jobs?via=plain"):
            r = await api.client.post(path, json=body, headers=api.admin)
            assert r.status_code == 200, (body, r.text)
            assert r.json() == created.json()
        r = await api.client.post("/v1/jobs/batch", json={"jobs": [body]}, headers=api.admin)
        assert (r.status_code, r.json()["items"]) == (201, [created.json()]), r.text
    later = {**first, "run_after": "2030-01-01T00:00:00+01:00"}  # an hour earlier, in fact
    r = await api.client.post("/v1/jobs", json=later, headers=api.admin)
    assert r.status_code == 409, r.text
    assert len((await api.client.get("/v1/jobs", headers=api.admin)).json()["items"]) == 1


async def test_a_job_keyed_at_an_offset_before_instants_were_compared_still_replays(
    api: Api,
) -> None:
    """A job stored with the hash of its body as sent (``+01:00`` kept), as coordinators
    before this one stored it, is replayed by the same body, not refused with 409."""
    import hashlib

    from fleet_coordinator.api.models import JobCreate
    from fleet_coordinator.services import NewJob, enqueue

    body = {"kind": "k", "idempotency_key": "old", "run_after": "2030-01-01T01:00:00+01:00"}
    # The hash as those coordinators took it: the validated body, its offset kept.
    sent_as = JobCreate.model_validate(body).model_dump(mode="json", exclude={"traceparent"})
    assert sent_as["run_after"] == "2030-01-01T01:00:00+01:00"
    old_hash = hashlib.sha256(json.dumps(sent_as, sort_keys=True).encode()).hexdigest()
    new = NewJob(
        kind="k", payload={}, run_after=1893456000.0, idempotency_key="old", request_hash=old_hash
    )
    stored, _ = await enqueue(api.co, new)
    r = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == stored.id
    r = await api.client.post("/v1/jobs/batch", json={"jobs": [body]}, headers=api.admin)
    assert r.status_code == 201, r.text
    assert [j["id"] for j in r.json()["items"]] == [stored.id]


async def test_batch_creates_every_job_in_order(api: Api) -> None:
    """A valid batch answers 201 with one job per entry, in the order given."""
    jobs = [{"kind": "k", "payload": {"i": i}} for i in range(150)]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201, r.text
    assert [j["payload"]["i"] for j in r.json()["items"]] == list(range(150))
    listed = await api.client.get("/v1/jobs?limit=1000", headers=api.admin)
    assert len(listed.json()["items"]) == 150


async def test_batch_with_one_invalid_job_enqueues_nothing(api: Api) -> None:
    """One invalid job rejects the whole batch with 422 and nothing is stored."""
    jobs = [{"kind": "k"}, {"kind": "k", "max_attempts": 0}]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    listed = await api.client.get("/v1/jobs", headers=api.admin)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ('{"x": 1e400}', 422, "payload"),  # infinite as json.loads reads it: the route refuses
        ('{"x": 9007199254740993}', 422, "payload"),
        ('{"x": "' + "a" * 5000 + '"}', 413, None),  # the fixture's payload limit is 4096
    ],
)
async def test_a_batch_refusing_a_payload_names_the_job(
    api: Api, payload: str, status: int, field: str | None
) -> None:
    """The route's own payload checks say which job of the batch they refused (pydantic's
    errors carry their index already); before, a thousand-job batch said only "payload"."""
    raw = '{"jobs": [{"kind": "a"}, {"kind": "b"}, {"kind": "c", "payload": ' + payload + "}]}"
    headers = {**api.admin, "content-type": "application/json"}
    r = await api.client.post("/v1/jobs/batch", content=raw, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["details"]["index"] == 2
    assert error["message"].startswith("jobs[2]: payload ")
    assert error["details"].get("field") == field
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


_BEYOND = "payload holds an integer beyond ±(2**53-1)"


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"t": True, "n": None, "i": 0, "s": ""}, 201, None),
        ({"x": 2**53 - 1, "y": -(2**53 - 1)}, 201, None),
        ({"x": 2**53}, 422, _BEYOND),
        ({"x": -(2**53)}, 422, _BEYOND),
        ({"x": 2**63}, 422, _BEYOND),
        ({"x": 2**64}, 422, _BEYOND),  # past what orjson encodes at all
        ({"s": "a" * 4088}, 201, None),  # 4,096 bytes encoded: the fixture's limit
        ({"s": "a" * 4089}, 413, "payload is 4097 bytes; the limit is 4096"),
        # Over the limit and unportable: the size is measured first (check_size).
        ({"s": "a" * 5000, "x": 2**53}, 413, "payload is 5029 bytes; the limit is 4096"),
        ({"x": 1.5, "s": "a" * 4000}, 201, None),
    ],
)
async def test_a_flat_payload_is_checked_as_any_other(
    api: Api, payload: dict[str, Any], status: int, message: str | None
) -> None:
    """A flat object of strings, integers, flags and nulls is checked on a short path
    (``routes_jobs.check_size``); its limits and errors are those of any payload."""
    r = await api.client.post("/v1/jobs", json={"kind": "k", "payload": payload}, headers=api.admin)
    assert r.status_code == status, r.text
    if message is not None:
        assert r.json()["error"]["message"] == message
    batch = {"jobs": [{"kind": "k"}, {"kind": "k", "payload": payload}]}
    r = await api.client.post("/v1/jobs/batch", json=batch, headers=api.admin)
    assert r.status_code == status, r.text
    if message is not None:
        assert r.json()["error"]["message"] == f"jobs[1]: {message}"
        assert r.json()["error"]["details"]["index"] == 1


async def test_a_batch_repeating_an_idempotency_key_names_both_jobs(api: Api) -> None:
    """A key used twice in one batch names the repeat and the first use; it used to say
    only that keys repeat, leaving the caller to search a thousand jobs."""
    jobs = [{"kind": "a", "idempotency_key": "r-1"}, {"kind": "b"}]
    jobs += [{"kind": "c", "idempotency_key": "r-2"}, {"kind": "d", "idempotency_key": "r-1"}]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["message"] == "jobs[3]: idempotency_key repeats that of jobs[0]"
    assert (error["details"]["index"], error["details"]["field"]) == (3, "idempotency_key")
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


async def test_batch_retry_with_idempotency_keys_enqueues_each_job_once(api: Api) -> None:
    """Sending the same keyed batch twice stores each job exactly once."""
    jobs = [{"kind": "k", "idempotency_key": f"b-{i}"} for i in range(30)]
    first = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    again = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert first.status_code == 201
    assert again.status_code == 201
    assert [j["id"] for j in again.json()["items"]] == [j["id"] for j in first.json()["items"]]
    listed = await api.client.get("/v1/jobs?limit=1000", headers=api.admin)
    assert len(listed.json()["items"]) == 30


async def _stored_jobs(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/jobs?limit=1000", headers=api.admin)
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_a_batch_reusing_a_key_with_another_body_enqueues_nothing(api: Api) -> None:
    """A batch whose key was used with another body is 409 with nothing written, in any shard.

    The corrected batch then enqueues each job once. Before, the jobs of the other
    shards (and those before the conflict in its shard) were stored with the 409, and
    the corrected retry stored every keyless job a second time.
    """
    used = await api.enqueue(kind="pw", payload={}, idempotency_key="pw-used")
    jobs: list[dict[str, Any]] = [{"kind": "pw-batch", "payload": {"i": i}} for i in range(40)]
    jobs += [{"kind": "pw-keyed", "idempotency_key": f"pw-{i}"} for i in range(10)]
    jobs.append({"kind": "pw", "payload": {}, "idempotency_key": "pw-used", "priority": 5})
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "idempotency_conflict"
    assert r.json()["error"]["details"] == {"idempotency_key": "pw-used"}
    assert [j["id"] for j in await _stored_jobs(api)] == [used["id"]]
    jobs[-1]["priority"] = 0
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201, r.text
    assert r.json()["items"][-1]["id"] == used["id"]
    assert len(await _stored_jobs(api)) == 51


async def test_a_key_taken_while_a_batch_is_written_is_a_409_a_retry_completes_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key another request takes between the batch's check and its write: 409, no keyless job
    written; the retry is 409 before any write, and the corrected batch stores each job once."""
    from fleet_coordinator.services import NewJob, enqueue

    store = api.co.jobs.inner
    batch = store.batch_etags
    taken = asyncio.Event()
    first = [True]

    async def a_concurrent_enqueue_takes_the_key_first(*args: Any) -> Any:
        # Before the batch's first write, after its check. Its writes go out together:
        # the others wait, or the one holding "race" could store it first (on Cosmos,
        # where writes interleave, it did about one time in six).
        if first[0]:
            first[0] = False
            await enqueue(api.co, NewJob(kind="other", payload={}, idempotency_key="race"))
            taken.set()
        await taken.wait()
        return await batch(*args)

    jobs: list[dict[str, Any]] = [{"kind": "free", "payload": {"i": i}} for i in range(40)]
    jobs += [{"kind": "keyed", "idempotency_key": f"key-{i}"} for i in range(40)]
    jobs.append({"kind": "keyed", "idempotency_key": "race"})
    monkeypatch.setattr(store, "batch_etags", a_concurrent_enqueue_takes_the_key_first)
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    monkeypatch.undo()
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "idempotency_conflict"
    assert r.json()["error"]["details"] == {"idempotency_key": "race"}
    stored = await _stored_jobs(api)
    assert {j["kind"] for j in stored} <= {"other", "keyed"}
    assert "other" in {j["kind"] for j in stored}
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 409, r.text
    assert len(await _stored_jobs(api)) == len(stored)
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs[:-1]}, headers=api.admin)
    assert r.status_code == 201, r.text
    kinds = [j["kind"] for j in await _stored_jobs(api)]
    assert (kinds.count("free"), kinds.count("keyed"), kinds.count("other")) == (40, 40, 1)


async def test_a_refused_enqueue_leaves_no_queue_behind(api: Api) -> None:
    """A 409, alone or in a batch, writes no queue marker: GET /v1/queues lists no new queue.

    Before, the marker was written before the create that was refused, and the
    queue was listed with zero jobs.
    """
    body = {"kind": "idem", "payload": {"a": 1}, "idempotency_key": "k1"}
    await api.enqueue(**body)
    r = await api.client.post("/v1/jobs", json={**body, "queue": "ghost"}, headers=api.admin)
    assert r.status_code == 409, r.text
    jobs = [{"kind": "k", "queue": "ghost-b"}, {**body, "queue": "ghost-c"}]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 409, r.text
    r = await api.client.get("/v1/queues", headers=api.admin)
    assert [q["queue"] for q in r.json()["items"]] == ["default"]
    # A keyed job's queue is listed once it is stored, and after a replay.
    await api.enqueue(kind="idem", idempotency_key="k2", queue="keyed")
    r = await api.client.get("/v1/queues", headers=api.admin)
    assert [q["queue"] for q in r.json()["items"]] == ["default", "keyed"]


async def test_a_batch_counts_each_created_job_once_in_its_queue(api: Api) -> None:
    """``fleet_jobs_enqueued_total`` grows by the jobs a batch created, per queue (a replay: 0)."""
    jobs = [
        {"kind": "k", "queue": "a" if i % 3 else "b", "idempotency_key": f"m-{i}"} for i in range(9)
    ]
    for _ in range(2):
        r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
        assert r.status_code == 201, r.text
    sample = api.co.metrics.registry.get_sample_value
    assert sample("fleet_jobs_enqueued_total", {"queue": "a"}) == 6
    assert sample("fleet_jobs_enqueued_total", {"queue": "b"}) == 3


async def test_each_enqueue_claim_end_and_request_is_counted_per_label(api: Api) -> None:
    """The counters the hot paths keep a child of count on, per label, every time."""
    _, agent = await api.agent(capacity=2)
    for queue in ("a", "a", "b"):
        r = await api.client.post("/v1/jobs", json={"kind": "k", "queue": queue}, headers=api.admin)
        assert r.status_code == 201, r.text
    for _ in range(2):
        r = await api.client.post("/v1/claims", json={"max_jobs": 2}, headers=agent)
        for lease in r.json()["leases"]:
            epoch = {"epoch": lease["lease"]["epoch"]}
            done = f"/v1/jobs/{lease['job']['id']}/complete"
            assert (await api.client.post(done, json=epoch, headers=agent)).status_code == 200
    sample = api.co.metrics.registry.get_sample_value
    assert sample("fleet_jobs_enqueued_total", {"queue": "a"}) == 2
    assert sample("fleet_jobs_enqueued_total", {"queue": "b"}) == 1
    assert sample("fleet_claims_total", {"queue": "a"}) == 2
    assert sample("fleet_claims_total", {"queue": "b"}) == 1
    finished = {"op": "completed", "status": "succeeded"}
    assert sample("fleet_jobs_finished_total", finished) == 3
    posts = {"method": "POST", "route": "/v1/jobs"}
    assert sample("fleet_request_seconds_count", posts) == 3


async def test_list_pages_with_a_cursor_and_filters(api: Api) -> None:
    """Listing pages through jobs with next_cursor and filters by queue and status."""
    for i in range(5):
        await api.enqueue(queue="a", payload={"i": i})
        api.clock.advance(0.001)
    await api.enqueue(queue="b")
    r = await api.client.get("/v1/jobs?queue=a&status=queued&limit=2", headers=api.admin)
    page1 = r.json()
    assert [j["payload"]["i"] for j in page1["items"]] == [0, 1]
    r = await api.client.get(
        f"/v1/jobs?queue=a&status=queued&limit=2&cursor={page1['next_cursor']}",
        headers=api.admin,
    )
    assert [j["payload"]["i"] for j in r.json()["items"]] == [2, 3]
    bad = await api.client.get("/v1/jobs?cursor=garbage", headers=api.admin)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "position",
    [
        pytest.param('[1, "\\ud800", "q"]', id="lone-surrogate"),
        pytest.param('[Infinity, "a", "q"]', id="infinity"),
        pytest.param('[NaN, "a", "q"]', id="nan"),
    ],
)
async def test_a_forged_cursor_position_is_a_bad_cursor(api: Api, position: str) -> None:
    """A cursor of this listing whose position holds invalid Unicode or NaN gets 400 bad_cursor."""
    for _ in range(3):
        await api.enqueue(queue="q")
        api.clock.advance(0.001)
    page = (await api.client.get("/v1/jobs?limit=1", headers=api.admin)).json()
    cursor = page["next_cursor"]
    shape = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["s"]
    text = f'{{"s": "{shape}", "k": {position}}}'  # raw text: json.dumps cannot write these
    forged = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    r = await api.client.get(f"/v1/jobs?limit=1&cursor={forged}", headers=api.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_cursor"


async def test_queue_stats_count_jobs_per_status(api: Api) -> None:
    """GET /v1/queues counts jobs by status and reports the oldest queued age."""
    _, headers = await api.agent()
    await api.enqueue(queue="q")
    await api.enqueue(queue="q")
    await api.claim(headers, queues=["q"])
    api.clock.advance(7)
    r = await api.client.get("/v1/queues", headers=api.admin)
    [stats] = r.json()["items"]
    assert stats["queue"] == "q"
    assert stats["queued"] == 1
    assert stats["leased"] == 1
    assert stats["succeeded"] == 0
    assert stats["oldest_queued_age_seconds"] >= 7


async def test_jobs_a_failed_batch_wrote_are_counted_logged_and_announced(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose later shard writes fail (503): the jobs written are enqueued all the same.

    They are counted, logged and wake the long-polls; the retry with the same keys
    creates the rest, and the count ends at the jobs stored. Before, the jobs of the
    shards that landed were never counted nor logged, not even by the retry (which
    replays them), and waiting claimers were not woken for them.
    """
    from fleet_datastore import StoreUnavailableError

    store = api.co.jobs.inner
    batch = store.batch_etags
    calls = 0

    async def only_the_first_lands(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise StoreUnavailableError("the store went away")
        return await batch(*args)

    jobs = [{"kind": "k", "idempotency_key": f"p-{i}"} for i in range(40)]
    monkeypatch.setattr(store, "batch_etags", only_the_first_lands)
    generation = api.co.notifier.generation
    with capture_logs() as logs:
        r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    stored = (await api.client.get("/v1/jobs?limit=1000", headers=api.admin)).json()["items"]
    assert 0 < len(stored) < 40
    sample = api.co.metrics.registry.get_sample_value
    assert sample("fleet_jobs_enqueued_total", {"queue": "default"}) == len(stored)
    [logged] = [e for e in logs if e["event"] == "coordinator.job.batch_enqueued"]
    assert logged["created"] == len(stored)
    assert api.co.notifier.generation > generation
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201, r.text
    assert sample("fleet_jobs_enqueued_total", {"queue": "default"}) == 40
