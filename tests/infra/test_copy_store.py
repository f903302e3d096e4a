"""Moving a fleet from SQLite to Cosmos DB with copy_store, as docs/cosmos.md describes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cosmos_local import cosmos_endpoint
from tests.support.served import Served


def _counts(queues: dict[str, Any]) -> list[dict[str, Any]]:
    # Everything but the oldest job's age, which grows while the test runs.
    return [
        {k: v for k, v in q.items() if k != "oldest_queued_age_seconds"} for q in queues["items"]
    ]


@pytest.mark.cosmos
def test_a_stopped_sqlite_fleet_moves_to_cosmos_with_a_new_shard_count(tmp_path: Path) -> None:
    """Jobs, leases with their epochs, agents and tokens survive the copy; a rerun is harmless."""
    with Served(cwd=tmp_path, store_url="sqlite:///var/fleet.db") as old:
        admin = old.admin_headers
        agent = httpx.post(
            f"{old.base_url}/v1/agents", json={"name": "w1", "capacity": 5}, headers=admin
        ).json()
        jobs = [{"kind": "k", "payload": {"n": i}, "queue": f"q{i % 3}"} for i in range(250)]
        created = httpx.post(f"{old.base_url}/v1/jobs/batch", json={"jobs": jobs}, headers=admin)
        assert created.status_code == 201
        ids = [j["id"] for j in created.json()["items"]]
        token = {"Authorization": f"Bearer {agent['token']}"}
        leases = httpx.post(
            f"{old.base_url}/v1/claims", json={"max_jobs": 3, "queues": ["q0"]}, headers=token
        ).json()["leases"]
        assert len(leases) == 3
        queues_before = httpx.get(f"{old.base_url}/v1/queues", headers=admin).json()

    with cosmos_endpoint() as cfg:
        env = {
            "FLEET_COSMOS_ENDPOINT": cfg.endpoint,
            "FLEET_COSMOS_KEY": cfg.key,
            "FLEET_COSMOS_DATABASE": f"copy-{uuid.uuid4().hex[:8]}",
            "FLEET_JOB_SHARDS": "4",
        }
        command = [
            sys.executable,
            "-m",
            "fleet_coordinator.copy_store",
            "--from",
            f"sqlite:///{tmp_path / 'var' / 'fleet.db'}",
            "--to",
            "cosmos://",
        ]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")} | env
        for _ in range(2):  # the second run upserts the same documents again
            copy = subprocess.run(
                command, env=run_env, capture_output=True, text=True, timeout=300, check=False
            )
            assert copy.returncode == 0, copy.stderr
            assert "jobs: 250 documents copied" in copy.stdout

        with Served(cwd=tmp_path / "new", store_url="cosmos://", env=env) as new:
            admin = new.admin_headers
            for job_id in ids[::25]:
                assert (
                    httpx.get(f"{new.base_url}/v1/jobs/{job_id}", headers=admin).status_code == 200
                )
            queues_after = httpx.get(f"{new.base_url}/v1/queues", headers=admin).json()
            assert _counts(queues_after) == _counts(queues_before)
            # The lease held before the move is still fenced by its epoch, and the token works.
            held = leases[0]
            done = httpx.post(
                f"{new.base_url}/v1/jobs/{held['job']['id']}/complete",
                json={"epoch": held["lease"]["epoch"]},
                headers=token,
            )
            assert done.status_code == 200
            assert done.json()["status"] == "succeeded"
            listed = httpx.get(f"{new.base_url}/v1/jobs?limit=1000", headers=admin).json()
            assert len(listed["items"]) == 250


def test_a_store_error_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    """A source that is not a database ends with a one-line message and exit status 1."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    copy = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet_coordinator.copy_store",
            "--from",
            f"sqlite:///{tmp_path}",  # a directory, not a database file
            "--to",
            "memory://",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert copy.returncode == 1
    assert copy.stderr.startswith("copy failed:")
    assert "Traceback" not in copy.stderr
