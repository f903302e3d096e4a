"""Fencing: an agent process frozen past its lease has every later write refused."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.served import Served

from .harness import replica_env

LEASE = 1.0
ROOT = Path(__file__).resolve().parents[2]


def _line(stream: IO[bytes], timeout: float = 30.0) -> dict[str, Any]:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the agent process printed nothing in time"
    line = stream.readline()
    assert line, "the agent process exited early"
    data: dict[str, Any] = json.loads(line)
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """One coordinator on SQLite with 1 s leases and a 0.1 s reaper."""
    with Served(cwd=tmp_path, env=replica_env(LEASE, 0.1)) as served:
        yield served


def test_a_frozen_agent_resumed_after_its_lease_gets_lease_lost_on_every_write(
    server: Served,
) -> None:
    """SIGSTOP past the lease, another agent claims, SIGCONT: 409 lease_lost, holder unharmed."""
    with httpx.Client(base_url=server.base_url, headers=server.admin_headers, timeout=30) as http:
        tokens = [
            http.post("/v1/agents", json={"name": name}).json()["token"] for name in ("old", "new")
        ]
        job = http.post("/v1/jobs", json={"kind": "fence", "lease_seconds": LEASE}).json()
        env = {**os.environ, "FLEET_AGENT_TOKEN": tokens[0]}
        agent = subprocess.Popen(
            [sys.executable, "-m", "tests.stress.fencing_agent", server.base_url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        try:
            assert agent.stdout is not None
            assert _line(agent.stdout) == {"job": job["id"], "epoch": 1}
            agent.send_signal(signal.SIGSTOP)
            # The new holder's long-poll returns once the reaper has requeued the job.
            new = {"Authorization": f"Bearer {tokens[1]}"}
            [lease] = http.post("/v1/claims", json={"wait_seconds": 15}, headers=new).json()[
                "leases"
            ]
            assert lease["lease"]["epoch"] == 2
            agent.send_signal(signal.SIGCONT)
            results = _line(agent.stdout)["results"]
            assert agent.wait(30) == 0
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGCONT)
                agent.kill()
                agent.wait(10)
        assert results == {
            op: [409, "lease_lost"]
            for op in (
                "heartbeat",
                "complete-after",
                "fail-after",
                "release-after",
                "heartbeat-after",
            )
        }
        # The new holder is unaffected: its lease is intact and its writes succeed.
        stored = http.get(f"/v1/jobs/{job['id']}").json()
        assert stored["status"] == "leased"
        assert stored["lease"] == lease["lease"]
        url = f"/v1/jobs/{job['id']}"
        assert http.post(f"{url}/heartbeat", json={"epoch": 2}, headers=new).status_code == 200
        done = http.post(f"{url}/complete", json={"epoch": 2, "result": {"by": "new"}}, headers=new)
        assert done.status_code == 200
        stored = http.get(url).json()
        assert stored["result"] == {"by": "new"}
        assert [(r["epoch"], r["outcome"]) for r in stored["runs"]] == [
            (1, "lease_expired"),
            (2, "succeeded"),
        ]
