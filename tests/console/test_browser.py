"""The console in a real headless Chromium against a real ``fleet-coordinator serve``.

Each test does what a person does — sign in, filter, open a job, cancel, retry
one and in bulk, pause and resume a queue, drain and delete an agent — and
compares what the page shows with what the API answers. The tests of this
module share one server and one browser and run in order (sign-in first).
"""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from .conftest import Console, chromium

STATUSES = ("queued", "leased", "succeeded", "failed", "cancelled")


def _agent(c: Console, name: str, **fields: Any) -> tuple[str, dict[str, str]]:
    r = c.http.post("/v1/agents", json={"name": name, **fields}, headers=c.admin)
    assert r.status_code == 201, r.text
    data = r.json()
    return data["agent"]["id"], {"Authorization": f"Bearer {data['token']}"}


def _enqueue(c: Console, **fields: Any) -> dict[str, Any]:
    r = c.http.post("/v1/jobs", json={"payload": {}, **fields}, headers=c.admin)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


def _claim(c: Console, headers: dict[str, str], queue: str, n: int) -> list[dict[str, Any]]:
    r = c.http.post("/v1/claims", json={"queues": [queue], "max_jobs": n}, headers=headers)
    assert r.status_code == 200, r.text
    leases: list[dict[str, Any]] = r.json()["leases"]
    return leases


