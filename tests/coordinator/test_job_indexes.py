"""The jobs container's indexes: every claim, reaper, retention and lock query seeks one (SQLite).

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
from fleet_coordinator.services.locks import head_query
from fleet_coordinator.store import JOBS_SPEC
from fleet_coordinator.store.listing import JobFilter, list_page, listing_query
from fleet_datastore import Index, InvalidRequestError, Query, eq, gt, in_, le, store_from_url
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
    # store/listing.py: a lock's jobs, whatever the other filters
    "lock listing": listing_query(JobFilter(lock="L", queue="q", status="failed"), 50),
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
    have their own listing index; the lock listing index holds only jobs with a lock.
    """
    conn = sqlite3.connect(tmp_path / "sizes.db")
    for statement in schema_sql(JOBS_SPEC):
        conn.execute(statement)
    rows = [
        ("queued", None, None, ""),
        ("queued", None, None, "L"),
        ("leased", 5.0, None, "L"),
        ("succeeded", None, 7.0, ""),
        ("failed", None, 8.0, ""),
        ("cancelled", None, 9.0, ""),
    ]
    conn.executemany(
        'INSERT INTO "doc_jobs" (pk, id, etag, body, f_queue, f_status, f_priority, '
        "f_created__at, f_run__after, f_due__at, f_ended__at, f_kind, f_lock) "
        "VALUES ('s', ?, 'e', '{}', 'q', ?, 0, 1.0, 0.0, ?, ?, 'k', ?)",
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
    queued = sum(1 for status, *_ in rows if status == JobStatus.QUEUED.value)
    at_rest = " OR ".join(
        f"f_status = '{s}'" for s in ("cancelled", "failed", "queued", "succeeded")
    )
    assert sizes == {
        "f_status = 'queued'": queued,  # the three claim indexes share the condition
        "f_status IS NOT NULL AND f_due__at IS NOT NULL": 1,
        "f_status IS NOT NULL AND f_ended__at IS NOT NULL": 3,
        f"({at_rest})": len(rows) - 1,  # the four listing indexes with status: all but leased
        "f_status = 'leased'": 1,  # the leased jobs' listing index
        "f_lock <> ''": 2,  # the lock listing index: only the jobs with a lock
    }


async def test_a_jobs_file_with_the_full_indexes_migrates_on_open(tmp_path: Path) -> None:
    """A file written with the earlier full indexes opens with the partial ones; answers agree.

    The earlier layout also had the ``(id, pk)`` index of the id order, which the jobs
    container no longer keeps (``JOBS_SPEC.id_order``): opening drops it.
    """
    full = dataclasses.replace(
        JOBS_SPEC,
        indexes=tuple(dataclasses.replace(i, where=(), sparse=False) for i in JOBS_SPEC.indexes),
        id_order=True,
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
            "lock": "L" if i % 5 == 0 else "",
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
        locked = await jobs.query(listing_query(JobFilter(lock="L"), 100))
        assert [d.id for d in locked.items] == [d["id"] for d in bodies if d["lock"] == "L"]
    indexes = _jobs_indexes(tmp_path / "jobs.db")
    wanted = [
        sql.replace(" IF NOT EXISTS", "")
        for sql in schema_sql(JOBS_SPEC)[1:]
        if sql.startswith("CREATE INDEX")  # not the size trigger
    ]
    assert sorted(indexes) == sorted(wanted)  # the old full ones dropped
    assert not [sql for sql in indexes if sql.endswith("(id, pk)")]  # and the id order's


def test_a_new_jobs_table_has_no_id_order_index_and_a_lock_index_of_locked_jobs_only() -> None:
    """Two B-trees fewer for each job insert: no ``(id, pk)``, and no lockless job by lock.

    Every query of jobs names an order or a shard (``JOBS_SPEC.id_order``), and a
    listing by lock never asks for the lockless jobs' lock ``""`` (the API refuses
    an empty lock name), so neither index is read for anything the others cannot do.
    """
    statements = schema_sql(JOBS_SPEC)
    assert not [s for s in statements if "(id, pk)" in s]
    lock_index = [s for s in statements if '"doc_jobs" (f_lock ASC' in s]
    assert len(lock_index) == 1, lock_index
    assert lock_index[0].endswith(" WHERE f_lock <> ''"), lock_index
    with pytest.raises(InvalidRequestError, match="id_order"):
        plan_query(JOBS_SPEC, Query(limit=10))
    conn = sqlite3.connect(":memory:")
    for statement in statements:
        conn.execute(statement)

    def plan_of(query: Query) -> str:
        (branch,) = query_branches(JOBS_SPEC, plan_query(JOBS_SPEC, query))
        rows = conn.execute(f"EXPLAIN QUERY PLAN {branch.sql}", branch.params).fetchall()
        text = " | ".join(str(row[3]) for row in rows)
        assert text.startswith("SEARCH"), text
        assert "TEMP B-TREE" not in text, text
        return text

    # A lock listing seeks the lock's jobs in the partial index (not a walk of another).
    listing = plan_of(listing_query(JobFilter(lock="L", queue="q"), 50))
    name = lock_index[0].split('"')[1]
    assert f"INDEX {name} (f_lock=?" in listing, listing
    # A claim of one lock's head still seeks the claim index of locks, not the lock listing's.
    assert "(f_status=? AND f_lock=?" in plan_of(head_query("L", ["q"], NOW))
    conn.close()


@pytest.mark.parametrize("status", [s.value for s in JobStatus])
def test_a_queue_count_by_status_seeks_an_index_of_jobs_in_that_status(
    tmp_path: Path, status: str
) -> None:
    """GET /v1/queues counts each status of a queue from an index holding that status.

    The leased count walks the leased jobs' own index (at most the fleet's
    capacity), never the queue's whole history through ``queue, created_at``.
    """
    query = Query(where=[eq("queue", "q"), eq("status", status)])
    compiled = count_sql(JOBS_SPEC, plan_query(JOBS_SPEC, query, counting=True))
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
