"""This coordinator: ``fleet-coordinator serve`` on SQLite, agents ``fleet-agent run``.

Driven only through public things: the server command, the REST API and
``fleet-agent run --handlers fleet_app:HANDLERS`` (the Worker otherwise at its
defaults). Every trial gets a fresh coordinator on a fresh SQLite file.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx

from tests.support.served import tool_path

from .context import Bench
from .servers import free_port
from .system import Command, Driver
from .venvs import workspace_requirements

__all__ = ["Fleet"]

READY_TIMEOUT = 30.0


class Fleet:
    """One coordinator on SQLite; agents of ``--concurrency concurrency``."""

    peer = False
    has_batch = True

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.label = f"this coordinator, SQLite, `fleet-agent run --concurrency {concurrency}`"
        self.token = secrets.token_urlsafe(24)
        self._bench: Bench | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._trials = 0
        self._agent = Path(tool_path("fleet-agent"))

    @property
    def url(self) -> str:
        """The current coordinator's base URL."""
        return f"http://127.0.0.1:{self._port}"

    def prepare(self, bench: Bench) -> None:
        """A venv holding ``fleet-agent`` alone, pinned by ``uv.lock``, for the agents.

        As on an agent host, and as each peer's workers run from a venv of their own:
        the project's environment also holds the client's ``rich``, which structlog
        imports whenever it is installed, ~0.13 s of CPU more at every agent's start
        (docs/benchmarks.md). The coordinator and the producer run from the project's.
        """
        self._bench = bench
        python = bench.venv("fleet-agent", workspace_requirements("fleet-agent", bench.venv_root))
        self._agent = python.parent / "fleet-agent"

    def fresh(self) -> None:
        """Stop the last coordinator; start one on an empty SQLite file and wait for /readyz."""
        assert self._bench is not None
        if self._server is not None:
            self._bench.processes.stop(self._server)
        self._trials += 1
        home = self._bench.trial_dir(f"fleet-c{self.concurrency}-server-{self._trials}")
        self._port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env.update(FLEET_STORE_URL=f"sqlite:///{home}/fleet.db", FLEET_ADMIN_TOKEN=self.token)
        serve = [tool_path("fleet-coordinator"), "serve", "--host", "127.0.0.1"]
        self._server = self._bench.processes.spawn(
            [*serve, "--port", str(self._port)], env=env, cwd=home, log=home / "coordinator.log"
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"coordinator exited; see {home / 'coordinator.log'}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("coordinator did not become ready")
            time.sleep(0.05)

    def driver(self) -> Driver:
        """``fleet_app`` under the project's python, with the admin token."""
        env = {"FLEET_URL": self.url, "FLEET_ADMIN_TOKEN": self.token}
        return Driver(Path(sys.executable), "fleet_app", env)

    def workers(self, count: int) -> list[Command]:
        """Registers ``count`` agents of capacity ``concurrency`` (untimed), one command each."""
        commands = []
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers) as http:
            for index in range(count):
                body = {"name": f"bench-{index}", "capacity": self.concurrency}
                answer = http.post("/v1/agents", json=body)
                answer.raise_for_status()
                argv = [str(self._agent), "run", "--url", self.url]
                argv += ["--concurrency", str(self.concurrency), "--handlers", "fleet_app:HANDLERS"]
                commands.append(Command(argv, {"FLEET_AGENT_TOKEN": answer.json()["token"]}))
        return commands

    def server_pids(self) -> list[int]:
        """The coordinator process."""
        assert self._server is not None
        return [self._server.pid]

    def versions(self) -> dict[str, str]:
        """The two packages' versions."""
        return {name: version(name) for name in ("fleet-coordinator", "fleet-agent")}
