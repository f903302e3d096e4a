"""The operator console in process: sign-in, sessions, CSRF, escaping, CSP, every page and form."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fleet_coordinator.console.sessions import SESSION_SECONDS, SESSIONS_PARTITION, purge_expired
from fleet_coordinator.services import fire_due
from fleet_datastore import Query, eq
from structlog.testing import capture_logs

from .conftest import ADMIN, Api, CallCounter

PAGES = ("/ui/", "/ui/queues", "/ui/jobs", "/ui/failed", "/ui/agents", "/ui/schedules")
INJECTION = '<script>alert("x")</script>'
IMG = "<img src=x onerror=alert(1)>"


def _hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name} field"
    return found.group(1)


async def _signin(client: httpx.AsyncClient, token: str = ADMIN) -> httpx.Response:
    form = await client.get("/ui/signin")
    return await client.post(
        "/ui/signin", data={"token": token, "csrf": _hidden(form.text)}, follow_redirects=False
    )


async def _csrf(api: Api) -> str:
    return _hidden((await api.client.get("/ui/queues")).text)


async def test_pages_need_a_session_and_signing_in_sets_a_strict_http_only_cookie(api: Api) -> None:
    """Without a session a page redirects to sign-in; the admin token buys a strict cookie."""
    r = await api.client.get("/ui/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/signin"
    signed = await _signin(api.client)
    assert signed.status_code == 303
    cookie = next(v for k, v in signed.headers.multi_items() if v.startswith("fleet_console="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    for path in PAGES:
        page = await api.client.get(path)
        assert page.status_code == 200, path
        assert ADMIN not in page.text


async def test_the_session_cookie_is_secure_under_https(api: Api) -> None:
    """Over https the session cookie carries Secure."""
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        signed = await _signin(client)
    cookie = next(v for k, v in signed.headers.multi_items() if v.startswith("fleet_console="))
    assert "Secure" in cookie


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_every_cookie_header_of_the_console_is_strict_and_http_only(
    api: Api, scheme: str
) -> None:
    """Setting and ending the sign-in and session cookies, each header is HttpOnly,
    SameSite=Strict, under /ui and Secure over https (ending the sign-in cookie was
    Starlette's default, SameSite=Lax, and no ending carried Secure)."""
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://test") as client:
        headers: list[str] = []
        form = await client.get("/ui/signin")
        headers += form.headers.get_list("set-cookie")
        signed = await client.post("/ui/signin", data={"token": ADMIN, "csrf": _hidden(form.text)})
        headers += signed.headers.get_list("set-cookie")
        csrf = _hidden((await client.get("/ui/queues")).text)
        out = await client.post("/ui/signout", data={"csrf": csrf})
        headers += out.headers.get_list("set-cookie")
    names = [h.split("=", 1)[0] for h in headers]
    assert names == ["fleet_signin", "fleet_signin", "fleet_console", "fleet_console"]
    for header in headers:
        attributes = [a.strip() for a in header.split(";")[1:]]
        assert "HttpOnly" in attributes, header
        assert "SameSite=strict" in attributes, header
        assert "Path=/ui" in attributes, header
        assert ("Secure" in attributes) == (scheme == "https"), header
    ended = [headers[1], headers[3]]
    assert all("Max-Age=0" in h for h in ended), ended


async def test_a_wrong_token_or_a_missing_form_token_signs_nobody_in(api: Api) -> None:
    """A wrong admin token gets 401 and no session; a sign-in without its form token gets 403."""
    wrong = await _signin(api.client, "not-the-token")
    assert wrong.status_code == 401
    cookies = [v for k, v in wrong.headers.multi_items() if k == "set-cookie"]
    assert not [c for c in cookies if c.startswith("fleet_console=")]
    forged = await api.client.post("/ui/signin", data={"token": ADMIN}, follow_redirects=False)
    assert forged.status_code == 403
    assert (await api.client.get("/ui/", follow_redirects=False)).status_code == 303


async def test_sign_in_attempts_are_rate_limited(api: Api) -> None:
    """After five attempts a minute, even the right token is refused with 429."""
    for _ in range(5):
        assert (await _signin(api.client, "guess")).status_code == 401
    limited = await _signin(api.client)
    assert limited.status_code == 429
    assert (await api.client.get("/ui/", follow_redirects=False)).status_code == 303


async def test_the_admin_token_is_never_logged_and_signing_out_revokes_the_session(
    api: Api,
) -> None:
    """Sign-in logs no token; after sign-out the old cookie opens nothing."""
    with capture_logs() as logs:
        await _signin(api.client)
        await _signin(api.client, "wrong-token-value")
    assert ADMIN not in repr(logs)
    assert "wrong-token-value" not in repr(logs)
    cookie = api.client.cookies.get("fleet_console", path="/ui")
    assert cookie
    out = await api.client.post(
        "/ui/signout", data={"csrf": await _csrf(api)}, follow_redirects=True
    )
    assert out.status_code == 200  # followed to the sign-in page
    api.client.cookies.set("fleet_console", cookie, path="/ui")
    assert (await api.client.get("/ui/", follow_redirects=False)).status_code == 303


async def test_every_page_forbids_inline_script(api: Api) -> None:
    """Every console answer, signed in or not, carries a CSP without inline script or eval."""
    await _signin(api.client)
    for path in (*PAGES, "/ui/signin", "/ui/jobs/nosuchjob", "/ui/static/console.js"):
        r = await api.client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "<script>" not in r.text or path.endswith(".js")
    htmx = await api.client.get("/ui/static/htmx.min.js")
    assert htmx.status_code == 200
    assert "javascript" in htmx.headers["content-type"]


async def test_state_changing_forms_without_the_csrf_token_get_403_and_change_nothing(
    api: Api,
) -> None:
    """Pause, cancel, retry, bulk retry, drain, delete, sign-out: no or a wrong token, 403."""
    await _signin(api.client)
    agent_id, _ = await api.agent()
    job = await api.enqueue(queue="q")
    posts = (
        "/ui/queues/q/pause",
        f"/ui/jobs/{job['id']}/cancel",
        f"/ui/jobs/{job['id']}/retry",
        "/ui/failed/retry",
        f"/ui/agents/{agent_id}/drain",
        f"/ui/agents/{agent_id}/delete",
        "/ui/signout",
    )
    for path in posts:
        for data in ({}, {"csrf": "forged"}):
            r = await api.client.post(path, data=data, follow_redirects=False)
            assert r.status_code == 403, path
    assert (await api.job(job["id"]))["status"] == "queued"
    queues = (await api.client.get("/v1/queues", headers=api.admin)).json()["items"]
    assert [q["paused"] for q in queues] == [False]
    agent = (await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)).json()
    assert agent["draining"] is False
    assert (await api.client.get("/ui/", follow_redirects=False)).status_code == 200
    # Without any session a form is refused the same way.
    api.client.cookies.clear()
    r = await api.client.post("/ui/queues/q/pause", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 403


async def test_forms_that_cannot_be_read_get_4xx_with_the_headers_and_change_nothing(
    api: Api,
) -> None:
    """Too many fields or text that is not UTF-8: 400; a form too large: 413; never a 500."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    many = "&".join(f"f{i}=1" for i in range(51)).encode()
    # Signed out, the sign-in form is read before anything else (it was a 500 at 51 fields).
    assert (await api.client.post("/ui/signin", content=many, headers=form)).status_code == 400
    await _signin(api.client)
    csrf = f"csrf={await _csrf(api)}&".encode()
    for status, body in (
        (400, csrf + many),
        (400, csrf + b"note=%ff"),  # an escape that is not UTF-8 (it was read as U+FFFD)
        (400, csrf + b"note=%ed%a0%80"),  # an escaped lone surrogate
        (400, csrf + b"note=\xff"),  # a raw byte that is not UTF-8 (it was a 403)
        (413, csrf + b"note=" + b"a" * 17_000),
    ):
        r = await api.client.post("/ui/queues/q/pause", content=body, headers=form)
        assert r.status_code == status, body[-20:]
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["content-type"].startswith("text/html")  # the console's page
        assert "Nothing was changed." in r.text
    queues = (await api.client.get("/v1/queues", headers=api.admin)).json()["items"]
    assert queues == []  # no pause went through


async def test_refusals_under_ui_are_the_consoles_page_and_change_nothing(api: Api) -> None:
    """A refusal under /ui, by the guard (too large, a path that is not UTF-8), an action
    (an unknown job or agent), a query or form the API refuses or an unknown page, is the
    console's HTML page with the status, the headers and the message escaped; nothing
    changes. The API keeps its error shape."""
    await _signin(api.client)
    csrf = await _csrf(api)
    agent_id, _ = await api.agent()
    job = await api.enqueue(queue="q")
    form = {"content-type": "application/x-www-form-urlencoded"}
    big = f"csrf={csrf}&note=".encode() + b"a" * 17_000

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    kept = {"data": {"csrf": csrf}}
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/ui/queues/q/pause", {"content": big, "headers": form}, 413, "Too large"),
        ("POST", "/ui/queues/q/pause", {"content": chunked(), "headers": form}, 413, "Too large"),
        ("POST", f"/ui/jobs/{IMG}/cancel", kept, 404, "Not found"),
        ("POST", "/ui/agents/nobody/drain", kept, 404, "Not found"),
        ("POST", "/ui/agents/nobody/delete", kept, 404, "Not found"),
        ("POST", f"/ui/jobs/{job['id']}/dance", kept, 404, "Not found"),
        ("POST", "/ui/failed/retry", {"data": {"csrf": csrf, "kind": "k" * 300}}, 422, "Refused"),
        ("POST", "/ui/failed/retry", {"data": {"csrf": csrf, "queue": IMG}}, 422, "Refused"),
        ("GET", "/ui/jobs?kind=" + "k" * 300, {}, 422, "Refused"),
        ("GET", "/ui/failed?retried=abc", {}, 422, "Refused"),
        ("GET", "/ui/nonexistent", {}, 404, "Not found"),
        ("GET", "/ui/jobs/%ff", {}, 400, "Refused"),
        ("PUT", "/ui/queues", {}, 405, "Not allowed"),
    ]
    for method, path, options, status, title in cases:
        r = await api.client.request(method, path, **options)
        where = (method, path[:40])
        assert r.status_code == status, (*where, r.text)
        assert r.headers["content-type"].startswith("text/html"), where
        assert "script-src 'self'" in r.headers["content-security-policy"], where
        assert r.headers["x-frame-options"] == "DENY", where
        assert f"<h1>{title}</h1>" in r.text, where
        assert "Nothing was changed." in r.text, where
        assert "<script>alert" not in r.text, where
        assert "<img" not in r.text, where
    escaped = await api.client.post(f"/ui/jobs/{IMG}/cancel", data={"csrf": csrf})
    assert "No job &#39;&lt;img src=x onerror=alert(1)&gt;&#39;." in escaped.text
    too_long = await api.client.get("/ui/jobs?kind=" + "k" * 300)
    assert "query kind: String should have at most 255 characters" in too_long.text
    assert (await api.client.put("/ui/queues")).headers["allow"] == "GET, HEAD"
    assert (await api.job(job["id"]))["status"] == "queued"
    queues = (await api.client.get("/v1/queues", headers=api.admin)).json()["items"]
    assert [q["paused"] for q in queues] == [False]
    agent = (await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)).json()
    assert agent["draining"] is False
    r = await api.client.get("/v1/nonexistent", headers=api.admin)
    assert r.json()["error"]["code"] == "not_found"
    assert "content-security-policy" not in r.headers


async def test_a_crash_under_ui_is_a_500_with_the_console_headers(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard answers a defect with 500; under /ui that answer carries the CSP too."""
    from fleet_coordinator.console import pages

    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a defect")

    await _signin(api.client)
    monkeypatch.setattr(pages, "list_agents", broken)
    r = await api.client.get("/ui/agents")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    # An API answer gets none of them.
    assert (
        "content-security-policy"
        not in (await api.client.get("/v1/queues", headers=api.admin)).headers
    )


async def test_forms_act_as_the_api_does(api: Api) -> None:
    """Pausing, cancelling, retrying one and in bulk, draining and deleting through the console."""
    await _signin(api.client)
    csrf = await _csrf(api)
    agent_id, headers = await api.agent()
    job = await api.enqueue(queue="q")
    await api.client.post("/ui/queues/q/pause", data={"csrf": csrf})
    assert await api.claim(headers) == []
    await api.client.post("/ui/queues/q/resume", data={"csrf": csrf})
    await api.client.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf})
    assert (await api.job(job["id"]))["status"] == "cancelled"
    again = await api.client.post(
        f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf}, follow_redirects=True
    )
    assert "Refused" in again.text
    await api.client.post(f"/ui/jobs/{job['id']}/retry", data={"csrf": csrf})
    assert (await api.job(job["id"]))["status"] == "queued"
    await api.client.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf})
    bulk = await api.client.post(
        "/ui/failed/retry",
        data={"csrf": csrf, "status": "cancelled", "queue": "q"},
        follow_redirects=True,
    )
    assert 'data-retried="1"' in bulk.text
    assert (await api.job(job["id"]))["status"] == "queued"
    await api.client.post(f"/ui/agents/{agent_id}/drain", data={"csrf": csrf})
    assert await api.claim(headers) == []
    await api.client.post(f"/ui/agents/{agent_id}/delete", data={"csrf": csrf})
    r = await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.status_code == 404


