"""Pause across two real ``fleet-coordinator serve`` replicas: leases stop within an interval."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.served import served_replicas

INTERVAL = 0.5
"""FLEET_REAPER_INTERVAL_SECONDS of both replicas."""
SLACK = 1.0
"""Scheduling room on a shared, loaded machine: a tick can start late, never be skipped."""


def test_a_pause_on_one_replica_stops_leases_on_the_other_within_an_interval(
    tmp_path: Path,
) -> None:
    """After a pause through replica A, replica B hands out no lease later than one interval on."""
    env = {"FLEET_REAPER_INTERVAL_SECONDS": str(INTERVAL)}
    with served_replicas(tmp_path, 2, f"sqlite:///{tmp_path}/fleet.db", env) as (a, b):
        admin = a.admin_headers
        with httpx.Client(timeout=10) as http:
            created = http.post(
                f"{a.base_url}/v1/agents", json={"name": "w", "capacity": 1000}, headers=admin
            ).json()
            agent = {"Authorization": f"Bearer {created['token']}"}
            jobs = [{"queue": "q", "kind": "k"} for _ in range(300)]
            assert (
                http.post(
                    f"{a.base_url}/v1/jobs/batch", json={"jobs": jobs}, headers=admin
                ).status_code
                == 201
            )
            paused = http.post(f"{a.base_url}/v1/queues/q/pause", headers=admin)
            assert paused.json()["paused"] is True
            paused_at = time.time()
            last_lease = 0.0
            deadline = time.monotonic() + INTERVAL + SLACK + 1.0
            while time.monotonic() < deadline:
                r = http.post(f"{b.base_url}/v1/claims", json={"queues": ["q"]}, headers=agent)
                if r.json()["leases"]:
                    last_lease = time.time()
            assert last_lease <= paused_at + INTERVAL + SLACK
            listed = http.get(f"{b.base_url}/v1/queues", headers=admin).json()["items"]
            assert listed[0]["paused"] is True
            resumed = http.post(f"{b.base_url}/v1/queues/q/resume", headers=admin)
            assert resumed.json()["paused"] is False
            r = http.post(
                f"{b.base_url}/v1/claims", json={"queues": ["q"], "wait_seconds": 5}, headers=agent
            )
            assert len(r.json()["leases"]) == 1
