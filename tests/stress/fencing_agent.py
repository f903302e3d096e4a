"""A minimal agent process for the fencing test: claim one job, heartbeat until the lease is lost.

``python -m tests.stress.fencing_agent BASE_URL`` with the agent token in the
``FLEET_AGENT_TOKEN`` environment variable. It claims one job (long-polling),
prints ``{"job": id, "epoch": n}`` as one JSON line, then heartbeats every
``--every`` seconds. When it is frozen (SIGSTOP) past its lease and resumed
(SIGCONT), its first heartbeat fails; it then tries every other write with its
old epoch, prints ``{"results": {op: [status, error code]}}`` and exits. It
gives up after ``--limit`` seconds of running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx


def main(argv: list[str] | None = None) -> int:
    """Run the agent; 0 once every write with the lost epoch has been tried."""
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--every", type=float, default=0.2)
    parser.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {os.environ['FLEET_AGENT_TOKEN']}"}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30) as http:
        claimed = http.post("/v1/claims", json={"wait_seconds": 10}).json()["leases"]
        if not claimed:
            return 2
        job, epoch = claimed[0]["job"]["id"], claimed[0]["lease"]["epoch"]
        print(json.dumps({"job": job, "epoch": epoch}), flush=True)
        started = time.monotonic()
        while time.monotonic() - started < args.limit:
            r = http.post(f"/v1/jobs/{job}/heartbeat", json={"epoch": epoch})
            if r.status_code != 200:
                break
            time.sleep(args.every)  # the agent's heartbeat cadence
        else:
            return 3
        results: dict[str, Any] = {"heartbeat": [r.status_code, _code(r)]}
        for op, body in (
            ("complete", {"result": {"by": "stale"}}),
            ("fail", {"error": "stale"}),
            ("release", {}),
            ("heartbeat", {}),
        ):
            r = http.post(f"/v1/jobs/{job}/{op}", json={"epoch": epoch, **body})
            results[f"{op}-after"] = [r.status_code, _code(r)]
        print(json.dumps({"results": results}), flush=True)
    return 0


def _code(r: httpx.Response) -> str | None:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