@pytest.mark.parametrize("path", [*PAGES, "/ui/jobs/{id}"])
async def test_script_injection_strings_are_shown_as_text(api: Api, path: str) -> None:
    """Payloads, kinds, errors, labels and agent names with markup appear escaped on every page."""
    await _signin(api.client)
    _, headers = await api.agent(name=INJECTION, labels={IMG: INJECTION})
    job = await api.enqueue(kind=INJECTION, payload={IMG: INJECTION}, max_attempts=1)
    await api.claim(headers)
    await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 1, "error": IMG}, headers=headers
    )
    html = (await api.client.get(path.format(id=job["id"]))).text
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    if path in ("/ui/jobs", "/ui/failed", "/ui/agents", "/ui/jobs/{id}"):
        assert "&lt;script&gt;" in html


async def test_job_page_shows_payload_result_and_runs(api: Api) -> None:
    """A job's page shows its pretty payload, its result, and each run's outcome and error."""
    await _signin(api.client)
    _, headers = await api.agent()
    job = await api.enqueue(payload={"width": 640})
    await api.claim(headers)
    beat = {"epoch": 1, "progress": {"done": 3, "of": 10, "note": INJECTION}}
    assert (
        await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json=beat, headers=headers)
    ).status_code == 200
    await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 1, "error": "disk full"}, headers=headers
    )
    api.clock.advance(3600)  # past the retry backoff
    assert len(await api.claim(headers)) == 1
    await api.client.post(
        f"/v1/jobs/{job['id']}/complete", json={"epoch": 2, "result": {"ok": 1}}, headers=headers
    )
    html = (await api.client.get(f"/ui/jobs/{job['id']}")).text
    assert "&#34;width&#34;: 640" in html  # autoescaped quotes, shown as typed
    assert "&#34;ok&#34;: 1" in html
    assert html.count('class="run ') == 2
    assert "disk full" in html
    assert "o-succeeded" in html
    assert "&#34;done&#34;: 3, &#34;note&#34;: &#34;&lt;script&gt;" in html  # the run's progress
    assert "<script>alert" not in html
    missing = await api.client.get("/ui/jobs/nosuchjob")
    assert missing.status_code == 404
    opened = await api.client.get("/ui/jobs/open", params={"id": job["id"]}, follow_redirects=False)
    assert opened.headers["location"] == f"/ui/jobs/{job['id']}"


