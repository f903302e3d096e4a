"""Auth and error answers: every error has the SPEC shape and no input yields a 500."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from fleet_datastore import StoreUnavailableError

from .conftest import Api, CallCounter


def assert_error(body: dict[str, object], code: str) -> None:
    """The body is ``{"error": {"code", "message", "details"}}`` with ``code``."""
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code


async def test_missing_and_unknown_tokens_are_401(api: Api) -> None:
    """No token or an unknown one answers 401 on admin and agent endpoints."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        r = await api.client.get("/v1/jobs", headers=headers)
        assert r.status_code == 401
        assert_error(r.json(), "unauthorized")
        r = await api.client.post("/v1/claims", json={}, headers=headers)
        assert r.status_code == 401
    forged = {"Authorization": "Bearer fa.0123456789abcdef0123456789abcdef.secret"}
    assert (await api.client.post("/v1/claims", json={}, headers=forged)).status_code == 401


async def test_wrong_role_is_403(api: Api) -> None:
    """An agent token on an admin endpoint, or the admin token on an agent one, is 403."""
    _, headers = await api.agent()
    r = await api.client.post("/v1/jobs", json={"kind": "k"}, headers=headers)
    assert r.status_code == 403
    assert_error(r.json(), "forbidden")
    r = await api.client.post("/v1/claims", json={}, headers=api.admin)
    assert r.status_code == 403


async def test_more_than_one_authorization_header_is_400_before_the_body_is_read(
    api: Api,
) -> None:
    """Several Authorization headers are refused whatever their order or tokens, with
    the connection closed and nothing written; a route that needs no token ignores them."""
    _, agent = await api.agent()
    admin, own = api.admin["Authorization"], agent["Authorization"]
    for pair in ((admin, "Bearer bad"), ("Bearer bad", admin), (admin, admin)):
        headers = [("authorization", value) for value in pair]
        r = await api.client.get("/v1/queues", headers=headers)
        assert r.status_code == 400, r.text
        assert_error(r.json(), "bad_request")
        assert "Authorization" in r.json()["error"]["message"]
        r = await api.client.post("/v1/jobs", json={"kind": "k"}, headers=headers)
        assert (r.status_code, r.headers["connection"]) == (400, "close"), r.text
    r = await api.client.post("/v1/claims", json={}, headers=[("authorization", own)] * 2)
    assert r.status_code == 400, r.text
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []
    health = await api.client.get("/healthz", headers=[("authorization", "Bearer x")] * 2)
    assert health.status_code == 200


