"""The ``shell`` runner on real processes: results, failures, bad payloads, killing the group."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet_agent import Job, JobFailed, JobInfo, Lease, run_shell
from fleet_agent.shell import TAIL_BYTES

from .conftest import eventually


def shell_job(payload: dict[str, Any]) -> Job:
    """A claimed ``shell`` job as the worker would hand it to the runner."""
    now = datetime.now(UTC)
    info = JobInfo.from_json(
        {
            "id": "j1",
            "queue": "default",
            "kind": "shell",
            "payload": payload,
            "status": "leased",
            "attempts": 1,
            "max_attempts": 3,
            "cancel_requested": False,
            "updated_at": now.isoformat(),
        }
    )
    return Job(info, Lease("a1", "r1", 1, now + timedelta(seconds=30)))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process.

    A SIGKILLed process is not gone the instant ``kill`` returns: the kernel ends it
    asynchronously, so tests wait (briefly, with ``eventually``) for it to be gone.
    """
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_exit_zero_completes_with_the_exit_code_and_output_tails() -> None:
    """stdout and stderr come back (their last TAIL_BYTES), with exit code 0."""
    script = f"head -c {TAIL_BYTES * 3} /dev/zero | tr '\\0' a; echo; echo oops >&2"
    result = await run_shell(shell_job({"argv": ["sh", "-c", script]}))
    assert result["exit_code"] == 0
    assert result["stdout_tail"] == "a" * (TAIL_BYTES - 1) + "\n"
    assert result["stderr_tail"] == "oops\n"


async def test_cwd_and_env_reach_the_process_but_fleet_variables_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payload's env and cwd apply; the agent's FLEET_* variables (its token) are withheld."""
    monkeypatch.setenv("FLEET_AGENT_TOKEN", "secret-token")
    payload = {"argv": ["sh", "-c", "pwd; echo $GREETING; env"], "env": {"GREETING": "hello"}}
    result = await run_shell(shell_job({**payload, "cwd": str(tmp_path)}))
    lines = result["stdout_tail"].splitlines()
    assert lines[:2] == [str(tmp_path), "hello"]
    assert "secret-token" not in result["stdout_tail"]


async def test_a_non_zero_exit_fails_retryable_with_code_and_stderr() -> None:
    """Exit 3 fails the attempt (retryable) naming the code and the stderr tail."""
    with pytest.raises(JobFailed) as caught:
        await run_shell(shell_job({"argv": ["sh", "-c", "echo broken >&2; exit 3"]}))
    assert caught.value.retryable is True
    assert caught.value.message == "exit code 3; stderr: broken\n"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "payload.argv must be a non-empty list of strings"),
        ({"argv": "ls -l"}, "payload.argv must be a non-empty list of strings"),
        ({"argv": []}, "payload.argv must be a non-empty list of strings"),
        ({"argv": ["ls", 1]}, "payload.argv must be a non-empty list of strings"),
        ({"argv": [""]}, "payload.argv[0] (the command) is empty"),
        ({"argv": ["ls"], "env": {"A": 1}}, "payload.env must be an object of string values"),
        ({"argv": ["ls"], "env": ["A=1"]}, "payload.env must be an object of string values"),
        ({"argv": ["ls"], "cwd": 7}, "payload.cwd must be a string"),
        ({"argv": ["ls"], "timeout_seconds": -1}, "payload.timeout_seconds must be a positive"),
        ({"argv": ["ls"], "timeout_seconds": "5"}, "payload.timeout_seconds must be a positive"),
        ({"argv": ["ls"], "timeout_seconds": True}, "payload.timeout_seconds must be a positive"),
        ({"argv": ["ls"], "args": []}, "payload has unknown fields: args"),
        ({"argv": ["no-such-command-fleet"]}, "command not found: no-such-command-fleet"),
        ({"argv": ["ls"], "cwd": "/no/such/dir"}, "working directory not found: /no/such/dir"),
        ({"argv": ["/etc/hostname"]}, "cannot start /etc/hostname"),
    ],
)
async def test_payloads_the_runner_cannot_run_fail_for_good(
    payload: dict[str, Any], message: str
) -> None:
    """Bad payloads and missing commands fail with retryable=False and a clear message."""
    with pytest.raises(JobFailed) as caught:
        await run_shell(shell_job(payload))
    assert caught.value.retryable is False
    assert caught.value.message.startswith(message)


def _group_script(pids: Path) -> list[str]:
    # A leader and a background grandchild, both recorded, both sleeping long.
    return [
        "sh",
        "-c",
        f"sleep 60 & echo $! > {pids}.tmp; echo $$ >> {pids}.tmp; mv {pids}.tmp {pids}; wait",
    ]


async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Past timeout_seconds the leader and its background child die; the attempt fails."""
    pids = tmp_path / "pids"
    job = shell_job({"argv": _group_script(pids), "timeout_seconds": 0.5})
    with pytest.raises(JobFailed, match=r"timed out after 0.5 s") as caught:
        await asyncio.wait_for(run_shell(job), 10)
    assert caught.value.retryable is True
    recorded = [int(pid) for pid in pids.read_text().split()]
    await eventually(lambda: not any(alive(pid) for pid in recorded), within=5)


async def test_cancelling_the_runner_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Cancelling the handler's task (cancel, lease loss, shutdown) kills every process of it."""
    pids = tmp_path / "pids"
    task = asyncio.create_task(run_shell(shell_job({"argv": _group_script(pids)})))
    await eventually(pids.exists)
    recorded = [int(pid) for pid in pids.read_text().split()]
    assert all(alive(pid) for pid in recorded)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    await eventually(lambda: not any(alive(pid) for pid in recorded), within=5)


async def test_background_children_left_at_exit_are_killed_too(tmp_path: Path) -> None:
    """A job whose leader exits leaves nothing behind (and does not hang on inherited pipes)."""
    pid_file = tmp_path / "pid"
    argv = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; exit 0"]
    result = await asyncio.wait_for(run_shell(shell_job({"argv": argv})), 10)
    assert result["exit_code"] == 0
    child = int(pid_file.read_text())
    await eventually(lambda: not alive(child), within=5)


def test_job_repr_never_shows_the_payload() -> None:
    """Logs and tracebacks that print a Job show its id and kind, not its payload."""
    text = repr(shell_job({"argv": ["echo", "s3cr3t"]}))
    assert "s3cr3t" not in text
    assert os.sep not in text