async def test_a_jobs_lock_is_shown_escaped_on_its_page_and_in_job_lists(api: Api) -> None:
    """A job's lock appears, escaped, on its page and in the jobs and failed tables, as a
    link to the jobs that share it; a job without a lock shows none."""
    await _signin(api.client)
    lock = f'db&"{INJECTION}'
    locked = await api.enqueue(queue="locks", lock=lock, max_attempts=1)
    api.clock.advance(1)  # older than ``free``, so the claim below takes ``locked``
    free = await api.enqueue(queue="locks")
    shown = "db&amp;&#34;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    link = "/ui/jobs?lock=db%26%22%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"
    page = (await api.client.get(f"/ui/jobs/{locked['id']}")).text
    assert "<script>alert" not in page
    assert f'<dt>lock</dt><dd><a href="{link}">{shown}</a></dd>' in page
    assert "<dt>lock</dt>" not in (await api.client.get(f"/ui/jobs/{free['id']}")).text
    listing = (await api.client.get("/ui/jobs", params={"queue": "locks"})).text
    assert "<th>lock</th>" in listing
    assert f'<td class="lock"><a href="{link}">{shown}</a></td>' in listing
    assert listing.count('<td class="lock"></td>') == 1  # the job without a lock
    assert "<script>alert" not in listing
    _, headers = await api.agent()
    (lease,) = await api.claim(headers, queues=["locks"])
    assert lease["job"]["id"] == locked["id"]
    r = await api.client.post(
        f"/v1/jobs/{locked['id']}/fail", json={"epoch": 1, "error": "x"}, headers=headers
    )
    assert r.status_code == 200, r.text
    failed = (await api.client.get("/ui/failed", params={"queue": "locks"})).text
    assert f'<td class="lock"><a href="{link}">{shown}</a></td>' in failed


