"""The ``shell`` job kind: run ``argv`` in its own process group and report how it ended.

Payload: ``{"argv": ["cmd", "arg", …], "env": {str: str}?, "cwd": str?,
"timeout_seconds": number?}``. The process starts in a new session (its own
process group), so cancellation, lease loss, a timeout or the end of the job kill
the whole group, grandchildren included; on Linux the process also dies with the
agent (``PR_SET_PDEATHSIG``), so a killed agent leaves no job running twice.

Exit 0 completes the job with ``{"exit_code", "stdout_tail", "stderr_tail"}``; any
other exit fails it (retryable) with the code and the stderr tail; a payload the
runner cannot run fails it for good (``retryable=False``) with a clear message.
The child gets the agent's environment minus ``FLEET_*`` variables (the agent's
token never reaches a job), plus the payload's ``env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import JobFailed
from .job import Job

__all__ = ["TAIL_BYTES", "ShellCommand", "parse_shell_payload", "run_shell"]

TAIL_BYTES = 4096
"""How much of the end of stdout and of stderr a result keeps."""


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """A validated ``shell`` payload."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    timeout_seconds: float | None


def parse_shell_payload(payload: dict[str, Any]) -> ShellCommand:
    """Validate a ``shell`` payload; ``JobFailed(retryable=False)`` says what is wrong."""
    argv = payload.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise JobFailed("payload.argv must be a non-empty list of strings", retryable=False)
    if not argv[0]:
        raise JobFailed("payload.argv[0] (the command) is empty", retryable=False)
    env = payload.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise JobFailed("payload.env must be an object of string values", retryable=False)
    cwd = payload.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise JobFailed("payload.cwd must be a string", retryable=False)
    timeout = payload.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise JobFailed("payload.timeout_seconds must be a positive number", retryable=False)
    unknown = sorted(set(payload) - {"argv", "env", "cwd", "timeout_seconds"})
    if unknown:
        raise JobFailed(f"payload has unknown fields: {', '.join(unknown)}", retryable=False)
    return ShellCommand(argv, env, cwd, None if timeout is None else float(timeout))


async def run_shell(job: Job) -> dict[str, Any]:
    """Run a ``shell`` job (the handler ``fleet-agent run`` registers for that kind)."""
    command = parse_shell_payload(job.payload)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(command.env)
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await _start(loop, command, env)
    except FileNotFoundError as exc:
        missing = command.cwd if exc.filename == command.cwd else command.argv[0]
        what = "working directory" if missing == command.cwd else "command"
        raise JobFailed(f"{what} not found: {missing}", retryable=False) from exc
    except (PermissionError, NotADirectoryError, OSError) as exc:
        raise JobFailed(f"cannot start {command.argv[0]}: {exc.strerror}", retryable=False) from exc
    proc = asyncio.subprocess.Process(transport, protocol, loop)
    assert proc.stdout is not None
    assert proc.stderr is not None
    readers = [asyncio.create_task(_tail(proc.stdout)), asyncio.create_task(_tail(proc.stderr))]
    code: int | None = None
    try:
        # Not proc.wait(): it returns only once the pipes close, which a background
        # child holding them would delay until it exits.
        await asyncio.wait_for(protocol.exited.wait(), command.timeout_seconds)
        code = transport.get_returncode()
    except TimeoutError:
        pass
    except BaseException:
        # Cancelled (job cancelled, lease lost, shutdown): nothing of the group may outlive it.
        for reader in readers:
            reader.cancel()
        raise
    finally:
        # Also on a normal exit: leftover background children die with the job, and
        # the pipes close only when every holder is gone.
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
    stdout, stderr = await asyncio.gather(*readers)
    if code is None:
        raise JobFailed(f"timed out after {command.timeout_seconds:g} s; stderr: {stderr}")
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        raise JobFailed(f"{how}; stderr: {stderr}")
    return {"exit_code": code, "stdout_tail": stdout, "stderr_tail": stderr}


async def _start(
    loop: asyncio.AbstractEventLoop, command: ShellCommand, env: dict[str, str]
) -> tuple[asyncio.SubprocessTransport, _Protocol]:
    """Start the process; a cancellation during start-up kills its group before it returns.

    Without the shield, asyncio's own clean-up of a cancelled start kills only the
    leader and then waits for the pipes, which a background child may hold for long.
    """
    starting = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _Protocol(loop),
            *command.argv,
            cwd=command.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    )
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # a start that failed left nothing behind
            transport, protocol = await starting
            _kill_group(transport.get_pid())
            await asyncio.subprocess.Process(transport, protocol, loop).wait()
        raise


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The stream protocol of ``create_subprocess_exec``, plus an event when the leader exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _tail(stream: asyncio.StreamReader) -> str:
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        del kept[:-TAIL_BYTES]
    return kept.decode(errors="replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:  # runs in the child between fork and exec
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the agent died before prctl took effect
            os._exit(1)

    return set_death_signal
