"""The demo's Python handlers, loaded by ``fleet-agent run --handlers demo.handlers:HANDLERS``."""

from __future__ import annotations

import asyncio
from typing import Any

from fleet_agent import Job, JobFailed


async def work(job: Job) -> dict[str, Any]:
    """Sleep ``payload.seconds``; fail when ``payload.fail`` is set (retryable unless told)."""
    seconds = float(job.payload.get("seconds", 0.1))
    await asyncio.sleep(seconds)
    if job.payload.get("fail"):
        raise JobFailed("simulated failure", retryable=bool(job.payload.get("retryable", True)))
    return {"slept": seconds, "attempt": job.attempt}


HANDLERS = {"work": work}