async def test_a_scheduled_jobs_page_names_its_schedule(api: Api) -> None:
    """The job a schedule enqueued names the schedule, linked to the schedules page (a
    schedule's name is letters, digits and ``_.:-``: nothing to escape); a job enqueued
    by a caller shows no schedule."""
    name = "nightly.report"
    api.clock.set(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC).timestamp())
    body = {"cron": "*/5 * * * *", "job": {"kind": "report", "queue": "cron"}}
    path = f"/v1/schedules/{name}"
    assert (await api.client.put(path, json=body, headers=api.admin)).status_code == 201
    api.clock.set(datetime(2026, 5, 4, 10, 5, tzinfo=UTC).timestamp())
    assert await fire_due(api.co) == 1
    await _signin(api.client)  # at the clock's time: a session is judged by it
    (job,) = (await api.client.get("/v1/jobs?queue=cron", headers=api.admin)).json()["items"]
    page = (await api.client.get(f"/ui/jobs/{job['id']}")).text
    assert f'<dt>schedule</dt><dd><a href="/ui/schedules">{name}</a></dd>' in page
    plain = await api.enqueue(queue="cron")
    assert "<dt>schedule</dt>" not in (await api.client.get(f"/ui/jobs/{plain['id']}")).text


async def test_jobs_page_filters_and_pages_with_a_cursor(api: Api) -> None:
    """The jobs page filters like GET /v1/jobs and pages fifty at a time with its cursor."""
    await _signin(api.client)
    for i in range(55):
        await api.enqueue(queue="bulk", kind="even" if i % 2 == 0 else "odd")
        api.clock.advance(0.001)
    first = (await api.client.get("/ui/jobs", params={"queue": "bulk"})).text
    assert first.count("<tr>") == 50 + 1  # the header row
    nxt = re.search(r'rel="next" href="([^"]+)"', first)
    assert nxt
    second = (await api.client.get(nxt.group(1).replace("&amp;", "&"))).text
    assert second.count("<tr>") == 5 + 1
    odd = (await api.client.get("/ui/jobs", params={"kind": "odd"})).text
    api_odd = (await api.client.get("/v1/jobs?kind=odd", headers=api.admin)).json()["items"]
    assert odd.count("<tr>") == len(api_odd) + 1 == 28


