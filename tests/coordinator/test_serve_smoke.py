"""A smoke test against a real ``fleet-coordinator serve`` process on SQLite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running server (base URL, admin token), stopped after the test."""
    port = _free_port()
    exe = shutil.which("fleet-coordinator") or str(
        Path(sys.executable).parent / "fleet-coordinator"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_STORE_URL"] = "sqlite:///var/fleet.db"
    proc = subprocess.Popen(
        [exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("FLEET_ADMIN_TOKEN="), first
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # wait for the port to answer (process start-up, not test logic)
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield base, first.split("=", 1)[1]
    finally:
        proc.terminate()
        proc.wait(10)


def test_served_api_runs_a_job_end_to_end(served: tuple[str, str]) -> None:
    """Register an agent, enqueue, claim, complete and read the job over real HTTP."""
    base, token = served
    admin = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10) as http:
        created = http.post("/v1/agents", json={"name": "w1"}, headers=admin).json()
        agent = {"Authorization": f"Bearer {created['token']}"}
        job = http.post("/v1/jobs", json={"kind": "echo", "payload": {"m": 1}}, headers=admin)
        assert job.status_code == 201
        claim = http.post("/v1/claims", json={"wait_seconds": 1}, headers=agent).json()
        [lease] = claim["leases"]
        job_id = lease["job"]["id"]
        done = http.post(
            f"/v1/jobs/{job_id}/complete", json={"epoch": 1, "result": {"ok": 1}}, headers=agent
        )
        assert done.json()["status"] == "succeeded"
        stored = http.get(f"/v1/jobs/{job_id}", headers=admin).json()
        assert [run["outcome"] for run in stored["runs"]] == ["succeeded"]
        assert http.get("/metrics").status_code == 200
