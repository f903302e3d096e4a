"""A smoke test against a real ``fleet-coordinator serve`` process on SQLite."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.served import START_TIMEOUT, Served


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running server (base URL, admin token), stopped after the test."""
    with Served(cwd=tmp_path) as server:
        yield server.base_url, server.admin_token


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


class _TwoWorkers(Served):
    def command(self) -> list[str]:
        return [*super().command(), "--workers", "2"]

    def wait_ready(self, timeout: float = 3 * START_TIMEOUT) -> None:
        # Two spawned processes import everything at once: 5-9 s on an idle 2-core
        # machine, over 30 s once under a full parallel test run.
        super().wait_ready(timeout)


def test_serve_with_two_workers_shares_one_store_and_admin_token(tmp_path: Path) -> None:
    """``--workers 2``: both processes accept the admin token and see each other's writes."""
    with _TwoWorkers(cwd=tmp_path, admin_token="") as server:
        # /readyz answered: one worker is up; the other may still be starting (seconds
        # apart on a loaded machine). Wait for both before spreading connections.
        deadline = time.monotonic() + START_TIMEOUT
        while server.log_path.read_text().count('"coordinator.started"') < 2:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        first = server.log_path.read_text().splitlines()[0]
        assert first.startswith("FLEET_ADMIN_TOKEN="), first
        admin = {"Authorization": f"Bearer {first.split('=', 1)[1]}"}
        # /readyz answered from one worker; on a loaded machine the other may still be
        # starting, and every request would land on the first. Wait for both.
        deadline = time.monotonic() + 30
        while server.log_path.read_text().count("coordinator.started") < 2:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)  # polling the log for a process's start-up, as wait_ready does
        # Fresh connections land on either worker: every one must agree.
        for i in range(12):
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                created = http.post("/v1/jobs", json={"kind": f"k{i}"}, headers=admin)
                assert created.status_code == 201, created.text
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            listed = http.get("/v1/jobs", params={"limit": 50}, headers=admin).json()
        assert len(listed["items"]) == 12
        assert _started(server) == 2, server.log_tail()


def _started(server: Served) -> int:
    """How many worker processes logged that they started."""
    return server.log_path.read_text().count('"event":"coordinator.started"')


def test_a_websocket_handshake_is_404_in_the_error_shape(served: tuple[str, str]) -> None:
    """No WebSocket endpoint exists: a handshake, even on a path HTTP serves, gets 404 with
    the SPEC error body (it was uvicorn's bare 403 with no body)."""
    base_url, _ = served
    port = int(base_url.rsplit(":", 1)[1])
    handshake = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(handshake)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), answer
    assert json.loads(body) == {
        "error": {
            "code": "not_found",
            "message": "this coordinator serves no WebSocket endpoint",
            "details": {},
        }
    }