async def _session_ids(api: Api) -> list[str]:
    page = await api.co.agents.query(
        Query(where=[eq("kind", "session")], partition_key=SESSIONS_PARTITION)
    )
    return sorted(doc.id for doc in page.items)


async def test_a_sign_in_deletes_the_sessions_that_ended_and_only_those(api: Api) -> None:
    """Sessions nobody signed out of are deleted by later sign-ins once ended, never before;
    two purges at once (two replicas) delete each ended session once, without an error."""
    for _ in range(3):
        await _signin(api.client)
    ended = await _session_ids(api)
    assert len(ended) == 3
    api.clock.advance(SESSION_SECONDS - 60)
    await _signin(api.client)  # nothing has ended yet: nothing is deleted
    assert len(await _session_ids(api)) == 4
    api.clock.advance(120)  # the first three have ended, the fourth has not
    purged = await asyncio.gather(purge_expired(api.co), purge_expired(api.co))
    assert sum(purged) == 3
    live = await _session_ids(api)
    assert len(live) == 1
    assert not set(live) & set(ended)
    assert (await api.client.get("/ui/")).status_code == 200  # the live session still works
    api.clock.advance(SESSION_SECONDS)
    await _signin(api.client)  # the sign-in itself purges the one that ended meanwhile
    assert len(await _session_ids(api)) == 1


