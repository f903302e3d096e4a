"""Datastore benchmarks: CAS throughput, contention, and indexed query scaling.

Every figure is printed beside a ratio measured in the same run, because these
machines are noisy: absolute numbers move between runs, ratios much less.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fleet_coordinator.store import JOBS_SPEC
from fleet_datastore import (
    Container,
    ContainerSpec,
    CosmosConfig,
    DocumentStore,
    Index,
    Patch,
    Query,
    UpsertOp,
    eq,
    store_from_url,
)

SPEC = ContainerSpec(
    "bench",
    fields={"queue": "str", "status": "str", "priority": "int", "created_at": "float"},
    indexes=(Index.of("queue", "status", "-priority", "created_at"),),
)


def log(message: str) -> None:
    """Progress and results go to stdout as they happen."""
    print(message, flush=True)


@contextlib.contextmanager
def cosmos_config() -> Iterator[CosmosConfig]:
    """The local Cosmos-protocol server (or the account named by FLEET_COSMOS_*)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.cosmos_local import cosmos_endpoint

    with cosmos_endpoint() as cfg:
        yield cfg


@contextlib.asynccontextmanager
async def open_store(
    provider: str, workdir: Path, cosmos: CosmosConfig | None
) -> AsyncIterator[DocumentStore]:
    """An open store of the named provider, fresh for each benchmark."""
    if provider == "memory":
        store = store_from_url("memory://")
    elif provider == "sqlite":
        path = workdir / f"bench-{time.monotonic_ns()}.db"
        store = store_from_url(f"sqlite:///{path}")  # an absolute path gives four slashes
    else:
        assert cosmos is not None
        cfg = CosmosConfig(cosmos.endpoint, cosmos.key, f"bench{time.monotonic_ns()}")
        store = store_from_url("cosmos://", cosmos=cfg)
    async with store:
        yield store


def doc(i: int, pk: str = "p0") -> dict[str, Any]:
    """A small job-like document."""
    return {
        "id": f"d{i:08d}",
        "pk": pk,
        "queue": f"q{i % 10}",
        "status": "queued" if i % 3 else "leased",
        "priority": i % 5,
        "created_at": float(i),
        "payload": {"kind": "noop", "args": [i]},
    }


def dict_ceiling(n: int) -> float:
    """Ops/s of a bare dict compare-and-assign loop: the ceiling for an in-process CAS."""
    table: dict[str, dict[str, Any]] = {"a": {"etag": 0, "n": 0}}
    start = time.perf_counter()
    for i in range(n):
        current = table["a"]
        if current["etag"] == i:
            table["a"] = {"etag": i + 1, "n": i}
    return n / (time.perf_counter() - start)


async def cas_throughput(container: Container, n: int, field: str) -> float:
    """Sequential update_if_match ops/s on one document, each chained on the last etag."""
    current = await container.create(doc(0))
    start = time.perf_counter()
    for i in range(n):
        patch = Patch(set={field: i % 5})
        result = await container.update_if_match(current.id, current.partition_key, current, patch)
        assert result.document is not None
        current = result.document
    return n / (time.perf_counter() - start)


def job_doc(i: int, shard: str = "s00") -> dict[str, Any]:
    """A queued job as the coordinator stores it (``jobs`` spec), about 1 KB of JSON."""
    return {
        "id": f"j{i:010d}",
        "pk": shard,
        "queue": f"q{i % 4}",
        "kind": "render.thumbnail",
        "payload": {"source": f"s3://bucket/in/{i:08d}.png", "sizes": [64, 128, 256, 512]},
        "priority": i % 5,
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "lease_seconds": 60.0,
        "timeout_seconds": 600.0,
        "run_after": 1_700_000_000.0 + i,
        "requires": {"gpu": "none", "region": "eu-west"},
        "idempotency_key": f"idem-{i:012d}",
        "cancel_requested": False,
        "result": None,
        "last_error": None,
        "created_at": 1_700_000_000.0 + i,
        "updated_at": 1_700_000_000.0 + i,
        "lease": None,
        "epoch": 0,
        "runs": [],
        "runs_dropped": 0,
        "request_hash": "9f" * 32,
        "notes": "x" * 300,
    }


