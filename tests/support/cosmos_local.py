"""The Cosmos endpoint the tests run against: a real account, or the local server.

``cosmos_endpoint()`` yields a ``CosmosConfig``. With ``FLEET_COSMOS_ENDPOINT`` and
``FLEET_COSMOS_KEY`` set it uses that account (or emulator) and starts nothing;
otherwise it starts ``infra/cosmos-local/server.js`` on a free 127.0.0.1 port and
stops it on exit. Missing Node or npm packages are an error, never a skip: a
provider that cannot run is a failing test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_datastore import CosmosConfig

__all__ = ["COSMOS_DIR", "EMULATOR_KEY", "LocalCosmos", "cosmos_endpoint", "local_cosmos"]

COSMOS_DIR = Path(__file__).resolve().parents[2] / "infra" / "cosmos-local"
EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
"""The well-known Cosmos emulator key; the local server accepts any key."""

START_TIMEOUT = 30.0
NPM_TIMEOUT = 600.0


class CosmosLocalError(RuntimeError):
    """The local Cosmos-protocol server could not be installed or started."""


@dataclass
class LocalCosmos:
    """A running local server: its endpoint, process and fault knobs."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def config(self, database: str = "fleet") -> CosmosConfig:
        """A config for this server and ``database``."""
        return CosmosConfig(self.endpoint, EMULATOR_KEY, database)

    def faults(self, **knobs: Any) -> dict[str, Any]:
        """Set fault knobs (``throttle``, ``retry_after_ms``, ``match``, ``delay_ms``, …)."""
        return self._admin("POST", knobs)

    def reset_faults(self) -> dict[str, Any]:
        """Clear every fault knob; returns the counters."""
        return self._admin("DELETE", None)

    def fault_counters(self) -> dict[str, Any]:
        """The knobs and counters (``throttled``, ``delayed``, ``connections``)."""
        return self._admin("GET", None)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def _admin(self, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.endpoint}_fleet/faults", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.load(response)
        return result


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CosmosLocalError(
            f"{tool!r} is not on PATH: the Cosmos contract tests need Node 20 and npm "
            "(`make setup` / .ci/run install them)"
        )
    return path


def _install() -> None:
    if (COSMOS_DIR / "node_modules" / "@vercel" / "cosmosdb-server").is_dir():
        return
    npm = _require("npm")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=COSMOS_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise CosmosLocalError(f"npm ci in {COSMOS_DIR} failed:\n{result.stdout}{result.stderr}")


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def local_cosmos() -> Iterator[LocalCosmos]:
    """Start ``infra/cosmos-local/server.js`` on a free port; stop it on exit, even on failure."""
    node = _require("node")
    _install()
    with tempfile.TemporaryDirectory(prefix="cosmos-local-") as tmp:
        ready = Path(tmp) / "ready.json"
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    *(node, "server.js", "--host", "127.0.0.1", "--port", "0"),
                    *("--ready-file", str(ready), "--parent-pid", str(os.getpid())),
                ],
                cwd=COSMOS_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = LocalCosmos("", process, log_path)
        try:
            server.endpoint = _wait_until_ready(process, ready, log_path)
            yield server
        finally:
            server.stop()


def _wait_until_ready(process: subprocess.Popen[bytes], ready: Path, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    pause = 0.01
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CosmosLocalError(
                f"cosmos-local exited with {process.returncode}:\n{log_path.read_text()}"
            )
        if ready.exists():
            endpoint = str(json.loads(ready.read_text())["endpoint"])
            if _answers(endpoint):
                return endpoint
        time.sleep(pause)  # polling, with a growing interval, until the deadline
        pause = min(pause * 2, 0.2)
    raise CosmosLocalError(
        f"cosmos-local did not answer within {START_TIMEOUT:.0f}s:\n{log_path.read_text()}"
    )


@contextmanager
def cosmos_endpoint() -> Iterator[CosmosConfig]:
    """The Cosmos account the tests use: ``FLEET_COSMOS_*`` if set, else a local server."""
    endpoint = os.environ.get("FLEET_COSMOS_ENDPOINT", "")
    key = os.environ.get("FLEET_COSMOS_KEY", "")
    if endpoint and key:
        yield CosmosConfig(endpoint, key, os.environ.get("FLEET_COSMOS_DATABASE", "fleet"))
        return
    with local_cosmos() as server:
        yield server.config()
