"""Schedules on three replicas over every provider, with an injected clock across both DST changes.

Every replica sweeps at every step, all at once, as their reaper loops would: each
occurrence must exist exactly once, the spring-forward gap is skipped and the
repeated autumn hour fires once (Europe/Berlin, 2026: 29 March 02:00 → 03:00,
25 October 03:00 → 02:00).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fleet_coordinator.services import fire_due

from .conftest import Api
from .replicas import PROVIDERS, replicas


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


async def _run(apps: list[Api], start: float, end: float, step: float) -> list[str]:
    """Step the shared clock from ``start`` to ``end``, all replicas sweeping at each step."""
    apps[0].clock.set(start)
    while apps[0].clock.now() <= end:
        await asyncio.gather(*(fire_due(api.co) for api in apps))
        apps[0].clock.advance(step)
    r = await apps[1].client.get("/v1/jobs?kind=tick&limit=1000", headers=apps[1].admin)
    return sorted(j["created_at"] for j in r.json()["items"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_daily_schedule_skips_the_spring_gap_and_fires_once_in_autumn(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """02:30 daily in Berlin: no job on 29 March, one on 25 October, one per other day."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack)
        apps[0].clock.set(_utc(2026, 3, 27, 12))
        body = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "job": {"kind": "tick"}}
        r = await apps[0].client.put("/v1/schedules/d", json=body, headers=apps[0].admin)
        assert r.status_code == 201, r.text
        spring = await _run(apps, _utc(2026, 3, 27, 12), _utc(2026, 3, 31, 6), 1800)
        assert spring == [
            "2026-03-28T01:30:00Z",  # 02:30 CET
            "2026-03-30T00:30:00Z",  # 02:30 CEST; 29 March had no 02:30
            "2026-03-31T00:30:00Z",
        ]
        autumn = await _run(apps, _utc(2026, 10, 24, 12), _utc(2026, 10, 26, 6), 900)
        assert autumn[len(spring) :] == [
            # The clock jumped seven months: only the latest missed occurrence (24 October).
            "2026-10-24T12:00:00Z",
            "2026-10-25T00:30:00Z",  # 02:30 CEST, the first of the two
            "2026-10-26T01:30:00Z",  # 02:30 CET
        ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hourly_schedule_fires_once_in_the_repeated_hour(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str
) -> None:
    """Hourly in Berlin across the autumn change: 02:00 fires once, not twice."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack)
        apps[0].clock.set(_utc(2026, 10, 24, 22, 10))
        body = {"cron": "0 * * * *", "timezone": "Europe/Berlin", "job": {"kind": "tick"}}
        r = await apps[0].client.put("/v1/schedules/h", json=body, headers=apps[0].admin)
        assert r.status_code == 201, r.text
        fired = await _run(apps, _utc(2026, 10, 24, 22, 10), _utc(2026, 10, 25, 3, 5), 600)
        assert fired == [
            "2026-10-24T23:00:00Z",  # 01:00 CEST
            "2026-10-25T00:00:00Z",  # 02:00 CEST (the repeated 02:00 CET is not fired)
            "2026-10-25T02:00:00Z",  # 03:00 CET
            "2026-10-25T03:00:00Z",  # 04:00 CET
        ]
