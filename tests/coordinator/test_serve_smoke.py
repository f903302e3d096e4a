"""A smoke test against a real ``fleet-coordinator serve`` process on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served


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