async def test_the_console_and_metrics_share_one_queue_recount(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's queue pages and ``/metrics``' gauges read one snapshot per replica:
    a visit to each recounts the queues once, not once each (before: twice an interval)."""
    counts = CallCounter(monkeypatch, api.co.jobs, "count")
    api.app.state.queue_gauges.max_age = 3600.0  # no recount falls due during the test
    await api.enqueue(queue="shared")
    await _signin(api.client)
    for path in ("/ui/queues", "/metrics", "/ui/", "/metrics", "/ui/queues"):
        assert (await api.client.get(path)).status_code == 200, path
    assert counts.calls == 5  # one queue, one count per status, once


async def test_a_made_up_session_cookie_is_refused_without_a_store_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cookie needs no token to send: each made-up one cost a store read (on Cosmos DB,
    request units of the container that authenticates agents). Now its MAC refuses it,
    a real cookie with its MAC altered too, before anything is read."""
    await _signin(api.client)
    real = api.client.cookies.get("fleet_console", path="/ui")
    assert real
    session_id, _, mac = real.rpartition(".")
    reads = CallCounter(monkeypatch, api.co.agents, "get")
    forged = (
        "made-up",
        "x" * 43,
        f"{session_id}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        f"{session_id}x.{mac}",
        session_id,  # the id alone: a cookie of the old form
    )
    for cookie in forged:
        api.client.cookies.set("fleet_console", cookie, path="/ui")
        r = await api.client.get("/ui/", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/ui/signin"), cookie
    assert reads.calls == 0
    api.client.cookies.set("fleet_console", real, path="/ui")
    assert (await api.client.get("/ui/", follow_redirects=False)).status_code == 200
    assert reads.calls == 1


async def test_console_integers_are_decimal_digits_as_the_apis_are(api: Api) -> None:
    """``/ui/failed?retried=5_0`` and a bulk retry ``limit`` of ``+1``, ``1.0`` or 5000 are
    refused (422, nothing retried); an empty limit is the API's default."""
    await _signin(api.client)
    csrf = await _csrf(api)
    job = await api.enqueue(queue="q")
    await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    r = await api.client.get("/ui/failed?retried=5_0")
    assert (r.status_code, "<h1>Refused</h1>" in r.text) == (422, True), r.text
    for limit in ("+1", "1.0", "1_0", "0", "5000"):
        form = {"csrf": csrf, "status": "cancelled", "limit": limit}
        r = await api.client.post("/ui/failed/retry", data=form)
        assert r.status_code == 422, (limit, r.text)
        assert "limit" in r.text, r.text
    assert (await api.job(job["id"]))["status"] == "cancelled"
    form = {"csrf": csrf, "status": "cancelled", "limit": ""}
    done = await api.client.post("/ui/failed/retry", data=form, follow_redirects=True)
    assert 'data-retried="1"' in done.text
    assert (await api.job(job["id"]))["status"] == "queued"
