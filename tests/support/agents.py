"""Real ``fleet-agent run`` processes for tests: start, SIGTERM, SIGKILL, always cleaned up.

The token travels in ``FLEET_AGENT_TOKEN`` (never on the command line); output goes
to a log file under ``cwd``. Use as a context manager so no agent outlives a test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .served import tool_path

__all__ = ["AgentProcess"]


@dataclass
class AgentProcess:
    """One ``fleet-agent run`` process against ``url`` with ``token``."""

    url: str
    token: str = field(repr=False)
    cwd: Path
    args: Sequence[str] = ()
    name: str = "agent"
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    def start(self) -> AgentProcess:
        """Launch the agent (it runs until signalled)."""
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env.update(FLEET_AGENT_TOKEN=self.token, **self.env)
        command = [tool_path("fleet-agent"), "run", "--url", self.url, *self.args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.cwd, env=env, stdout=log, stderr=log, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the agent process itself (not to the jobs it started)."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        """Wait for the agent to exit; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGKILL whatever is left of the agent's process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
