"""Real ``fleet-coordinator serve`` and ``fleet-agent run`` processes on SQLite."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_agent import AgentClient, LeaseLost

from tests.support.agents import AgentProcess
from tests.support.served import Served, free_port, tool_path

from .conftest import eventually
from .test_shell import alive

FAST_REAPER = {"FLEET_REAPER_INTERVAL_SECONDS": "0.2", "FLEET_LONG_POLL_INTERVAL_SECONDS": "0.05"}
AGENT_ARGS = ("--wait-seconds", "1", "--log-level", "info")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A coordinator process on SQLite with a 0.2 s reaper, shared by the module's tests
    (each test uses its own queue), stopped at the end."""
    with Served(cwd=tmp_path_factory.mktemp("coordinator"), env=FAST_REAPER) as server:
        yield server


@pytest.fixture
async def admin(served: Served) -> AsyncIterator[Admin]:
    """An admin client of ``served`` working on a queue of its own."""
    async with httpx.AsyncClient(
        base_url=served.base_url, headers=served.admin_headers, timeout=10
    ) as http:
        yield Admin(http, f"q{uuid.uuid4().hex[:12]}")


class Admin:
    """The admin calls these tests make, on one queue."""

    def __init__(self, http: httpx.AsyncClient, queue: str) -> None:
        self.http = http
        self.queue = queue

    def args(self, *more: str) -> tuple[str, ...]:
        """``fleet-agent run`` options for this test's queue."""
        return (*AGENT_ARGS, "--queue", self.queue, *more)

    async def enqueue(self, payload: dict[str, Any], **fields: Any) -> str:
        body = {"kind": "shell", "payload": payload, "queue": self.queue, **fields}
        r = await self.http.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        return job_id

    async def agent(self, name: str, capacity: int = 1) -> tuple[str, str]:
        body = {"name": name, "capacity": capacity, "queues": [self.queue]}
        r = await self.http.post("/v1/agents", json=body)
        assert r.status_code == 201, r.text
        return r.json()["agent"]["id"], r.json()["token"]

    async def shell(self, argv: list[str], **fields: Any) -> str:
        return await self.enqueue({"argv": argv}, **{"lease_seconds": 1.5, **fields})

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    async def status_is(self, job_id: str, *statuses: str) -> bool:
        return (await self.job(job_id))["status"] in statuses


def hang_once(tmp_path: Path) -> tuple[list[str], Path]:
    """A script whose first run records its pid and hangs; any later run exits 0."""
    pid = tmp_path / "first.pid"
    script = f"[ -e {pid} ] && exit 0; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; exec sleep 60"
    return ["sh", "-c", script], pid


