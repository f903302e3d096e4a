"""The schedules the console lists: the service's listing, with each next run worked out."""

from __future__ import annotations

from typing import Any

from ..services import Coordinator
from ..services.schedules import list_schedules as stored_schedules
from ..services.schedules import next_run_at

__all__ = ["list_schedules"]

_SHOWN = 500


async def list_schedules(co: Coordinator) -> list[dict[str, Any]]:
    """Up to 500 schedules by name, each with ``next_run_at`` (epoch seconds or None)."""
    now = co.clock.now()
    return [
        {**body, "next_run_at": next_run_at(body, now)}
        for body in (await stored_schedules(co))[:_SHOWN]
    ]
