"""Processes racing ``update_if_match`` on one SQLite file, round by round; and one killed.

Used by ``test_sqlite_provider.py``; also runnable by hand to see a broken
compare-and-swap lose the single-winner property::

    uv run python -m tests.datastore.sqlite_race_worker --read-check-write

Each round: every racer of every process reads the document (all see the same
etag), a barrier makes sure nobody writes before everybody has read, then all
racers call ``update_if_match`` with what they read at once. Exactly one of them
may win. Rounds are separated by barriers, never by sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from fleet_datastore import (
    Container,
    ContainerSpec,
    Document,
    Index,
    Patch,
    UpdateResult,
    store_from_url,
)
from fleet_datastore.model import CONFLICT

SPEC = ContainerSpec(
    name="race", partition_key="pk", fields={"round": "int"}, indexes=(Index.of("round"),)
)
DOC_ID, PK = "contested", "p"
BARRIER_TIMEOUT = 60.0


@dataclass(frozen=True)
class RaceConfig:
    """One race: where, how many racers per process, how many rounds, which CAS."""

    path: str
    processes: int = 4
    racers: int = 32
    rounds: int = 200
    read_check_write: bool = False


async def _read_check_write(container: Container, seen: Document, patch: Patch) -> UpdateResult:
    """The broken CAS the real one must beat: compare in Python, await, write blindly."""
    current = await container.get(DOC_ID, PK)
    if current.etag != seen.etag:
        return CONFLICT
    await asyncio.sleep(0)  # any await between the check and the write opens the race
    written = await container.replace({**current.body, **patch.set})
    return UpdateResult.won(written)


async def _race(cfg: RaceConfig, worker: int, barrier: Barrier) -> list[int]:
    wins: list[int] = []
    barrier.wait(BARRIER_TIMEOUT)  # every process opens and declares the container at once
    async with store_from_url(f"sqlite:///{cfg.path}") as store:
        container = await store.create_container_if_not_exists(SPEC)
        if worker == 0:
            await container.upsert({"id": DOC_ID, "pk": PK, "round": -1, "winner": None})
        barrier.wait(BARRIER_TIMEOUT)  # the document exists
        for round_no in range(cfg.rounds):
            seen = await asyncio.gather(*(container.get(DOC_ID, PK) for _ in range(cfg.racers)))
            if len({doc.etag for doc in seen}) != 1 or seen[0].body["round"] != round_no - 1:
                raise AssertionError(f"round {round_no}: racers did not all see the last round")
            barrier.wait(BARRIER_TIMEOUT)  # nobody writes before everybody has read
            results = await asyncio.gather(
                *(
                    _update(cfg, container, doc, Patch(set={"round": round_no, "winner": k}))
                    for k, doc in enumerate(seen)
                )
            )
            wins.append(sum(result.ok for result in results))
            barrier.wait(BARRIER_TIMEOUT)  # the round is over everywhere
    return wins


def _update(cfg: RaceConfig, container: Container, seen: Document, patch: Patch) -> Any:
    if cfg.read_check_write:
        return _read_check_write(container, seen, patch)
    return container.update_if_match(DOC_ID, PK, seen, patch)


def worker_main(cfg: RaceConfig, worker: int, barrier: Barrier, out: Any) -> None:
    """Entry point of one racing process: puts ``(worker, wins per round)`` or an error."""
    try:
        out.put((worker, asyncio.run(_race(cfg, worker, barrier))))
    except BaseException as exc:
        barrier.abort()  # release the other processes instead of letting them hang
        out.put((worker, f"{type(exc).__name__}: {exc}"))
        raise


def run_race(cfg: RaceConfig, timeout: float = 120.0) -> list[int]:
    """Run the race in ``cfg.processes`` fresh processes; winners per round, summed."""
    ctx = multiprocessing.get_context("spawn")  # no inherited threads, locks or loops
    barrier = ctx.Barrier(cfg.processes)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker_main, args=(cfg, w, barrier, out), daemon=True)
        for w in range(cfg.processes)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = dict(out.get(timeout=timeout) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    errors = {w: r for w, r in reports.items() if isinstance(r, str)}
    if errors:
        raise AssertionError(f"racing processes failed: {errors}")
    return [sum(rounds) for rounds in zip(*reports.values(), strict=True)]


async def _count_up(path: str, acks: Any) -> None:
    async with store_from_url(f"sqlite:///{path}") as store:
        container = await store.create_container_if_not_exists(SPEC)
        current = await container.upsert({"id": DOC_ID, "pk": PK, "round": 0})
        while True:
            n = current.body["round"] + 1
            result = await container.update_if_match(DOC_ID, PK, current, Patch(set={"round": n}))
            assert result.document is not None
            current = result.document
            acks.send(n)  # acknowledged only after update_if_match returned


def counting_main(path: str, acks: Any) -> None:
    """Entry point of a process that counts up forever, acknowledging each committed value."""
    asyncio.run(_count_up(path, acks))


def main(argv: list[str] | None = None) -> int:
    """Run a race by hand and print how many rounds did not have exactly one winner."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--read-check-write", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RaceConfig(
            str(Path(tmp) / "race.db"),
            rounds=args.rounds,
            read_check_write=args.read_check_write,
        )
        winners = run_race(cfg)
    bad = [(i, n) for i, n in enumerate(winners) if n != 1]
    print(f"{len(winners)} rounds, {len(bad)} without exactly one winner; first: {bad[:5]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
