"""The jobs container's indexes: every claim, reaper and retention query seeks one (SQLite).

The claim indexes hold only queued jobs and the reaper and retention ones only
leased and terminal jobs (partial indexes, ``store/specs.py``); these tests check
that SQLite still judges each query to be served by one, with no sort step, that
the partial indexes hold what they should, and that a file written with the
earlier full indexes migrates when it is opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fleet_coordinator.domain import TERMINAL_STATUSES, JobStatus
from fleet_coordinator.store import JOBS_SPEC
from fleet_coordinator.store.listing import JobFilter, list_page
from fleet_datastore import Index, Query, eq, gt, in_, le, store_from_url
from fleet_datastore.continuation import encode, position
from fleet_datastore.providers.sqlite_sql import count_sql, query_branches, schema_sql
from fleet_datastore.query import plan_query, plan_shape

NOW = 1_000.0
CLAIM = ["-priority", "created_at"]

QUERIES = {
    # services/candidates.py
    "claim, any queue": Query(
        where=[eq("status", "queued"), le("run_after", NOW)], order_by=CLAIM, limit=20
    ),
    "claim, one queue": Query(
        where=[eq("queue", "q"), eq("status", "queued"), le("run_after", NOW)],
        order_by=CLAIM,
        limit=20,
    ),
    "claim, several queues": Query(
        where=[in_("queue", ["a", "b"]), eq("status", "queued"), le("run_after", NOW)],
        order_by=CLAIM,
        limit=20,
    ),
    # services/locks.py
    "lockless jobs": Query(
        where=[eq("status", "queued"), le("run_after", NOW), eq("lock", "")],
        order_by=CLAIM,
        limit=20,
    ),
    "head of the next lock": Query(
        where=[eq("status", "queued"), le("run_after", NOW), gt("lock", "a")],
        order_by=["lock", *CLAIM],
        limit=1,
    ),
    # services/reaper.py
    "reaper": Query(
        where=[eq("status", "leased"), le("due_at", NOW)], order_by=["due_at"], limit=200
    ),
    # services/queues.py
    "oldest queued job": Query(
        where=[eq("queue", "q"), eq("status", "queued")], order_by=["created_at"], limit=1
    ),
    # services/retention.py, one per terminal status
    **{
        f"retention of {s.value}": Query(
            where=[eq("status", s.value), le("ended_at", NOW)], order_by=["ended_at"], limit=200
        )
        for s in sorted(TERMINAL_STATUSES)
    },
}


@pytest.mark.parametrize("shape", list(QUERIES))
def test_every_claim_reaper_and_retention_query_seeks_an_index(tmp_path: Path, shape: str) -> None:
    """First page and later pages alike: an index SEARCH, never a sort or a scan."""
    query = QUERIES[shape]
    plan = plan_query(JOBS_SPEC, query)
    values = {
        name: ("a" if name in ("lock", "queue", "id", "pk") else 1.0) for name, _ in plan.sort
    }
    values.update(priority=1)
    later = Query(
        where=query.where,
        order_by=query.order_by,
        limit=query.limit,
        continuation=encode(plan_shape(plan), position(plan.sort, values)),
    )
    with sqlite3.connect(tmp_path / "plan.db") as conn:
        for statement in schema_sql(JOBS_SPEC):
            conn.execute(statement)
        for q in (query, later):
            for branch in query_branches(JOBS_SPEC, plan_query(JOBS_SPEC, q)):
                rows = conn.execute(f"EXPLAIN QUERY PLAN {branch.sql}", branch.params).fetchall()
                text = " | ".join(str(row[3]) for row in rows)
                assert text.startswith("SEARCH"), text
                assert "USING INDEX" in text or "USING COVERING INDEX" in text, text
                assert "TEMP B-TREE" not in text, text
    conn.close()


def test_each_partial_jobs_index_holds_only_the_jobs_its_queries_return(tmp_path: Path) -> None:
    """Queued jobs in the claim indexes, leased ones in the reaper's, ended ones in retention's.

    The listing indexes with ``status`` hold every job but the leased ones, which
    have their own listing index.
    """
    conn = sqlite3.connect(tmp_path / "sizes.db")
    for statement in schema_sql(JOBS_SPEC):
        conn.execute(statement)
    rows = [
        ("queued", None, None),
        ("queued", None, None),
        ("leased", 5.0, None),
        ("succeeded", None, 7.0),
        ("failed", None, 8.0),
        ("cancelled", None, 9.0),
    ]
    conn.executemany(
        'INSERT INTO "doc_jobs" (pk, id, etag, body, f_queue, f_status, f_priority, '
        "f_created__at, f_run__after, f_due__at, f_ended__at, f_kind, f_lock) "
        "VALUES ('s', ?, 'e', '{}', 'q', ?, 0, 1.0, 0.0, ?, ?, 'k', '')",
        [(f"j{i}", *row) for i, row in enumerate(rows)],
    )
    conn.commit()
    conn.execute("ANALYZE")
    stats = dict(conn.execute("SELECT idx, stat FROM sqlite_stat1").fetchall())
    sizes: dict[str, int] = {}
    for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
    ):
        sizes[str(sql).split(" WHERE ", 1)[1]] = int(str(stats.get(name, "0")).split()[0])
    conn.close()
    queued = sum(1 for status, _, _ in rows if status == JobStatus.QUEUED.value)
    at_rest = " OR ".join(
        f"f_status = '{s}'" for s in ("cancelled", "failed", "queued", "succeeded")
    )
    assert sizes == {
        "f_status = 'queued'": queued,  # the three claim indexes share the condition
        "f_status IS NOT NULL AND f_due__at IS NOT NULL": 1,
        "f_status IS NOT NULL AND f_ended__at IS NOT NULL": 3,
        f"({at_rest})": len(rows) - 1,  # the four listing indexes with status: all but leased
        "f_status = 'leased'": 1,  # the leased jobs' listing index
    }


async def test_a_jobs_file_with_the_full_indexes_migrates_on_open(tmp_path: Path) -> None:
    """A file written with the earlier full indexes opens with the partial ones; answers agree."""
    full = dataclasses.replace(
        JOBS_SPEC,
        indexes=tuple(dataclasses.replace(i, where=(), sparse=False) for i in JOBS_SPEC.indexes),
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    bodies: list[dict[str, Any]] = [
        {
            "id": f"j{i:03d}",
            "pk": f"s{i % 4}",
            "queue": "q",
            "status": ("queued", "leased", "succeeded")[i % 3],
            "priority": i % 2,
            "created_at": float(i),
            "run_after": 0.0,
            "kind": "k",
            "lock": "",
            **({"due_at": 100.0 + i} if i % 3 == 1 else {}),
            **({"ended_at": 50.0 + i} if i % 3 == 2 else {}),
        }
        for i in range(60)
    ]
    async with store_from_url(url) as store:
        jobs = await store.create_container_if_not_exists(full)
        for body in bodies:
            await jobs.create(body)
    async with store_from_url(url) as a, store_from_url(url) as b:
        jobs, _ = await asyncio.gather(
            a.create_container_if_not_exists(JOBS_SPEC), b.create_container_if_not_exists(JOBS_SPEC)
        )
        claim = await jobs.query(QUERIES["claim, one queue"])
        queued = sorted(
            (d for d in bodies if d["status"] == "queued"),
            key=lambda d: (-d["priority"], d["created_at"]),
        )
        assert [d.id for d in claim.items] == [d["id"] for d in queued[:20]]
        reaped = await jobs.query(
            Query(where=[eq("status", "leased"), le("due_at", 130.0)], order_by=["due_at"])
        )
        assert [d.id for d in reaped.items] == [
            d["id"] for d in bodies if d["status"] == "leased" and d["due_at"] <= 130.0
        ]
        assert await jobs.count(Query(where=[eq("status", "succeeded")])) == 20
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        indexes = [
            str(sql)
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'doc_jobs'"
            )
            if sql is not None
        ]
    conn.close()
    wanted = [
        sql.replace(" IF NOT EXISTS", "")
        for sql in schema_sql(JOBS_SPEC)[1:]
        if sql.startswith("CREATE INDEX")  # not the size trigger
    ]
    assert sorted(indexes) == sorted(wanted)  # the old full ones dropped


@pytest.mark.parametrize("status", [s.value for s in JobStatus])
def test_a_queue_count_by_status_seeks_an_index_of_jobs_in_that_status(
    tmp_path: Path, status: str
) -> None:
    """GET /v1/queues counts each status of a queue from an index holding that status.

    The leased count walks the leased jobs' own index (at most the fleet's
    capacity), never the queue's whole history through ``queue, created_at``.
    """
    query = Query(where=[eq("queue", "q"), eq("status", status)])
    compiled = count_sql(JOBS_SPEC, plan_query(JOBS_SPEC, query))
    with sqlite3.connect(tmp_path / "count.db") as conn:
        for statement in schema_sql(JOBS_SPEC):
            conn.execute(statement)
        partial = {
            str(name): str(sql).split(" WHERE ", 1)[1]
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
            )
        }
        rows = conn.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", compiled.params).fetchall()
    conn.close()
    text = " | ".join(str(row[3]) for row in rows)
    assert text.startswith("SEARCH"), text
    used = text.split(" INDEX ", 1)[1].split(" ", 1)[0]
    assert f"f_status = '{status}'" in partial.get(used, ""), text


STATUS_LESS_LISTING_INDEXES = (
    Index.of("queue", "kind", "created_at", per_partition=False),
    Index.of("queue", "created_at", per_partition=False),
    Index.of("kind", "created_at", per_partition=False),
    Index.of("created_at", per_partition=False),
)
"""The listing indexes without ``status`` that earlier versions declared (store/listing.py)."""


def _jobs_indexes(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        found = [
            str(sql)
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'doc_jobs'"
            )
            if sql is not None
        ]
    conn.close()
    return found


async def test_a_jobs_file_with_the_status_less_listing_indexes_drops_them_on_open(
    tmp_path: Path,
) -> None:
    """A file made when listings without a status had indexes of their own loses them.

    Every enqueue paid a B-tree insert into each; listings without a status now
    merge one query per status. The jobs stay, and are listed as before.
    """
    old = dataclasses.replace(JOBS_SPEC, indexes=JOBS_SPEC.indexes + STATUS_LESS_LISTING_INDEXES)
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    bodies: list[dict[str, Any]] = [
        {
            "id": f"j{i:03d}",
            "pk": f"s{i % 4}",
            "queue": "qr"[i % 2],
            "status": ("queued", "leased", "succeeded", "cancelled")[i % 4],
            "priority": 0,
            "created_at": float(i // 3),
            "run_after": 0.0,
            "kind": "k",
            "lock": "",
            **({"due_at": 100.0} if i % 4 == 1 else {}),
            **({"ended_at": 50.0} if i % 4 >= 2 else {}),
        }
        for i in range(40)
    ]
    async with store_from_url(url) as store:
        jobs = await store.create_container_if_not_exists(old)
        for body in bodies:
            await jobs.create(body)
    before = _jobs_indexes(path)
    assert len(before) == len(_jobs_indexes_wanted()) + len(STATUS_LESS_LISTING_INDEXES)
    async with store_from_url(url) as store:
        jobs = await store.create_container_if_not_exists(JOBS_SPEC)
        listed = []
        cursor = None
        while True:
            docs, cursor = await list_page(jobs, JobFilter(queue="r"), limit=3, continuation=cursor)
            listed += [d.id for d in docs]
            if cursor is None:
                break
    expected = sorted(
        (b for b in bodies if b["queue"] == "r"), key=lambda b: (b["created_at"], b["id"], b["pk"])
    )
    assert listed == [b["id"] for b in expected]
    assert sorted(_jobs_indexes(path)) == sorted(_jobs_indexes_wanted())


def _jobs_indexes_wanted() -> list[str]:
    return [
        sql.replace(" IF NOT EXISTS", "")
        for sql in schema_sql(JOBS_SPEC)[1:]
        if sql.startswith("CREATE INDEX")  # not the size trigger
    ]
