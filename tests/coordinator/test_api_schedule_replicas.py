"""Schedules on three replicas over every provider, with an injected clock.

Every replica sweeps at every step, all at once, as their reaper loops would: each
occurrence must exist exactly once, the spring-forward gap is skipped and the
repeated autumn hour fires once (Europe/Berlin, 2026: 29 March 02:00 → 03:00,
25 October 03:00 → 02:00); and a PUT, pause or resume on one replica racing the
sweeps of the others neither drops an occurrence nor enqueues it twice.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


MINUTELY = {"cron": "* * * * *", "job": {"kind": "tick"}}


async def _admin(api: Api, what: str) -> None:
    """One replica's admin writes to schedule ``m``: the same PUT again, or pause and resume."""
    if what == "put":
        r = await api.client.put("/v1/schedules/m", json=MINUTELY, headers=api.admin)
        assert r.status_code == 200, r.text
        return
    for verb in what.split("+"):
        r = await api.client.post(f"/v1/schedules/m/{verb}", headers=api.admin)
        assert r.status_code == 200, r.text


async def _ticks(api: Api) -> list[str]:
    r = await api.client.get("/v1/jobs?kind=tick&limit=1000", headers=api.admin)
    return sorted(j["created_at"] for j in r.json()["items"])


async def _schedule(api: Api) -> Any:
    return (await api.client.get("/v1/schedules/m", headers=api.admin)).json()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("what", ["put", "pause", "pause+resume"])
async def test_an_admin_write_between_a_sweeps_enqueue_and_its_record_keeps_the_occurrence_single(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    what: str,
) -> None:
    """A sweep enqueues 10:01 and, before it records ``last_run_at``, another replica puts the
    schedule again or pauses it: the sweep records 10:01 on a fresh read, so no sweep (after
    a resume either) enqueues it again, and 10:02 fires as usual."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack)
        apps[0].clock.set(_utc(2026, 5, 4, 10, 0) + 30)
        r = await apps[0].client.put("/v1/schedules/m", json=MINUTELY, headers=apps[0].admin)
        assert r.status_code == 201, r.text
        schedules = apps[0].co.schedules
        record = schedules.update_if_match
        interfered: list[str] = []

        async def write_in_between(*args: Any, **kwargs: Any) -> Any:
            # The sweep's record is its first conditional write of a ``last_run_at``.
            if not interfered and "last_run_at" in args[3].set:
                interfered.append(what)
                await _admin(apps[1], what)
            return await record(*args, **kwargs)

        monkeypatch.setattr(schedules, "update_if_match", write_in_between)
        apps[0].clock.set(_utc(2026, 5, 4, 10, 1) + 2)
        assert await fire_due(apps[0].co) == 1
        assert interfered == [what]
        monkeypatch.undo()
        assert (await _schedule(apps[2]))["last_run_at"] == "2026-05-04T10:01:00Z"
        if what == "pause":
            apps[0].clock.advance(30)
            await _admin(apps[1], "resume")
        assert await asyncio.gather(*(fire_due(api.co) for api in apps)) == [0, 0, 0]
        assert (await _schedule(apps[2]))["next_run_at"] == "2026-05-04T10:02:00Z"
        apps[0].clock.set(_utc(2026, 5, 4, 10, 2))
        assert sum(await asyncio.gather(*(fire_due(api.co) for api in apps))) == 1
        assert len(await _ticks(apps[1])) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("what", ["put", "pause+resume"])
async def test_admin_writes_racing_the_sweeps_neither_drop_nor_double_an_occurrence(
    tmp_path: Path, request: pytest.FixtureRequest, provider: str, what: str
) -> None:
    """Each minute, two seconds after the occurrence, one replica puts the schedule again (or
    pauses and resumes it) while the other two sweep, and then all three sweep: each
    occurrence is enqueued exactly once."""
    async with AsyncExitStack() as stack:
        apps = await replicas(provider, tmp_path, request, stack)
        apps[0].clock.set(_utc(2026, 5, 4, 10, 0) + 30)
        r = await apps[0].client.put("/v1/schedules/m", json=MINUTELY, headers=apps[0].admin)
        assert r.status_code == 201, r.text
        for minute in range(1, 9):
            apps[0].clock.set(_utc(2026, 5, 4, 10, minute) + 2)
            # The write first: it lands before, between or after the sweeps' steps.
            await asyncio.gather(_admin(apps[1], what), fire_due(apps[0].co), fire_due(apps[2].co))
            await asyncio.gather(*(fire_due(api.co) for api in apps))
        expected = [f"2026-05-04T10:0{m}:02Z" for m in range(1, 9)]
        assert await _ticks(apps[1]) == expected
        assert (await _schedule(apps[2]))["last_run_at"] == "2026-05-04T10:08:00Z"