async def test_malformed_json_is_400(api: Api) -> None:
    """A body that is not JSON answers 400 in the error shape."""
    r = await api.client.post(
        "/v1/jobs",
        content=b"{not json",
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert_error(r.json(), "bad_request")


@pytest.mark.parametrize(
    ("body", "says", "where"),
    [
        (b'{"kind": "k", "priority": ' + b"9" * 5000 + b"}", "4300 digits", ["priority"]),
        (
            b'{"kind": "k", "payload": {"a": [0, -' + b"9" * 5000 + b"]}}",
            "4300 digits",
            ["payload", "a", "1"],
        ),
        (b'{"kind": "k", "payload": {"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}", "nested", None),
    ],
)
async def test_a_body_python_cannot_parse_is_400_saying_why(
    api: Api, body: bytes, says: str, where: list[str] | None
) -> None:
    """Python's parser refuses integers of over 4,300 digits and nesting past its
    recursion limit: still 400, now saying which (it was "an error parsing the body"),
    and for the integer where it is (its details were empty)."""
    headers = {**api.admin, "Content-Type": "application/json"}
    for path in ("/v1/jobs", "/v1/jobs?via=plain"):
        r = await api.client.post(path, content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert_error(r.json(), "bad_request")
        assert says in r.json()["error"]["message"]
        if where is not None:
            [error] = r.json()["error"]["details"]["errors"]
            assert error["loc"] == ["body", *where], r.text
            assert error["type"] == "int_too_long"
            assert "5000 digits" in error["msg"]
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/v1/jobs", b'{"kind":"k","payload":{"x":[1,NaN]}}', ["payload", "x", "1"]),
        ("/v1/jobs", b'{"kind":"k","lease_seconds":NaN}', ["lease_seconds"]),
        ("/v1/jobs", b'{"kind":"k","payload":{"n":12345678901234567890,"x":-Infinity}}', None),
        ("/v1/jobs/batch", b'{"jobs":[{"kind":"k"},{"kind":"k","priority":Infinity}]}', None),
        ("/v1/agents", b'{"name":"a","capacity":Infinity}', ["capacity"]),
        (
            "/v1/schedules/nightly",
            b'{"cron":"* * * * *","job":{"kind":"k","payload":{"a":NaN}}}',
            ["job", "payload", "a"],
        ),
    ],
)
async def test_nan_and_infinity_literals_are_malformed_json(
    api: Api, path: str, body: bytes, where: list[str] | None
) -> None:
    """``NaN``, ``Infinity`` and ``-Infinity`` are no JSON (RFC 8259), though Python's
    parser reads them: 400 ``bad_request`` naming where, on the hot path and FastAPI's,
    and nothing is written (it was a 422 about the value, or "lease_seconds should be
    less than or equal to 86400")."""
    headers = {**api.admin, "Content-Type": "application/json"}
    method = "PUT" if path.startswith("/v1/schedules") else "POST"
    for query in ("", "?via=plain"):
        r = await api.client.request(method, f"{path}{query}", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert_error(r.json(), "bad_request")
        [error] = r.json()["error"]["details"]["errors"]
        assert error["type"] == "json_invalid"
        if where is not None:
            assert error["loc"] == ["body", *where], r.text
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []
    assert (await api.client.get("/v1/agents", headers=api.admin)).json()["items"] == []
    assert (await api.client.get("/v1/schedules", headers=api.admin)).json()["items"] == []


async def test_nan_in_a_report_or_inside_a_string_is_as_json_says(api: Api) -> None:
    """A report's result holding NaN is 400 and completes nothing; the text "NaN" or
    "Infinity" inside a string is just text."""
    _, agent = await api.agent()
    job = await api.enqueue(payload={"s": "NaN", "t": "-Infinity"})
    assert job["payload"] == {"s": "NaN", "t": "-Infinity"}
    [lease] = await api.claim(agent)
    epoch = lease["lease"]["epoch"]
    headers = {**agent, "Content-Type": "application/json"}
    raw = b'{"items":[{"job_id":"%s","epoch":%d,"action":"complete","result":{"x":NaN}}]}' % (
        job["id"].encode(),
        epoch,
    )
    r = await api.client.post("/v1/reports", content=raw, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"]["errors"][0]["loc"] == ["body", "items", "0", "result", "x"]
    assert (await api.job(job["id"]))["status"] == "leased"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_json_body_sent_as_another_type_is_415_naming_the_type_to_send(
    api: Api, content_type: str | None
) -> None:
    """``curl -d`` labels a body as a form: it was a 422 saying an object was missing,
    now 415 saying to send JSON as ``application/json``, on admin and agent routes,
    with nothing written; ``+json`` types are JSON too."""
    _, agent = await api.agent()
    label = {} if content_type is None else {"Content-Type": content_type}
    for path, headers, body in (
        ("/v1/jobs", api.admin, b'{"kind": "k"}'),
        ("/v1/jobs/batch", api.admin, b'{"jobs": [{"kind": "k"}]}'),
        ("/v1/claims", agent, b'{"max_jobs": 1}'),
    ):
        r = await api.client.post(path, content=body, headers={**headers, **label})
        assert r.status_code == 415, (path, r.text)
        assert_error(r.json(), "unsupported_media_type")
        assert "application/json" in r.json()["error"]["message"]
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []
    json_type = {**api.admin, "Content-Type": "application/vnd.fleet+json; charset=utf-8"}
    r = await api.client.post("/v1/jobs", content=b'{"kind": "k"}', headers=json_type)
    assert r.status_code == 201, r.text


async def test_a_json_body_under_two_content_types_is_400(api: Api) -> None:
    """Which of two types counts would be up to each reader (the first won): refused,
    whatever the order, and nothing written."""
    for pair in (("application/json", "text/plain"), ("text/plain", "application/json")):
        headers = [("authorization", api.admin["Authorization"])]
        headers += [("content-type", value) for value in pair]
        r = await api.client.post("/v1/jobs", content=b'{"kind": "k"}', headers=headers)
        assert r.status_code == 400, r.text
        assert_error(r.json(), "bad_request")
        assert "Content-Type" in r.json()["error"]["message"]
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"kind": 5},
        {},
        {"kind": "k", "priority": "high"},
        {"kind": "k", "payload": [1]},
        {"kind": "k", "max_attempts": 0},
        {"kind": "k", "queue": "bad queue!"},
        {"kind": "k", "queue": "."},  # a dot-segment: no path can name it to pause it
        {"kind": "k", "queue": ".."},
        {"kind": "k", "run_after": "2024-01-01T00:00:00"},
        {"kind": "k", "requires": {"a": 1}},
        {"kind": "k", "unknown": 1},
        [],
    ],
)
async def test_invalid_job_fields_are_422(api: Api, body: object) -> None:
    """Wrong types, bounds, naive times and unknown fields answer 422 and store nothing."""
    r = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert_error(r.json(), "validation_error")
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