def _job(c: Console, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = c.http.get(f"/v1/jobs/{job_id}", headers=c.admin).json()
    return data


def _queues(c: Console) -> dict[str, dict[str, Any]]:
    items = c.http.get("/v1/queues", headers=c.admin).json()["items"]
    return {q["queue"]: q for q in items}


@pytest.fixture(scope="module")
def seeded(console: Console) -> dict[str, Any]:
    """A small fleet with jobs in every status across three queues, as a console would see it."""
    c = console
    worker, headers = _agent(c, "worker-1", labels={"gpu": "a100", "zone": "eu-1"}, capacity=8)
    _agent(c, "worker-2", labels={"zone": "eu-2"}, capacity=4)
    spare, _ = _agent(c, "spare-worker", capacity=2)
    for i in range(14):
        _enqueue(c, queue="build", kind="compile", payload={"target": f"svc-{i}", "opt": 2})
    for i in range(6):
        _enqueue(c, queue="build", kind="resize", payload={"width": 640 + i, "height": 480})
    for lease in _claim(c, headers, "build", 8)[:7]:
        job_id, epoch = lease["job"]["id"], lease["lease"]["epoch"]
        c.http.post(
            f"/v1/jobs/{job_id}/complete",
            json={"epoch": epoch, "result": {"artifact": f"{job_id[:8]}.tar.gz"}},
            headers=headers,
        )
    failed = []
    for i in range(3):
        job = _enqueue(c, queue="reports", kind="render", max_attempts=1, payload={"report": i})
        failed.append(job["id"])
    for lease in _claim(c, headers, "reports", 3):
        c.http.post(
            f"/v1/jobs/{lease['job']['id']}/fail",
            json={"epoch": 1, "error": "TimeoutError: upstream did not answer in 30s"},
            headers=headers,
        )
    deploy = [_enqueue(c, queue="deploy", kind="rollout", payload={"env": "staging"})["id"]]
    storied = _history(c, headers)
    return {
        "storied": storied,
        "worker": worker,
        "headers": headers,
        "spare": spare,
        "failed": failed,
        "deploy": deploy,
    }


def _history(c: Console, headers: dict[str, str]) -> str:
    """A job released once, failed once, retried and completed: three runs on its page."""
    job = _enqueue(
        c, queue="build", kind="compile", priority=10, payload={"target": "api", "opt": 3}
    )
    path = f"/v1/jobs/{job['id']}"

    def claimed() -> int:
        [lease] = _claim(c, headers, "build", 1)
        assert lease["job"]["id"] == job["id"]
        return int(lease["lease"]["epoch"])

    c.http.post(f"{path}/release", json={"epoch": claimed()}, headers=headers)
    error = "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device"
    epoch = claimed()
    progress = {"step": "link", "done": 7, "of": 9}
    c.http.post(f"{path}/heartbeat", json={"epoch": epoch, "progress": progress}, headers=headers)
    c.http.post(
        f"{path}/fail",
        json={"epoch": epoch, "error": error, "retryable": False},
        headers=headers,
    )
    c.http.post(f"{path}/retry", headers=c.admin)
    c.http.post(
        f"{path}/complete",
        json={"epoch": claimed(), "result": {"artifact": "api.tar.gz"}},
        headers=headers,
    )
    return str(job["id"])


def test_signing_in_with_the_admin_token_opens_the_overview(
    console: Console, seeded: dict[str, Any]
) -> None:
    """An anonymous visit lands on sign-in; the admin token opens the overview, leaving no trace."""
    c = console
    c.open("/ui/")
    c.wait(ec.url_contains("/ui/signin"))
    token_field = c.wait(ec.visibility_of_element_located((By.ID, "token")))
    c.screenshot("signin")
    token_field.send_keys(c.server.admin_token)
    c.click("section.signin button[type=submit]")
    c.wait_text("h1", "Overview")
    assert c.server.admin_token not in c.driver.current_url
    assert c.server.admin_token not in c.driver.page_source
    cookies = {k["name"]: k for k in c.driver.get_cookies()}
    assert cookies["fleet_console"]["httpOnly"] is True
    assert cookies["fleet_console"]["sameSite"] == "Strict"
    assert c.server.admin_token not in c.server.log_path.read_text()


def test_overview_and_queues_show_what_the_api_counts(
    console: Console, seeded: dict[str, Any]
) -> None:
    """The overview's totals and bars and the queues table agree with GET /v1/queues."""
    c = console
    api = _queues(c)
    c.open("/ui/")
    c.wait_text("h1", "Overview")
    for status in STATUSES:
        shown = c.css(f"[data-total={status}]").text
        assert int(shown) == sum(q[status] for q in api.values()), status
    assert len(c.all("svg.bar")) == len(api)
    assert c.all("figure.chart polyline")
    c.screenshot("overview")
    c.open("/ui/queues")
    for name, entry in api.items():
        row = f"tr[data-queue='{name}']"
        for status in STATUSES:
            assert int(c.css(f"{row} [data-count={status}]").text) == entry[status]
    c.screenshot("queues")


def test_pausing_and_resuming_a_queue_from_the_queues_page(
    console: Console, seeded: dict[str, Any]
) -> None:
    """Pause stops claims from the queue (API: paused, no lease); resume hands its job out."""
    c = console
    c.open("/ui/queues")
    c.click("tr[data-queue='deploy'] button")
    c.wait_text("tr[data-queue='deploy'] .badge", "paused")
    assert _queues(c)["deploy"]["paused"] is True
    assert _claim(c, seeded["headers"], "deploy", 1) == []
    c.click("tr[data-queue='deploy'] button")
    c.wait_text("tr[data-queue='deploy'] .badge", "active")
    assert _queues(c)["deploy"]["paused"] is False
    [lease] = _claim(c, seeded["headers"], "deploy", 1)
    assert lease["job"]["id"] == seeded["deploy"][0]


def test_filtering_jobs_and_opening_one_by_id(console: Console, seeded: dict[str, Any]) -> None:
    """Filtering by kind and status lists what GET /v1/jobs lists; a job opens by its id."""
    c = console
    c.open("/ui/jobs")
    c.css("form.filters input[name=kind]").send_keys("resize")
    c.css("form.filters select[name=status] option[value=queued]").click()
    c.click("form.filters button[type=submit]")
    c.wait(ec.url_contains("kind=resize"))
    api = c.http.get("/v1/jobs?kind=resize&status=queued", headers=c.admin).json()["items"]
    links = [a.get_attribute("href") for a in c.all("table.jobs td.mono a")]
    assert [str(href).rsplit("/", 1)[1] for href in links] == [j["id"] for j in api]
    assert api
    c.screenshot("jobs")
    target = api[0]
    c.css("form.open input[name=id]").send_keys(target["id"])
    c.click("form.open button[type=submit]")
    c.wait_text("h1", target["id"])
    payload = c.css("pre[data-field=payload]").text
    assert f'"width": {target["payload"]["width"]}' in payload


def test_cancelling_and_retrying_a_job_from_its_page(
    console: Console, seeded: dict[str, Any]
) -> None:
    """Cancel ends a queued job and Retry requeues it, as the API then reports."""
    c = console
    job = _enqueue(c, queue="build", kind="compile", payload={"target": "svc-cancel"})
    c.open(f"/ui/jobs/{job['id']}")
    c.click(".actions button.warn")
    c.wait_text("dl.facts .badge", "cancelled")
    assert _job(c, job["id"])["status"] == "cancelled"
    c.click(".actions button")
    c.wait_text("dl.facts .badge", "queued")
    assert _job(c, job["id"])["status"] == "queued"
    # A job with a history: its runs as a timeline, newest first.
    c.open(f"/ui/jobs/{seeded['storied']}")
    c.wait_text("ol.timeline", "succeeded")
    outcomes = [b.text for b in c.all("ol.timeline li.run .badge")]
    api = _job(c, seeded["storied"])
    assert outcomes == [run["outcome"] for run in reversed(api["runs"])]
    assert outcomes == ["succeeded", "failed", "released"]
    assert "No space left on device" in c.css("ol.timeline").text
    assert '"done": 7' in c.css("ol.timeline li.o-failed [data-field=progress]").text
    c.screenshot("job")


def test_retrying_failed_jobs_in_bulk(console: Console, seeded: dict[str, Any]) -> None:
    """The failed page lists the failed jobs of a queue; Retry in bulk requeues each of them."""
    c = console
    c.open("/ui/failed?queue=reports")
    rows = c.all("table.jobs td.mono a")
    assert len(rows) == len(seeded["failed"]) == _queues(c)["reports"]["failed"]
    assert "TimeoutError" in c.css("table.jobs").text
    c.screenshot("failed")
    c.click("form.bulk button[type=submit]")
    c.wait_text(".notice", f"Retried {len(seeded['failed'])} jobs")
    assert {_job(c, job_id)["status"] for job_id in seeded["failed"]} == {"queued"}
    assert c.all("table.jobs td.empty")


def test_draining_and_deleting_an_agent(console: Console, seeded: dict[str, Any]) -> None:
    """Drain marks the agent draining in the API; Delete (after confirming) removes it."""
    c = console
    c.open("/ui/agents")
    worker = seeded["worker"]
    api = {a["id"]: a for a in c.http.get("/v1/agents", headers=c.admin).json()["items"]}
    shown = c.css(f"tr[data-agent='{worker}'] [data-field=live_leases]").text
    assert int(shown) == api[worker]["live_leases"]
    c.screenshot("agents")
    c.click(f"tr[data-agent='{worker}'] button.warn")
    c.wait_text(f"tr[data-agent='{worker}']", "draining")
    assert c.http.get(f"/v1/agents/{worker}", headers=c.admin).json()["draining"] is True
    spare = seeded["spare"]
    c.click(f"tr[data-agent='{spare}'] button.danger")
    c.wait(ec.alert_is_present()).accept()
    c.wait(ec.invisibility_of_element_located((By.CSS_SELECTOR, f"tr[data-agent='{spare}']")))
    assert c.http.get(f"/v1/agents/{spare}", headers=c.admin).status_code == 404


def test_a_refusal_is_the_consoles_own_page(console: Console, seeded: dict[str, Any]) -> None:
    """A filter the API refuses, an action on an agent that is gone and a form over 16 KiB
    each show the console's page (no JSON), with the reason; nothing changes and the
    browser reports no CSP violation."""
    c = console
    c.csp_violations()  # forget what earlier tests logged
    c.open("/ui/jobs?kind=" + "k" * 300)
    c.wait_text("main h1", "Refused")
    assert "at most 255 characters" in c.css("ul.problems").text
    assert "Nothing was changed." in c.css("p.refusal").text
    c.click("main a[href='/ui/']")
    c.wait_text("h1", "Overview")
    # An agent deleted after its page was loaded: the page's Drain form still names it
    # (kept outside the part that refreshes itself, which would drop its row).
    gone, _ = _agent(c, "short-lived")
    c.open("/ui/agents")
    c.wait(ec.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-agent='{gone}']")))
    c.driver.execute_script(
        """window.staleForm = document.querySelector(arguments[0]).cloneNode(true);
        document.body.appendChild(window.staleForm);""",
        f"form[action='/ui/agents/{gone}/drain']",
    )
    assert c.http.delete(f"/v1/agents/{gone}", headers=c.admin).status_code == 204
    c.driver.execute_script("window.staleForm.submit();")
    c.wait_text("main h1", "Not found")
    assert f"No agent '{gone}'." in c.css("p.refusal").text
    # A form over 16 KiB, refused by the guard before the console reads it.
    c.open("/ui/queues")
    c.driver.execute_script(
        """const form = document.querySelector(arguments[0]);
        const note = document.createElement('input');
        note.type = 'hidden'; note.name = 'note'; note.value = 'a'.repeat(17000);
        form.appendChild(note); form.submit();""",
        "tr[data-queue='build'] form",
    )
    c.wait_text("main h1", "Too large")
    assert "Nothing was changed." in c.css("p.refusal").text
    assert _queues(c)["build"]["paused"] is False
    assert c.csp_violations() == []


def test_schedules_page_says_when_there_are_none(console: Console, seeded: dict[str, Any]) -> None:
    """With no schedules in the store the page says so."""
    c = console
    c.open("/ui/schedules")
    c.wait_text("table.schedules", "No schedules.")
    c.screenshot("schedules")


def test_an_open_page_refreshes_itself(console: Console, seeded: dict[str, Any]) -> None:
    """A job enqueued through the API appears on an open queues page without a reload."""
    c = console
    c.open("/ui/queues")
    cell = "tr[data-queue='build'] [data-count=queued]"
    before = int(c.css(cell).text)
    c.driver.execute_script("window.fleetNotReloaded = true;")
    _enqueue(c, queue="build", kind="compile", payload={"target": "late"})
    c.wait(lambda d: int(d.find_element(By.CSS_SELECTOR, cell).text) == before + 1)
    assert c.driver.execute_script("return window.fleetNotReloaded === true;")


def test_no_page_breaks_its_content_security_policy(
    console: Console, seeded: dict[str, Any]
) -> None:
    """Every page loads its scripts and styles without one CSP violation in the browser."""
    c = console
    c.csp_violations()  # forget what earlier tests logged
    for path in ("/ui/", "/ui/queues", "/ui/jobs", "/ui/failed", "/ui/agents", "/ui/schedules"):
        c.open(path)
        c.wait(lambda d: d.execute_script("return typeof window.htmx === 'object';"))
    assert c.csp_violations() == []


def test_the_console_works_with_javascript_off(console: Console, seeded: dict[str, Any]) -> None:
    """With scripts disabled a person still signs in, reads every page and pauses a queue."""
    c = console
    driver = chromium(javascript=False)
    try:
        plain = Console(driver, c.server, c.http, None)
        plain.open("/ui/signin")
        plain.css("#token").send_keys(c.server.admin_token)
        plain.click("section.signin button[type=submit]")
        plain.wait_text("h1", "Overview")
        assert driver.execute_script("return typeof window.htmx;") == "undefined"
        for path, heading in (("/ui/jobs", "Jobs"), ("/ui/agents", "Agents")):
            plain.open(path)
            plain.wait_text("h1", heading)
        plain.open("/ui/queues")
        plain.click("tr[data-queue='reports'] button")
        plain.wait_text("tr[data-queue='reports'] .badge", "paused")
        assert _queues(c)["reports"]["paused"] is True
        plain.click("tr[data-queue='reports'] button")
        plain.wait_text("tr[data-queue='reports'] .badge", "active")
    finally:
        driver.quit()