async def test_a_killed_agents_job_is_finished_by_another_and_its_late_report_rejected(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """SIGKILL an agent mid-job: its shell process dies with it, the lease expires, another
    agent completes the job, and the killed agent's report with its old epoch gets 409."""
    _, token_a = await admin.agent("a")
    b_id, token_b = await admin.agent("b")
    argv, pid_file = hang_once(tmp_path)
    job_id = await admin.shell(argv)
    with AgentProcess(served.base_url, token_a, tmp_path, admin.args(), name="a") as agent_a:
        await eventually(pid_file.exists)
        agent_a.signal(signal.SIGKILL)
        agent_a.wait()
    await eventually(lambda: not alive(int(pid_file.read_text())))  # died with its agent
    with AgentProcess(served.base_url, token_b, tmp_path, admin.args(), name="b"):
        await eventually(lambda: admin.status_is(job_id, "succeeded"), within=20)
    job = await admin.job(job_id)
    assert [(run["outcome"], run["epoch"]) for run in job["runs"]] == [
        ("lease_expired", 1),
        ("succeeded", 2),
    ]
    assert job["runs"][1]["agent_id"] == b_id
    async with AgentClient(served.base_url, token_a) as late:
        with pytest.raises(LeaseLost):
            await late.complete(job_id, 1, {"late": True})
    assert (await admin.job(job_id))["result"]["exit_code"] == 0


async def test_a_cancel_reaches_the_running_shell_process_within_one_heartbeat_interval(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """With a 1.5 s lease (heartbeat every 0.5 s) the process dies soon after the cancel."""
    _, token = await admin.agent("a")
    argv, pid_file = hang_once(tmp_path)
    job_id = await admin.shell(argv)
    with AgentProcess(served.base_url, token, tmp_path, admin.args()):
        await eventually(pid_file.exists)
        pid = int(pid_file.read_text())
        started = time.monotonic()
        r = await admin.http.post(f"/v1/jobs/{job_id}/cancel")
        assert r.json()["cancel_requested"] is True
        await eventually(lambda: not alive(pid), within=5)
        elapsed = time.monotonic() - started
        await eventually(lambda: admin.status_is(job_id, "cancelled"))
    heartbeat_interval = 1.5 / 3
    assert elapsed < heartbeat_interval + 0.5, elapsed  # + one request and the kill
    job = await admin.job(job_id)
    assert [run["outcome"] for run in job["runs"]] == ["cancelled"]


async def test_sigterm_lets_the_running_job_finish_and_the_agent_exits_zero(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """A job running when SIGTERM arrives completes within the grace period; exit status 0."""
    _, token = await admin.agent("a")
    flag = tmp_path / "started"
    job_id = await admin.shell(["sh", "-c", f"touch {flag}; sleep 0.5; echo finished"])
    with AgentProcess(served.base_url, token, tmp_path, admin.args()) as agent:
        await eventually(flag.exists)
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
    job = await admin.job(job_id)
    assert job["status"] == "succeeded"
    assert job["result"]["stdout_tail"] == "finished\n"


async def test_a_second_sigterm_ends_an_idle_agents_long_poll_at_once(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """Idle in a 30 s long-poll: the first SIGTERM lets the poll finish, the second ends
    the agent at once, exit status 0.

    Before, the second signal did not cut the poll: the agent stayed up to 30 s. When the
    first signal lands between the job's report and the next poll, the agent stops by
    itself and the second one meets it finishing: it must not kill it then (exit -15,
    seen once in CI before the worker put back the handlers it found).
    """
    _, token = await admin.agent("a")
    job_id = await admin.shell(["true"])
    with AgentProcess(
        served.base_url, token, tmp_path, admin.args("--wait-seconds", "30")
    ) as agent:
        await eventually(lambda: admin.status_is(job_id, "succeeded"), within=20)
        agent.signal(signal.SIGTERM)
        await eventually(lambda: "agent.stopping" in agent.log_text())
        agent.signal(signal.SIGTERM)
        assert agent.wait(5) == 0
    assert "Traceback" not in agent.log_text()


STUCK_HANDLER = """
import pathlib
import threading


def stuck(job):
    pathlib.Path(job.payload["flag"]).touch()
    threading.Event().wait()  # a plain def that never returns: no thread can be stopped


HANDLERS = {"stuck": stuck}
"""


async def test_a_thread_handler_outliving_the_grace_period_does_not_keep_the_agent_up(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """A sync handler still running when the grace period ends: its job is released and
    the agent exits 0 at once, the handler's thread ending with the process.

    Before, the agent released the job but never exited: the thread was the default
    executor's, which ``asyncio.run`` and the interpreter wait for at exit.
    """
    _, token = await admin.agent("a")
    (tmp_path / "stuck_handlers.py").write_text(STUCK_HANDLER)
    flag = tmp_path / "started"
    job_id = await admin.enqueue({"flag": str(flag)}, kind="stuck", lease_seconds=30)
    args = admin.args("--handlers", "stuck_handlers:HANDLERS", "--grace-seconds", "0.2")
    env = {"PYTHONPATH": str(tmp_path)}
    with AgentProcess(served.base_url, token, tmp_path, args, env=env) as agent:
        await eventually(flag.exists)
        agent.signal(signal.SIGTERM)
        assert agent.wait(5) == 0
    job = await admin.job(job_id)
    assert (job["status"], job["attempts"]) == ("queued", 0)
    assert [run["outcome"] for run in job["runs"]] == ["released"]
    assert "Traceback" not in agent.log_text()


async def test_agents_reconnect_after_a_coordinator_restart_and_finish_the_run(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """Kill and restart the coordinator mid-run: both agents carry on and every job succeeds."""
    ids = [await admin.shell(["sleep", "0.2"], lease_seconds=5) for _ in range(16)]
    agents = [await admin.agent(name, capacity=2) for name in ("a", "b")]
    args = admin.args("--concurrency", "2")
    with (
        AgentProcess(served.base_url, agents[0][1], tmp_path, args, name="a") as a,
        AgentProcess(served.base_url, agents[1][1], tmp_path, args, name="b") as b,
    ):

        async def succeeded() -> int:
            return sum([await admin.status_is(job_id, "succeeded") for job_id in ids])

        await eventually(lambda: _at_least(succeeded(), 4), within=20)
        served.restart()
        await eventually(lambda: _at_least(succeeded(), len(ids)), within=40)
        assert a.running()
        assert b.running()
        assert "cannot reach the coordinator" in a.log_text() + b.log_text()  # it saw the outage


async def _at_least(count: Any, expected: int) -> bool:
    return bool(await count >= expected)


async def test_bad_shell_jobs_fail_for_good_and_the_agent_keeps_running(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """No argv, wrong types and a missing command fail after one attempt; a good job then runs."""
    _, token = await admin.agent("a")
    bad_ids = [
        await admin.enqueue(payload)
        for payload in ({}, {"argv": "ls"}, {"argv": ["no-such-command-fleet"]})
    ]
    good = await admin.shell(["echo", "fine"])
    with AgentProcess(served.base_url, token, tmp_path, admin.args()) as agent:
        await eventually(lambda: admin.status_is(good, "succeeded"), within=20)
        for job_id in bad_ids:
            await eventually(lambda job_id=job_id: admin.status_is(job_id, "failed"))
        assert agent.running()
    errors = [(await admin.job(job_id))["last_error"] for job_id in bad_ids]
    assert errors == [
        "payload.argv must be a non-empty list of strings",
        "payload.argv must be a non-empty list of strings",
        "command not found: no-such-command-fleet",
    ]
    assert [(await admin.job(job_id))["attempts"] for job_id in bad_ids] == [1, 1, 1]


def run_cli(*args: str, token: str = "fa.nobody.nothing") -> subprocess.CompletedProcess[str]:
    """``fleet-agent`` run to its end, its output captured."""
    return subprocess.run(
        [tool_path("fleet-agent"), *args],
        env={"FLEET_AGENT_TOKEN": token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_wrong_token_is_one_clear_line_and_a_non_zero_exit(served: Served) -> None:
    """A token the coordinator does not know: exit 1, one line on stderr, no traceback."""
    done = run_cli("run", "--url", served.base_url)
    assert done.returncode == 1
    [line] = [ln for ln in done.stderr.splitlines() if not ln.startswith("{")]
    assert line.startswith(f"fleet-agent: error: the coordinator at {served.base_url} refused")
    assert "401 unauthorized" in line
    assert "Traceback" not in done.stderr + done.stdout
    assert "nobody.nothing" not in done.stderr + done.stdout


def test_an_unreachable_url_is_one_clear_line_and_a_non_zero_exit() -> None:
    """Nothing listens at the URL: exit 1 after the start-up budget, one line, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("run", "--url", url, "--startup-timeout", "0.5")
    assert done.returncode == 1
    [line] = [ln for ln in done.stderr.splitlines() if not ln.startswith("{")]
    assert line.startswith(f"fleet-agent: error: cannot reach the coordinator at {url}")
    assert "Traceback" not in done.stderr


async def test_sigterm_during_start_up_retries_exits_zero_at_once(tmp_path: Path) -> None:
    """Nothing listens yet, start-up budget 20 s: SIGTERM ends the agent at once, exit 0.

    Before, the agent waited out the whole budget and exited 1.
    """
    url = f"http://127.0.0.1:{free_port()}"
    args = ("--startup-timeout", "20", "--log-level", "info")
    with AgentProcess(url, "fa.nobody.nothing", tmp_path, args) as agent:
        await eventually(lambda: "stamina.retry_scheduled" in agent.log_text(), within=20)
        agent.signal(signal.SIGTERM)
        started = time.monotonic()
        assert agent.wait(20) == 0
        assert time.monotonic() - started < 5
    assert "Traceback" not in agent.log_text()


@pytest.mark.parametrize("token", ["fa.secret-token\r", "fa.secret\ntoken", "fa.sécret"])
def test_a_token_a_header_cannot_carry_is_one_clear_line_and_exit_2(token: str) -> None:
    """A token ending in a carriage return (a Windows file): one line, exit 2, never the token.

    Before, a traceback (``ValueError: header 'Authorization' holds a line break``).
    """
    done = run_cli("run", "--url", "http://127.0.0.1:9", token=token)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fleet-agent: error: the agent token (--token or FLEET_AGENT_TOKEN) holds a character"
        " an HTTP header cannot carry (a line break, a space or a non-ASCII one)"
    ]
    assert "secret" not in done.stderr + done.stdout


def test_credentials_in_the_url_never_reach_the_agents_output() -> None:
    """``http://user:PW@host``: the retry lines and the error line show ``***@`` instead."""
    port = free_port()
    done = run_cli("run", "--url", f"http://user:PW@127.0.0.1:{port}", "--startup-timeout", "0.5")
    assert done.returncode == 1
    assert "stamina.retry_scheduled" in done.stderr  # the retries were logged
    assert f"fleet-agent: error: cannot reach the coordinator at http://***@127.0.0.1:{port}" in (
        done.stderr
    )
    assert "PW" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--handlers", "no_such_module_fleet:HANDLERS"), "cannot load handler"),
        (("--handlers", "json"), "must look like package.module:attr"),
        (("--handlers", "json:dumps"), "is not a mapping of kinds to handlers"),
        (("--url", "ftp://x"), "is not an http(s) URL"),
        (("--concurrency", "0"), "--concurrency must be at least 1"),
        (("--wait-seconds", "31"), "--wait-seconds must be between 0 and 30"),
        (("--wait-seconds", "-1"), "--wait-seconds must be between 0 and 30"),
        (("--grace-seconds", "-1"), "--grace-seconds must "),
        (("--report-window", "nan"), "--report-window must be a finite number of seconds"),
        (("--startup-timeout", "inf"), "--startup-timeout must be a finite number of seconds"),
    ],
)
def test_bad_command_lines_are_one_clear_line_and_exit_2(
    args: tuple[str, ...], message: str
) -> None:
    """Handlers that do not load and bad options exit 2 with the reason, no traceback."""
    done = run_cli("run", "--url", "http://127.0.0.1:9", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def readme_worker_example() -> str:
    """The Python block of README.md that imports fleet_agent."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = [
        block.split("```", 1)[0]
        for block in readme.split("```python\n")[1:]
        if "from fleet_agent import" in block
    ]
    return example


def start_python(script: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python script`` in its own session, with only ``env`` (and a PATH)."""
    return subprocess.Popen(
        [sys.executable, str(script)],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=script.parent,
        start_new_session=True,
    )


async def test_the_readme_worker_example_runs_a_job(
    served: Served, admin: Admin, tmp_path: Path
) -> None:
    """The ten-line worker in README.md, run as printed (URL aside), completes a job."""
    script = tmp_path / "worker.py"
    script.write_text(readme_worker_example().replace("http://127.0.0.1:8787", served.base_url))
    _, token = await admin.agent("readme")
    job_id = await admin.enqueue({"width": 640}, kind="resize")
    worker = start_python(script, {"FLEET_AGENT_TOKEN": token})
    try:
        await eventually(lambda: admin.status_is(job_id, "succeeded"), within=20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        worker.kill()
        worker.wait()
    assert (await admin.job(job_id))["result"] == {"width": 320}