async def test_unknown_ids_and_routes_are_404(api: Api) -> None:
    """Unknown jobs, agents and routes answer 404 in the error shape."""
    _, headers = await api.agent()
    for path in ("/v1/jobs/0123456789abcdef", "/v1/jobs/..%2F..", "/v1/agents/nope", "/v1/nope"):
        r = await api.client.get(path, headers=api.admin)
        assert r.status_code == 404, path
        assert_error(r.json(), "not_found")
    r = await api.client.post("/v1/jobs/unknown/complete", json={"epoch": 1}, headers=headers)
    assert r.status_code == 404
    r = await api.client.post("/v1/jobs/unknown/cancel", headers=api.admin)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs?kind=%ff"),
        ("GET", "/v1/jobs?lock=%ED%A0%80"),  # an escaped lone surrogate
        ("GET", "/v1/jobs?queue=ok&cursor=%c3"),  # a sequence cut short
        ("GET", "/v1/jobs/%ED%A0%80"),
        ("POST", "/v1/jobs/%ff/cancel"),
        ("GET", "/v1/agents/%FF"),
        ("POST", "/v1/queues/%ff/pause"),
    ],
)
async def test_escapes_that_are_not_utf8_in_a_path_or_query_are_400(
    api: Api, method: str, path: str
) -> None:
    """Percent-escapes decode to text as a body does: not UTF-8 is 400, never U+FFFD
    looked up (404), listed by (200) or echoed back; and nothing is written."""
    r = await api.client.request(method, path, headers=api.admin)
    assert r.status_code == 400, r.text
    assert_error(r.json(), "bad_request")
    assert (await api.client.get("/v1/queues", headers=api.admin)).json()["items"] == []


async def test_escapes_of_utf8_text_are_read_as_that_text(api: Api) -> None:
    job = await api.enqueue(kind="café", queue="q")
    r = await api.client.get("/v1/jobs?kind=caf%C3%A9", headers=api.admin)
    assert [j["id"] for j in r.json()["items"]] == [job["id"]]
    r = await api.client.get(
        f"/v1/jobs/{job['id'][:-1]}%{ord(job['id'][-1]):02X}", headers=api.admin
    )
    assert r.json()["id"] == job["id"]


async def test_wrong_method_is_405_in_the_error_shape(api: Api) -> None:
    """A known path with the wrong method answers 405 in the error shape."""
    r = await api.client.delete("/v1/jobs", headers=api.admin)
    assert r.status_code == 405
    assert_error(r.json(), "method_not_allowed")


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate", "chunked, chunked"])
async def test_a_transfer_coding_other_than_chunked_is_400_and_stores_nothing(
    api: Api, coding: str
) -> None:
    """Such a body would be read as if uncoded: refused (RFC 9112's 501 is a 5xx)."""
    headers = {**api.admin, "content-type": "application/json", "transfer-encoding": coding}
    r = await api.client.post("/v1/jobs", content=b'{"kind": "k"}', headers=headers)
    assert r.status_code == 400, r.text
    assert_error(r.json(), "bad_request")
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
async def test_a_body_in_a_content_coding_is_415_before_it_is_read(api: Api, coding: str) -> None:
    """Nothing decodes a content coding: a gzip'd body (once 400 "not valid UTF-8") and a
    plain one labelled gzip (once served) are both 415, on every route with a body."""
    plain = b'{"kind": "k"}'
    headers = {**api.admin, "content-type": "application/json", "content-encoding": coding}
    for body in (gzip.compress(plain), plain):
        r = await api.client.post("/v1/jobs", content=body, headers=headers)
        assert (r.status_code, r.headers["connection"]) == (415, "close"), r.text
        assert_error(r.json(), "unsupported_media_type")
        assert r.json()["error"]["details"] == {"content_encoding": coding}
        assert r.headers["accept-encoding"] == "identity"
    schedule = {"cron": "* * * * *", "job": {"kind": "k"}}
    r = await api.client.put("/v1/schedules/s", json=schedule, headers=headers)
    assert r.status_code == 415, r.text
    _, agent = await api.agent()
    r = await api.client.post("/v1/claims", content=b"{}", headers={**headers, **agent})
    assert r.status_code == 415, r.text
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []
    assert (await api.client.get("/v1/schedules", headers=api.admin)).json()["items"] == []


