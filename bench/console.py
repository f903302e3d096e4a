"""Console page server times over a large SQLite store (``python -m bench console``).

Fills a SQLite file with ``--jobs`` jobs (default 1,000,000; kept under
``var/bench-console-<n>.db`` and reused by later runs), then times each console
page in process (ASGI, no sockets: the server's own time, session check
included) and prints p50 / p95 / max per page. Every page reads only indexed
queries; the queue counts come from the per-replica snapshot, recounted in the
background at most once per reaper interval: the row "queue recount" is that
background work, and "GET /v1/queues" (exact counts on every call) is shown
beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import JobStatus, Lease, Run, RunOutcome
from fleet_coordinator.domain import enqueue as new_job
from fleet_coordinator.services import queue_stats
from fleet_coordinator.store import JOBS_SPEC, job_to_doc, new_id, shard_of
from fleet_datastore import ContainerSpec, CreateOp, Patch, store_from_url

QUEUES = ("build", "deploy", "reports", "email", "thumbnails")
KINDS = tuple(f"kind-{i:02d}" for i in range(20))
ADMIN = "bench-admin-token"
SHARDS = 16
# Of every 1,000 jobs: what a store that keeps a week of history looks like.
MIX = (
    (JobStatus.SUCCEEDED, 900),
    (JobStatus.FAILED, 40),
    (JobStatus.CANCELLED, 20),
    (JobStatus.QUEUED, 35),
    (JobStatus.LEASED, 5),
)


def log(message: str) -> None:
    """Progress and results go to stdout as they happen."""
    print(message, flush=True)


def _doc(i: int, now: float) -> dict[str, Any]:
    created = now - 30 * 86400 + i * (30 * 86400 / 1_000_000)
    job_id = new_id()
    state = new_job(
        job_id=job_id,
        kind=KINDS[i % len(KINDS)],
        payload={"n": i, "target": f"svc-{i % 97}"},
        now=created,
        queue=QUEUES[i % len(QUEUES)],
    )
    roll = i % 1000
    status = JobStatus.QUEUED
    for candidate, share in MIX:
        if roll < share:
            status = candidate
            break
        roll -= share
    if status is not JobStatus.QUEUED:
        agent = f"agent{i % 50:02d}"
        ended = None if status is JobStatus.LEASED else created + 5
        outcome = {
            JobStatus.SUCCEEDED: RunOutcome.SUCCEEDED,
            JobStatus.FAILED: RunOutcome.FAILED,
            JobStatus.CANCELLED: RunOutcome.CANCELLED,
            JobStatus.LEASED: RunOutcome.RUNNING,
        }[status]
        run = Run(
            run_id=new_id(),
            epoch=1,
            agent_id=agent,
            claimed_at=created + 1,
            ended_at=ended,
            outcome=outcome,
            error="boom" if status is JobStatus.FAILED else None,
        )
        lease = None
        if status is JobStatus.LEASED:
            lease = Lease(
                agent_id=agent,
                run_id=run.run_id,
                epoch=1,
                expires_at=now + 86400,
                claimed_at=created + 1,
            )
        state = replace(
            state,
            status=status,
            attempts=1,
            epoch=1,
            runs=(run,),
            lease=lease,
            updated_at=created + 5,
        )
    body = job_to_doc(state, shard_of(job_id, SHARDS))
    if i % 100 == 0:
        body["lock"] = f"host-{i % 500}"  # the lock field of the locks feature, on 1 % of jobs
    return body


async def fill(path: Path, count: int) -> None:
    """Write ``count`` jobs straight into the store, one transactional batch per shard and 100."""
    settings = Settings(store_url=f"sqlite:///{path}", admin_token=ADMIN, job_shards=SHARDS)
    app = create_app(settings, hot_path=False)
    now = time.time()
    began = time.perf_counter()
    async with app.router.lifespan_context(app):
        co = app.state.coordinator
        jobs = co.containers.jobs
        for queue in QUEUES:
            await co.containers.agents.upsert(
                {
                    "id": f"q.{queue}",
                    "pk": "queues",
                    "kind": "queue",
                    "name": queue,
                    "created_at": now,
                }
            )
        step = 20_000
        for start in range(0, count, step):
            by_shard: dict[str, list[dict[str, Any]]] = {}
            for i in range(start, min(start + step, count)):
                body = _doc(i, now)
                by_shard.setdefault(body["pk"], []).append(body)
            writes = [
                jobs.batch(shard, [CreateOp(b) for b in bodies[k : k + 100]])
                for shard, bodies in by_shard.items()
                for k in range(0, len(bodies), 100)
            ]
            await asyncio.gather(*writes)
            done = min(start + step, count)
            if done % 100_000 == 0 or done == count:
                log(f"  {done:>9,} jobs written ({time.perf_counter() - began:.0f} s)")
        for i in range(12):
            await co.containers.agents.upsert(
                {
                    "id": f"agent{i:02d}",
                    "pk": f"agent{i:02d}",
                    "kind": "agent",
                    "name": f"worker-{i}",
                    "labels": {"zone": f"eu-{i % 3}"},
                    "capacity": 4,
                    "queues": [],
                    "draining": False,
                    "token_hash": "x",
                    "created_at": now,
                    "last_seen": now,
                    "held": {},
                }
            )


async def measure(path: Path, rounds: int) -> list[tuple[str, list[float]]]:
    """Server time of each page, in milliseconds, ``rounds`` times each."""
    settings = Settings(
        store_url=f"sqlite:///{path}",
        admin_token=ADMIN,
        job_shards=SHARDS,
        reaper_enabled=False,
    )
    app = create_app(settings)
    results: list[tuple[str, list[float]]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            form = await client.get("/ui/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf
            signed = await client.post("/ui/signin", data={"token": ADMIN, "csrf": csrf.group(1)})
            assert signed.status_code == 303, signed.text
            some = await client.get(
                "/v1/jobs?status=failed&limit=1", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            job_id = some.json()["items"][0]["id"]
            middle = await client.get(
                "/v1/jobs?queue=build&limit=1000", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            cursor = middle.json()["next_cursor"]
            pages = {
                "overview /ui/": "/ui/",
                "queues /ui/queues": "/ui/queues",
                "jobs, no filter": "/ui/jobs",
                "jobs, queue": "/ui/jobs?queue=build",
                "jobs, queue + status": "/ui/jobs?queue=build&status=queued",
                "jobs, kind + status": "/ui/jobs?kind=kind-07&status=failed",
                "jobs, queue + kind + status": (
                    "/ui/jobs?queue=deploy&kind=kind-01&status=succeeded"
                ),
                "jobs, lock": "/ui/jobs?lock=host-200",
                "jobs, next page (cursor)": f"/ui/jobs?queue=build&cursor={cursor}",
                "a job /ui/jobs/{id}": f"/ui/jobs/{job_id}",
                "failed /ui/failed": "/ui/failed",
                "failed, queue + kind": "/ui/failed?queue=email&kind=kind-03",
                "agents /ui/agents": "/ui/agents",
                "schedules /ui/schedules": "/ui/schedules",
            }
            began = time.perf_counter()
            await client.get("/ui/")  # the first page after start waits for the first count
            results.append(
                ("first page after start (counts inline)", [(time.perf_counter() - began) * 1000])
            )
            for name, url in pages.items():
                times = []
                for _ in range(rounds):
                    began = time.perf_counter()
                    r = await client.get(url)
                    times.append((time.perf_counter() - began) * 1000)
                    assert r.status_code == 200, (url, r.status_code)
                results.append((name, times))
            co = app.state.coordinator
            counts = []
            for _ in range(max(rounds // 4, 3)):
                began = time.perf_counter()
                await queue_stats(co)
                counts.append((time.perf_counter() - began) * 1000)
            results.append(("queue recount (background, once per interval)", counts))
            api = []
            for _ in range(max(rounds // 4, 3)):
                began = time.perf_counter()
                await client.get("/v1/queues", headers={"Authorization": f"Bearer {ADMIN}"})
                api.append((time.perf_counter() - began) * 1000)
            results.append(("GET /v1/queues (exact, every call)", api))
    return results


def _spec_before() -> ContainerSpec:
    """``jobs`` as declared before the console: no kind/lock fields, no listing indexes."""
    listing = {("kind",), ("lock",), ("queue", "created_at")}
    kept = tuple(
        ix
        for ix in JOBS_SPEC.indexes
        if not ({n for n, _ in ix.fields} & {"kind", "lock"})
        and tuple(n for n, _ in ix.fields) not in listing
    )
    fields = {k: v for k, v in JOBS_SPEC.fields.items() if k not in ("kind", "lock")}
    return ContainerSpec(JOBS_SPEC.name, JOBS_SPEC.partition_key, fields=fields, indexes=kept)


async def index_cost(rounds: int, jobs: int) -> None:
    """Job writes on SQLite with the listing indexes and without, interleaved rounds."""
    from bench.datastore import job_claim_patch, job_complete_patch, job_doc

    before, after = _spec_before(), JOBS_SPEC
    log(
        f"== job writes on SQLite: {len(before.indexes)} indexes (before) "
        f"vs {len(after.indexes)} (with the listing indexes), {rounds} interleaved rounds =="
    )
    rates: dict[str, dict[str, list[float]]] = {
        "before": {"create": [], "patch": []},
        "after": {"create": [], "patch": []},
    }
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for name, spec in (("before", before), ("after", after)):
            store = store_from_url(f"sqlite:///{tmp}/{name}.db")
            await store.open()
            stores[name] = (store, await store.create_container_if_not_exists(spec))
        try:
            for r in range(rounds):
                for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                    container = stores[name][1]
                    base = r * jobs
                    began = time.perf_counter()
                    docs = [await container.create(job_doc(base + i)) for i in range(jobs)]
                    rates[name]["create"].append(jobs / (time.perf_counter() - began))
                    began = time.perf_counter()
                    for i, current in enumerate(docs):
                        for sets, remove in (
                            job_claim_patch(base + i, 1),
                            job_complete_patch(base + i, 1),
                        ):
                            result = await container.update_if_match(
                                current.id,
                                current.partition_key,
                                current,
                                Patch(set=sets, remove=remove),
                            )
                            assert result.document is not None
                            current = result.document
                    rates[name]["patch"].append(2 * jobs / (time.perf_counter() - began))
        finally:
            for store, _ in stores.values():
                await store.close()
    for what in ("create", "patch"):
        b = statistics.median(rates["before"][what])
        a = statistics.median(rates["after"][what])
        log(f"{what:<8} before {b:>9,.0f}/s  after {a:>9,.0f}/s  after/before {a / b:.2f}")


def main(argv: list[str]) -> None:
    """Fill (or reuse) the store, then print each page's server time."""
    parser = argparse.ArgumentParser(prog="python -m bench console")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--index-cost", action="store_true", help="only the A/B of job writes with/without"
    )
    args = parser.parse_args(argv)
    if args.index_cost:
        asyncio.run(index_cost(args.rounds, 500))
        return
    path = Path("var") / f"bench-console-{args.jobs}.db"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        log(f"filling {path} with {args.jobs:,} jobs")
        try:
            asyncio.run(fill(path, args.jobs))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    log(f"console pages over {args.jobs:,} jobs in SQLite ({path}), {args.rounds} rounds, ms")
    log(f"{'page':<48} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, times in asyncio.run(measure(path, args.rounds)):
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        log(f"{name:<48} {statistics.median(times):>8.2f} {p95:>8.2f} {max(times):>8.2f}")