def job_claim_patch(i: int, attempt: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What a claim changes in a job (as ``codec.patch_between`` would send it)."""
    now = 1_800_000_000.0 + i
    lease = {
        "agent_id": f"agent-{i % 32:04d}",
        "run_id": f"r{i:012d}",
        "epoch": attempt,
        "expires_at": now + 60.0,
        "claimed_at": now,
        "deadline": now + 600.0,
    }
    sets = {
        "status": "leased",
        "attempts": attempt,
        "epoch": attempt,
        "lease": lease,
        "due_at": now + 60.0,
        "updated_at": now,
    }
    return sets, ()


def job_complete_patch(i: int, attempt: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What a successful completion changes: the run recorded, the lease and due_at gone."""
    now = 1_800_000_001.0 + i
    run = {
        "run_id": f"r{i:012d}",
        "epoch": attempt,
        "agent_id": f"agent-{i % 32:04d}",
        "claimed_at": now - 1.0,
        "ended_at": now,
        "outcome": "succeeded",
        "error": None,
    }
    sets = {"status": "succeeded", "result": {"ok": True}, "runs": [run], "updated_at": now}
    return sets, ("lease", "due_at")


async def job_writes(container: Container, jobs: int) -> float:
    """Conditional job writes/s: each job claimed then completed, two chained patches."""
    docs = [await container.create(job_doc(i)) for i in range(jobs)]
    start = time.perf_counter()
    for i, current in enumerate(docs):
        for sets, remove in (job_claim_patch(i, 1), job_complete_patch(i, 1)):
            result = await container.update_if_match(
                current.id, current.partition_key, current, Patch(set=sets, remove=remove)
            )
            assert result.document is not None
            current = result.document
    return 2 * jobs / (time.perf_counter() - start)


async def contention(container: Container, racers: int, writes: int) -> float:
    """Attempts per successful write when ``racers`` CAS loops increment one counter."""
    first = await container.create({"id": f"c{racers}", "pk": "p0", "n": 0})
    attempts = 0
    done = 0

    async def racer() -> None:
        nonlocal attempts, done
        while done < writes:
            current = await container.get(first.id, "p0")
            attempts += 1
            # A real caller does work between its read and its write; yielding here
            # lets the other racers read the same etag, as they would across replicas.
            await asyncio.sleep(0)
            result = await container.update_if_match(
                first.id, "p0", current, Patch(set={"n": current.body["n"] + 1})
            )
            if result.ok:
                done += 1

    await asyncio.gather(*(racer() for _ in range(racers)))
    final = await container.get(first.id, "p0")
    assert final.body["n"] == done, "lost update: the counter disagrees with the successes"
    return attempts / done


async def load(container: Container, count: int, start: int = 0) -> None:
    """Insert documents in transactional batches of 100, with progress for large loads."""
    step = 100
    for base in range(start, start + count, step):
        ops = [UpsertOp(doc(i)) for i in range(base, min(base + step, start + count))]
        await container.batch("p0", ops)
        done = base + len(ops) - start
        if count >= 100_000 and done % 100_000 == 0:
            log(f"    loaded {done:,}/{count:,}")


CLAIM_QUERY = Query(
    where=[eq("queue", "q3"), eq("status", "queued")],
    order_by=["-priority", "created_at"],
    limit=10,
    partition_key="p0",
)


async def top10_ratio(small: Container, large: Container, rounds: int) -> tuple[float, float]:
    """Median seconds of the claim-shaped top-10 query on each container, sampled interleaved.

    Alternating the two in one loop exposes both to the same machine noise, so
    their ratio is meaningful even when absolute times are not.
    """
    samples: dict[str, list[float]] = {"small": [], "large": []}
    for _ in range(rounds):
        for name, container in (("small", small), ("large", large)):
            t = time.perf_counter()
            page = await container.query(CLAIM_QUERY)
            samples[name].append(time.perf_counter() - t)
            assert len(page.items) == 10
    return statistics.median(samples["small"]), statistics.median(samples["large"])


async def run(
    providers: list[str], big: int, cas_ops: int, workdir: Path, cosmos: CosmosConfig | None
) -> None:
    """Run every datastore benchmark for the named providers."""
    log("== datastore: update_if_match throughput (one document, sequential) ==")
    ceiling = dict_ceiling(1_000_000)
    log(f"  bare dict compare-and-assign loop: {ceiling:>12,.0f} ops/s (ceiling)")
    for provider in providers:
        n = cas_ops if provider != "cosmos" else max(cas_ops // 50, 200)
        for field, what in (("note", "unindexed field"), ("priority", "indexed field")):
            async with open_store(provider, workdir, cosmos) as store:
                c = await store.create_container_if_not_exists(SPEC)
                rate = await cas_throughput(c, n, field)
            log(
                f"  {provider:<7} update_if_match ({what}): {rate:>10,.0f} ops/s"
                f"   = {rate / ceiling:.4f} x dict ceiling"
            )

    log("== datastore: job-shaped writes (coordinator jobs spec, ~1 KB body, claim+complete) ==")
    for provider in providers:
        jobs = cas_ops // 10 if provider != "cosmos" else 100
        async with open_store(provider, workdir, cosmos) as store:
            c = await store.create_container_if_not_exists(JOBS_SPEC)
            rate = await job_writes(c, jobs)
        log(f"  {provider:<7} job update_if_match: {rate:>10,.0f} writes/s")

    log("== datastore: attempts per successful write as racers grow ==")
    for provider in providers:
        cells = []
        for racers in (1, 4, 16, 64, 256):
            writes = 200 if provider != "cosmos" else 50
            async with open_store(provider, workdir, cosmos) as store:
                c = await store.create_container_if_not_exists(SPEC)
                cells.append(f"{racers}:{await contention(c, racers, writes):.2f}")
        log(f"  {provider:<7} racers:attempts/write  " + "  ".join(cells))

    log(f"== datastore: indexed top-10 query, 1,000 vs {big:,} documents ==")
    for provider in [p for p in providers if p != "cosmos"]:
        async with open_store(provider, workdir, cosmos) as store:
            small = await store.create_container_if_not_exists(SPEC)
            large = await store.create_container_if_not_exists(
                ContainerSpec("large", fields=SPEC.fields, indexes=SPEC.indexes)
            )
            await load(small, 1_000)
            log(f"  {provider:<7} loading {big:,} documents ...")
            t = time.perf_counter()
            await load(large, big)
            log(f"  {provider:<7} loaded in {time.perf_counter() - t:.1f}s")
            p50_small, p50_large = await top10_ratio(small, large, 500)
        log(
            f"  {provider:<7} p50 at 1k: {p50_small * 1e6:8.1f} us   at {big:,}:"
            f" {p50_large * 1e6:8.1f} us   ratio {p50_large / p50_small:.2f}x (target <= 1.5x)"
        )


def main(argv: list[str]) -> None:
    """Entry point for ``python -m bench datastore``."""
    import argparse

    parser = argparse.ArgumentParser(prog="bench datastore")
    parser.add_argument("--providers", default="memory,sqlite,cosmos")
    parser.add_argument(
        "--docs", type=int, default=1_000_000, help="documents for the large query test"
    )
    parser.add_argument("--cas-ops", type=int, default=50_000)
    args = parser.parse_args(argv)
    providers = args.providers.split(",")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp, contextlib.ExitStack() as stack:
        cosmos = stack.enter_context(cosmos_config()) if "cosmos" in providers else None
        asyncio.run(run(providers, args.docs, args.cas_ops, Path(tmp), cosmos))