async def test_identity_coding_and_a_coding_without_a_body_are_served(api: Api) -> None:
    """``identity`` is no coding at all, and a request without a body has none to decode;
    a caller without a token still gets 401 first."""
    headers = {**api.admin, "content-type": "application/json"}
    for coding in ("identity", "Identity", "identity, identity"):
        r = await api.client.post(
            "/v1/jobs", content=b'{"kind": "k"}', headers={**headers, "content-encoding": coding}
        )
        assert r.status_code == 201, r.text
    r = await api.client.get("/v1/queues", headers={**api.admin, "content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    stranger = {"content-type": "application/json", "content-encoding": "gzip"}
    r = await api.client.post("/v1/jobs", content=b'{"kind": "k"}', headers=stranger)
    assert r.status_code == 401, r.text


async def test_oversized_payload_is_413_and_stores_nothing(api: Api) -> None:
    """A payload over MAX_PAYLOAD_BYTES answers 413, as does a huge body."""
    r = await api.client.post(
        "/v1/jobs", json={"kind": "k", "payload": {"x": "a" * 5000}}, headers=api.admin
    )
    assert r.status_code == 413
    assert_error(r.json(), "payload_too_large")
    r = await api.client.post(
        "/v1/jobs", json={"kind": "k", "payload": {"x": "a" * 100_000}}, headers=api.admin
    )
    assert r.status_code == 413
    assert (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"] == []


async def test_invalid_claim_and_lease_bodies_are_422(api: Api) -> None:
    """Out-of-range claim fields and missing epochs answer 422."""
    _, headers = await api.agent()
    for body in ({"max_jobs": 0}, {"max_jobs": 101}, {"wait_seconds": 31}, {"queues": "a"}):
        r = await api.client.post("/v1/claims", json=body, headers=headers)
        assert r.status_code == 422, body
    job = await api.enqueue()
    r = await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={}, headers=headers)
    assert r.status_code == 422
    r = await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": "one", "error": "x"}, headers=headers
    )
    assert r.status_code == 422


async def test_operations_endpoints_answer(api: Api) -> None:
    """Health, readiness and metrics answer without auth."""
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    await api.enqueue(queue="m")
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'fleet_queue_depth{queue="m",status="queued"} 1.0' in metrics.text
    assert "fleet_jobs_enqueued_total" in metrics.text
    assert (await api.client.get("/openapi.json")).json()["info"]["title"] == "Fleet Coordinator"
    # FastAPI's explorer pages would run a CDN's scripts on the console's origin.
    for page in ("/docs", "/redoc"):
        assert (await api.client.get(page)).status_code == 404


@pytest.mark.parametrize(
    "raw",
    [
        b'{"kind":"k","payload":{"x":1e400}}',
        b'{"kind":"k","payload":{"x":123456789012345678901234567890}}',
        b'{"kind":"k","run_after":"0001-01-01T00:00:00+14:00"}',
        b'{"kind":"k","run_after":"9999-12-31T23:59:59Z"}',
        b'{"kind":"k","payload":' + b"[" * 65 + b"]" * 65 + b"}",
        b'{"kind":"k","payload":' + b'{"a":' * 900 + b"1" + b"}" * 900 + b"}",
    ],
    ids=lambda raw: raw[:60].decode(),
)
async def test_values_no_store_can_keep_are_422(api: Api, raw: bytes) -> None:
    """Non-finite numbers, huge integers, deep nesting (Cosmos keeps 128 levels; 900
    once exhausted the stack, a 503) and out-of-range times answer 422, never 5xx."""
    headers = {**api.admin, "Content-Type": "application/json"}
    r = await api.client.post("/v1/jobs", content=raw, headers=headers)
    assert r.status_code == 422, r.text
    assert_error(r.json(), "validation_error")


async def test_run_after_out_of_range_names_the_bounds_it_checks(api: Api) -> None:
    """The last instant accepted is 9999-12-30T00:00:00Z, and the 422 says so."""
    r = await api.client.post(
        "/v1/jobs", json={"kind": "k", "run_after": "9999-12-30T00:00:00Z"}, headers=api.admin
    )
    assert r.status_code == 201, r.text
    for late in ("9999-12-30T00:00:01Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"):
        body = {"kind": "k", "run_after": late}
        r = await api.client.post("/v1/jobs", json=body, headers=api.admin)
        assert r.status_code == 422, r.text
        [error] = r.json()["error"]["details"]["errors"]
        assert "from 1970-01-01T00:00:00Z to 9999-12-30T00:00:00Z" in error["msg"], error


async def test_metrics_scrapes_share_one_queue_recount_per_interval(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/metrics`` needs no token, and its queue gauges cost 5 store counts a queue (on
    Cosmos DB, request units that grow with the jobs kept): however often it is asked,
    a replica recounts at most once per interval (before: once per scrape)."""
    counts = CallCounter(monkeypatch, api.co.jobs, "count")
    api.app.state.queue_gauges.max_age = 3600.0  # no recount falls due during the test
    await api.enqueue(queue="m")
    first = await api.client.get("/metrics")
    assert 'fleet_queue_depth{queue="m",status="queued"} 1.0' in first.text
    assert counts.calls == 5  # one queue, one count per status
    for _ in range(20):
        assert (await api.client.get("/metrics")).status_code == 200
    assert counts.calls == 5


async def test_readyz_calls_share_one_store_ping(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """/readyz needs no token, so its callers share one ping (on Cosmos DB a ping is a
    metadata read that the account throttles): those arriving while it is in flight wait
    for it, and those within ``max_age`` after it take its answer; past it, one pings."""
    pings = 0
    store = api.co.containers.store
    real_ping = store.ping
    readiness = api.app.state.readiness
    arrived = 0
    all_arrived = asyncio.Event()
    real_check = readiness.check

    async def check(ping: Any) -> str | None:
        nonlocal arrived
        arrived += 1
        if arrived == 30:
            all_arrived.set()
        result: str | None = await real_check(ping)
        return result

    async def counted() -> None:
        nonlocal pings
        pings += 1
        await all_arrived.wait()  # in flight until every concurrent call has asked
        await real_ping()

    monkeypatch.setattr(readiness, "check", check)
    monkeypatch.setattr(store, "ping", counted)
    readiness.max_age = 0.0  # no answer is reused: only the ping in flight is shared
    answers = await asyncio.gather(*(api.client.get("/readyz") for _ in range(30)))
    assert pings == 1  # 30 before
    readiness.max_age = 60.0  # now the answer is reused too
    answers += [await api.client.get("/readyz") for _ in range(10)]
    assert {r.status_code for r in answers} == {200}
    assert pings == 1  # every one of these took the answer of that ping
    readiness.max_age = 0.0  # expired: a store down now shows at once

    async def down() -> None:
        raise StoreUnavailableError("down for the test")

    monkeypatch.setattr(store, "ping", down)
    r = await api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["details"] == {"store": "StoreUnavailableError"}


async def test_a_method_a_path_does_not_serve_is_405_naming_every_method_it_does(
    api: Api,
) -> None:
    """RFC 9110: a 405 carries ``Allow``, listing every method of the path (Starlette's
    named the first route's only: POST for ``/v1/jobs``, where GET works too)."""
    for method, path, allowed in (
        ("PUT", "/v1/jobs", "GET, HEAD, POST"),
        ("DELETE", "/v1/jobs/abc", "GET, HEAD"),
        ("GET", "/v1/reports", "POST"),
        ("PATCH", "/v1/schedules/nightly", "DELETE, GET, HEAD, PUT"),
        ("POST", "/healthz", "GET, HEAD"),
    ):
        r = await api.client.request(method, path, headers=api.admin)
        assert r.status_code == 405, (method, path)
        assert r.headers["allow"] == allowed, (method, path)
        assert_error(r.json(), "method_not_allowed")


async def test_a_stray_trailing_slash_is_404_not_a_redirect_to_the_callers_host(
    api: Api,
) -> None:
    """``/v1/jobs/`` was a 307 to ``http://<the request's Host>/v1/jobs``."""
    for path in ("/v1/jobs/", "/v1/queues/", "/healthz/"):
        r = await api.client.get(path, headers={**api.admin, "Host": "evil.example"})
        assert r.status_code == 404, path
        assert "location" not in r.headers
        assert_error(r.json(), "not_found")


async def test_methods_no_route_serves_share_one_latency_label(api: Api) -> None:
    """PROPFIND, MKCOL, … (httptools parses ~34 methods) are 405 on every path, without a
    token: each made a histogram series of its own per path until they were ``other``."""
    for method in ("PROPFIND", "MKCOL", "PURGE", "LINK"):
        r = await api.client.request(method, "/healthz")
        assert r.status_code == 405
    text = (await api.client.get("/metrics")).text
    assert 'fleet_request_seconds_count{method="other",route="/healthz"} 4.0' in text
    for method in ("PROPFIND", "MKCOL", "PURGE", "LINK"):
        assert f'method="{method}"' not in text
    assert 'fleet_request_seconds_count{method="GET",route="/healthz"}' not in text
