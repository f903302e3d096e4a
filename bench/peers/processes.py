"""Every process the bench starts, each in its own process group, and all stopped on the way out.

``Processes.spawn`` starts a command in a new session (so a Ctrl-C in the terminal
reaches only the bench, which then stops the rest in order) and remembers it.
``stop`` sends SIGTERM to the whole group, then SIGKILL after a grace period.
``guard()`` turns Ctrl-C into ``KeyboardInterrupt`` and SIGTERM and SIGHUP into
``SystemExit`` so ``finally`` blocks run,
and registers ``stop_all`` with ``atexit`` as the last line of defence.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

__all__ = ["Processes", "guard"]

STOP_GRACE_SECONDS = 10.0


class Processes:
    """The processes this bench started; ``stop_all`` ends every one still running."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session; stderr (and stdout unless piped) go to ``log``."""
        with log.open("ab") as sink:
            process = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else sink,
                stderr=sink,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; reap the leader."""
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(5)
        # Children that outlived their leader (a worker's pool) still share its group.
        _signal_group(process.pid, signal.SIGKILL)
        if process.stdout is not None:
            process.stdout.close()
        if process in self._running:
            self._running.remove(process)

    def stop_many(self, processes: Sequence[subprocess.Popen[bytes]]) -> None:
        """SIGTERM every group at once, then wait for each (one grace period in all)."""
        for process in processes:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes:
            self.stop(process, grace=max(deadline - time.monotonic(), 0.1))

    def stop_all(self) -> None:
        """Stop everything still running, the most recently started first."""
        for process in reversed(list(self._running)):
            self.stop(process)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    del frame
    print(f"\npeers: {signal.Signals(signum).name}: stopping everything started", file=sys.stderr)
    raise SystemExit(128 + signum)


def guard(processes: Processes) -> None:
    """Stop ``processes`` on Ctrl-C, SIGTERM or SIGHUP, and at interpreter exit."""
    # Ctrl-C raises KeyboardInterrupt even where the parent shell left SIGINT ignored
    # (as a non-interactive shell does for background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    atexit.register(processes.stop_all)
