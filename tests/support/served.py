"""Real ``fleet-coordinator serve`` processes for tests: start, wait ready, kill, restart.

``Served`` owns one process on 127.0.0.1. ``start()`` launches it and waits until
``/readyz`` answers; ``kill()`` SIGKILLs it; ``stop()`` terminates it gracefully;
``restart()`` starts it again on the same port, store and admin token. Always use it
as a context manager (or call ``stop()`` in ``finally``) so no process outlives a test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["Served", "free_port", "post_and_hold", "served_replicas", "tool_path"]

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def post_and_hold(port: int, token: str, path: str, body: bytes) -> socket.socket:
    """Send one ``POST`` to a served coordinator on a raw connection, left open for the answer."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body)
    return sock


def tool_path(name: str) -> str:
    """The console script ``name`` of this environment (e.g. ``fleet-coordinator``)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


@dataclass
class Served:
    """One ``fleet-coordinator serve`` process; ``base_url`` and ``admin_token`` once started."""

    cwd: Path
    store_url: str = "sqlite:///var/fleet.db"
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_token: str = "test-admin-token-0123456789"
    log_name: str = "coordinator.log"
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def log_path(self) -> Path:
        return self.cwd / self.log_name

    def start(self) -> Served:
        """Launch the process and return once ``/readyz`` answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env.update(
            FLEET_STORE_URL=self.store_url,
            FLEET_ADMIN_TOKEN=self.admin_token,
            **dict(self.env),
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command(), "--port", str(self.port)],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def command(self) -> list[str]:
        return [tool_path("fleet-coordinator"), "serve", "--host", "127.0.0.1"]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/readyz`` until 200 (process start-up, not test logic)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"coordinator exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"coordinator did not become ready: {self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM), SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> Served:
        """Kill (if running) and start again on the same port and store."""
        self.kill()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def served_replicas(
    cwd: Path, count: int, store_url: str, env: Mapping[str, str] | None = None
) -> Iterator[list[Served]]:
    """``count`` replicas over one store, sharing an admin token; all stopped on exit."""
    with ExitStack() as stack:
        replicas = []
        for index in range(count):
            replica = Served(
                cwd=cwd, store_url=store_url, env=dict(env or {}), log_name=f"replica-{index}.log"
            )
            replicas.append(stack.enter_context(replica))
        yield replicas
