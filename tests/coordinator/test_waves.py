"""``Waves``: report requests that arrive while a wave runs wait for it, then run together."""

from __future__ import annotations

import asyncio

import pytest
from fleet_coordinator.services.waves import Waves

from .conftest import Api

_GUARD = 10.0
"""Seconds after which a test fails instead of hanging (never waited in a passing run)."""


class _Caller:
    """A caller of ``Waves.turn`` that records when it is inside and leaves on ``go``."""

    def __init__(self, waves: Waves, trace: list[str], name: str) -> None:
        self.arrived = asyncio.Event()
        """Set as it asks for its turn: once a waiter sees it, the caller waits or is in."""
        self.inside = asyncio.Event()
        self.go = asyncio.Event()
        self.task = asyncio.create_task(self._run(waves, trace, name))

    async def _run(self, waves: Waves, trace: list[str], name: str) -> None:
        self.arrived.set()
        async with waves.turn():
            trace.append(f"{name} in")
            self.inside.set()
            await self.go.wait()
            trace.append(f"{name} out")


async def _two_behind_one(
    waves: Waves, trace: list[str], names: tuple[str, str, str]
) -> tuple[_Caller, _Caller, _Caller]:
    """A caller inside a wave, then two more that have asked for their turn meanwhile."""
    first = _Caller(waves, trace, names[0])
    await asyncio.wait_for(first.inside.wait(), _GUARD)
    second, third = _Caller(waves, trace, names[1]), _Caller(waves, trace, names[2])
    await asyncio.wait_for(asyncio.gather(second.arrived.wait(), third.arrived.wait()), _GUARD)
    return first, second, third


async def test_callers_that_arrive_during_a_wave_wait_for_it_and_then_run_together() -> None:
    waves, trace = Waves(), list[str]()
    first, second, third = await _two_behind_one(waves, trace, ("a", "b", "c"))
    assert trace == ["a in"]  # b and c wait for a's wave
    first.go.set()
    # b and c run as one wave: both are inside before either leaves (one at a time,
    # the first would wait for a `go` that comes only once both are in).
    await asyncio.wait_for(asyncio.gather(second.inside.wait(), third.inside.wait()), _GUARD)
    fourth = _Caller(waves, trace, "d")
    await asyncio.wait_for(fourth.arrived.wait(), _GUARD)
    assert not fourth.inside.is_set()  # arrived during b and c's wave: waits for it
    second.go.set()
    await asyncio.wait_for(second.task, _GUARD)
    assert not fourth.inside.is_set()  # c is still in the wave
    third.go.set()
    await asyncio.wait_for(fourth.inside.wait(), _GUARD)
    fourth.go.set()
    await asyncio.wait_for(asyncio.gather(first.task, second.task, third.task, fourth.task), _GUARD)
    assert trace[:2] == ["a in", "a out"]
    assert sorted(trace[2:4]) == ["b in", "c in"]
    assert trace[-2:] == ["d in", "d out"]


async def test_a_caller_cancelled_while_waiting_leaves_the_next_wave_to_run() -> None:
    waves, trace = Waves(), list[str]()
    first, gone, kept = await _two_behind_one(waves, trace, ("a", "gone", "kept"))
    gone.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone.task
    first.go.set()
    await asyncio.wait_for(kept.inside.wait(), _GUARD)
    kept.go.set()
    await asyncio.wait_for(asyncio.gather(first.task, kept.task), _GUARD)
    assert "gone in" not in trace


async def test_a_caller_that_fails_inside_its_wave_ends_it() -> None:
    waves = Waves()
    with pytest.raises(RuntimeError):
        async with waves.turn():
            raise RuntimeError("a defect in a report")
    trace: list[str] = []
    caller = _Caller(waves, trace, "next")
    await asyncio.wait_for(caller.inside.wait(), _GUARD)
    caller.go.set()
    await asyncio.wait_for(caller.task, _GUARD)


async def test_a_caller_runs_anyway_when_a_wave_outlasts_the_longest_wait() -> None:
    """A wave held up (a write lock another process keeps) does not hold the next for long."""
    waves, trace = Waves(max_wait=0.05), list[str]()
    stuck = _Caller(waves, trace, "stuck")
    await asyncio.wait_for(stuck.inside.wait(), _GUARD)
    late = _Caller(waves, trace, "late")
    await asyncio.wait_for(late.inside.wait(), _GUARD)  # after max_wait, stuck still inside
    assert trace == ["stuck in", "late in"]
    late.go.set()
    stuck.go.set()
    await asyncio.wait_for(asyncio.gather(stuck.task, late.task), _GUARD)
    after = _Caller(waves, trace, "after")  # the waves carry on as before
    await asyncio.wait_for(after.inside.wait(), _GUARD)
    after.go.set()
    await asyncio.wait_for(after.task, _GUARD)


async def test_disabled_waves_never_make_a_caller_wait() -> None:
    waves, trace = Waves(enabled=False), list[str]()
    first = _Caller(waves, trace, "a")
    second = _Caller(waves, trace, "b")
    await asyncio.wait_for(asyncio.gather(first.inside.wait(), second.inside.wait()), _GUARD)
    first.go.set()
    second.go.set()
    await asyncio.wait_for(asyncio.gather(first.task, second.task), _GUARD)


async def test_waves_run_on_a_local_store_only(api: Api) -> None:
    """Memory and SQLite work on the replica's CPU; a Cosmos DB request waits on the network."""
    assert api.co.waves.enabled is api.co.containers.store.local
    assert api.co.containers.store.local is (api.co.settings.store_url.split(":")[0] != "cosmos")


async def test_a_report_whose_claim_long_polls_does_not_hold_the_wave(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report's waiting claim runs outside the wave: other agents' reports go on meanwhile."""
    parked = asyncio.Event()
    wait = api.co.notifier.wait

    async def parks(seconds: float, since: int, interval: float) -> bool:
        parked.set()  # the long-poll found nothing and waits for a job
        return await wait(seconds, since, interval)

    monkeypatch.setattr(api.co.notifier, "wait", parks)
    # A wave's longest wait would let the other report through anyway: out of the way.
    monkeypatch.setattr(api.co.waves, "max_wait", 3600.0)
    _, waiting = await api.agent(name="waiting")
    _, busy = await api.agent(name="busy")
    job = await api.enqueue()
    (lease,) = await api.claim(busy)
    long_poll = asyncio.create_task(
        api.client.post(
            "/v1/reports", json={"items": [], "claim": {"wait_seconds": 30}}, headers=waiting
        )
    )
    await asyncio.wait_for(parked.wait(), _GUARD)
    done = await asyncio.wait_for(
        api.client.post(
            "/v1/reports",
            json={
                "items": [
                    {"job_id": job["id"], "epoch": lease["lease"]["epoch"], "action": "complete"}
                ]
            },
            headers=busy,
        ),
        _GUARD,
    )
    assert done.status_code == 200, done.text
    assert done.json()["items"][0]["ok"] is True
    await api.enqueue()  # wakes the long-poll, which leases it
    answer = await asyncio.wait_for(long_poll, _GUARD)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["leases"]) == 1
