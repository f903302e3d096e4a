"""What only the SQLite provider promises: a durable file, shared safely by processes.

The provider-agnostic behaviour is in the contract suite; these tests cover the
file (WAL, reopening, the synchronous level), the multi-process race, index use
seen through EXPLAIN QUERY PLAN, the in-SQL patch and its size guard, and the
translation of driver errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fleet_datastore import (
    AlreadyExistsError,
    BatchError,
    Container,
    ContainerSpec,
    DatastoreError,
    Document,
    DocumentStore,
    DocumentTooLargeError,
    Index,
    InvalidRequestError,
    Outcome,
    Patch,
    PatchOp,
    Query,
    StoreUnavailableError,
    UnknownContainerError,
    UpdateResult,
    UpsertOp,
    eq,
    lt,
    store_from_url,
)
from fleet_datastore.documents import PreparedDocument, apply_patch, dumps, loads
from fleet_datastore.providers import sqlite as sqlite_provider
from fleet_datastore.providers.sqlite import SqliteBackend, translated
from fleet_datastore.providers.sqlite_sql import field_column, patch_sql, query_branches, schema_sql
from fleet_datastore.query import plan_query

from .sqlite_race_worker import DOC_ID, PK, SPEC, RaceConfig, counting_main, run_race

TASKS = ContainerSpec(
    name="tasks",
    partition_key="tenant",
    fields={"status": "str", "priority": "int", "created_at": "float", "lease.at": "float"},
    indexes=(
        Index.of("status", "-priority", "created_at"),
        Index.of("status", "lease.at"),
        Index.of("tenant", "created_at"),
    ),
)


def _url(path: Path, options: str = "") -> str:
    return f"sqlite:///{path}{options}"  # tmp paths are absolute: sqlite:////tmp/...


def _task(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"t{i:04d}",
        "tenant": f"tenant{i % 3}",
        "status": "queued" if i % 2 else "leased",
        "priority": i % 5,
        "created_at": float(i),
        "lease": {"at": float(1000 - i)},
        **extra,
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file path inside directories that do not exist yet."""
    return tmp_path / "nested" / "dir" / "fleet.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[DocumentStore]:
    """An open SQLite store on a fresh file."""
    async with store_from_url(_url(db_path)) as opened:
        yield opened


@pytest.fixture
async def tasks(store: DocumentStore) -> Container:
    """The ``tasks`` container holding 300 documents over three tenants."""
    container = await store.create_container_if_not_exists(TASKS)
    for i in range(300):
        await container.create(_task(i))
    return container


async def _pragma(store: DocumentStore, name: str) -> Any:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    return await backend._w.run(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])


def _journal_mode_on_disk(path: Path) -> str:
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


# --- the file ---------------------------------------------------------------------------


async def test_file_is_created_with_its_directories_in_wal_mode(
    store: DocumentStore, db_path: Path
) -> None:
    """Opening creates the parent directories and the file, and the journal is WAL."""
    assert await _pragma(store, "journal_mode") == "wal"
    assert _journal_mode_on_disk(db_path) == "wal"


async def test_connections_are_set_up_for_sharing_and_durability(db_path: Path) -> None:
    """30 s busy timeout, sparser checkpoints, synchronous NORMAL unless ``?synchronous=full``."""
    async with store_from_url(_url(db_path)) as default:
        assert await _pragma(default, "synchronous") == 1
        assert await _pragma(default, "busy_timeout") == 30_000
        assert await _pragma(default, "wal_autocheckpoint") == 4000
    async with store_from_url(_url(db_path, "?synchronous=full")) as full:
        assert await _pragma(full, "synchronous") == 2


@pytest.mark.parametrize("options", ["?synchronous=off", "?journal=delete", "?synchronous"])
def test_unknown_url_options_are_rejected(db_path: Path, options: str) -> None:
    """Only synchronous=normal|full|extra may follow the path; anything else is bad input."""
    with pytest.raises(InvalidRequestError):
        store_from_url(_url(db_path, options))


async def test_a_reopened_file_holds_the_same_documents_and_etags(db_path: Path) -> None:
    """What one store wrote, a new store on the same file reads back unchanged."""
    async with store_from_url(_url(db_path)) as first:
        written = await (await first.create_container_if_not_exists(TASKS)).create(_task(7))
    async with store_from_url(_url(db_path)) as second:
        again = await second.create_container_if_not_exists(TASKS)
        assert await again.get("t0007", "tenant1") == written
        assert await again.count() == 1


async def test_two_stores_on_one_file_see_each_others_writes(db_path: Path) -> None:
    """Two backends on one file: a write by one is a conflict for the other's stale etag."""
    async with store_from_url(_url(db_path)) as a, store_from_url(_url(db_path)) as b:
        in_a = await a.create_container_if_not_exists(TASKS)
        in_b = await b.create_container_if_not_exists(TASKS)
        created = await in_a.create(_task(1))
        seen_by_b = await in_b.get("t0001", "tenant1")
        assert seen_by_b == created
        won = await in_a.update_if_match("t0001", "tenant1", created, Patch(set={"status": "x"}))
        assert won.ok
        lost = await in_b.update_if_match("t0001", "tenant1", seen_by_b, Patch(set={"n": 1}))
        assert lost.outcome is Outcome.CONFLICT
        assert await in_b.get("t0001", "tenant1") == won.document


async def test_in_memory_database_works_on_one_connection() -> None:
    """``sqlite:///:memory:`` works: reads share the writer's connection and database."""
    async with store_from_url("sqlite:///:memory:") as store:
        container = await store.create_container_if_not_exists(TASKS)
        await container.create(_task(3))
        assert (await container.get("t0003", "tenant0")).body["priority"] == 3


# --- processes --------------------------------------------------------------------------


def test_four_processes_racing_on_one_file_have_exactly_one_winner_per_round(
    tmp_path: Path,
) -> None:
    """4 processes x 32 racers, 200 rounds, all holding one etag per round: one winner each.

    The processes also open the fresh file and declare the container at the same
    instant, so concurrent WAL setup and ``ensure_container`` are exercised too.
    """
    winners = run_race(RaceConfig(str(tmp_path / "race.db"), processes=4, racers=32, rounds=200))
    assert len(winners) == 200
    assert [i for i, n in enumerate(winners) if n != 1] == []


def test_every_acknowledged_write_survives_a_sigkill(tmp_path: Path) -> None:
    """A process killed mid-stream loses no write it was told had committed (WAL, NORMAL)."""
    path = tmp_path / "killed.db"
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=counting_main, args=(str(path), send), daemon=True)
    proc.start()
    send.close()
    acked = 0
    try:
        while acked < 300:
            assert receive.poll(60), "the counting process stopped acknowledging"
            acked = receive.recv()
    finally:
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join(10)
    with contextlib.suppress(EOFError):  # acknowledgements sent before the kill count too
        while receive.poll(0):
            acked = receive.recv()
    assert proc.exitcode == -signal.SIGKILL
    stored = asyncio.run(_read_back(path))
    assert stored in (acked, acked + 1)  # at most the one write it had no time to acknowledge


async def _read_back(path: Path) -> int:
    async with store_from_url(_url(path)) as store:
        container = await store.create_container_if_not_exists(SPEC)
        return int((await container.get(DOC_ID, PK)).body["round"])


# --- indexes ----------------------------------------------------------------------------


def _explain(db_path: Path, plan_sql: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return [
            " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in plan_sql
        ]


async def _branch_plans(tasks: Container, db_path: Path, query: Query) -> list[str]:
    plan = plan_query(TASKS, query)
    return _explain(db_path, [(b.sql, b.params) for b in query_branches(TASKS, plan)])


QUERIES = {
    "eq prefix, order by the rest": Query(
        where=[eq("status", "queued")], order_by=["-priority", "created_at"], limit=10
    ),
    "reversed order": Query(
        where=[eq("status", "queued")], order_by=["priority", "-created_at"], limit=10
    ),
    "eq and range on a nested field": Query(
        where=[eq("status", "leased"), lt("lease.at", 900.0)], order_by=["lease.at"], limit=10
    ),
    "in one partition": Query(
        where=[eq("status", "queued")],
        order_by=["-priority", "created_at"],
        limit=10,
        partition_key="tenant1",
    ),
    "partition-led index": Query(where=[eq("tenant", "tenant2")], order_by=["created_at"]),
    "default order": Query(limit=10),
}


@pytest.mark.parametrize("shape", list(QUERIES))
async def test_indexed_queries_seek_an_index_and_never_sort(
    tasks: Container, db_path: Path, shape: str
) -> None:
    """Each query shape an index serves is an index SEARCH with no sort, on every page."""
    query = QUERIES[shape]
    first = await tasks.query(query)
    assert first.continuation is not None or query.limit is None
    pages = [query]
    if first.continuation is not None:
        pages.append(
            Query(
                where=query.where,
                order_by=query.order_by,
                limit=query.limit,
                partition_key=query.partition_key,
                continuation=first.continuation,
            )
        )
    for page in pages:
        for detail in await _branch_plans(tasks, db_path, page):
            assert "USING INDEX" in detail, detail
            assert "TEMP B-TREE" not in detail, detail
            assert "<expr>" not in detail, detail  # plain field columns, no JSON parsing
            if shape != "default order":  # an unfiltered top-k walks the (id, pk) index
                assert detail.startswith("SEARCH"), detail


async def test_a_partition_query_uses_the_partition_led_copy_of_the_index(
    tasks: Container, db_path: Path
) -> None:
    """With a partition key, the index seek starts at (pk, status), not at status alone."""
    (detail,) = await _branch_plans(tasks, db_path, QUERIES["in one partition"])
    assert "_p_" in detail, detail
    assert "pk=? AND f_status=?" in detail, detail


async def test_pages_of_an_indexed_query_concatenate_to_the_full_ordered_answer(
    tasks: Container,
) -> None:
    """Paging 7 at a time over an index returns every match once, in index order."""
    query = QUERIES["eq prefix, order by the rest"]
    everything = await tasks.query(Query(where=query.where, order_by=query.order_by))
    expected = sorted(
        (d for d in (_task(i) for i in range(300)) if d["status"] == "queued"),
        key=lambda d: (-d["priority"], d["created_at"], d["id"]),
    )
    assert [d.id for d in everything.items] == [d["id"] for d in expected]
    paged: list[str] = []
    token: str | None = None
    while True:
        page = await tasks.query(
            Query(where=query.where, order_by=query.order_by, limit=7, continuation=token)
        )
        paged += [d.id for d in page.items]
        token = page.continuation
        if token is None:
            break
    assert paged == [d["id"] for d in expected]


def _raw_body(db_path: Path, pk: str, doc_id: str) -> str:
    with sqlite3.connect(db_path) as conn:
        sql = "SELECT body FROM doc_tasks WHERE pk = ? AND id = ?"
        return str(conn.execute(sql, (pk, doc_id)).fetchone()[0])


# --- patches ----------------------------------------------------------------------------

ODD_NAMES = ['quo"te', "back\\slash", "new\nline", "café", "tab\there", "[0]", "$x", " "]


@pytest.mark.parametrize(
    "patch",
    [
        Patch(set={"status": "leased", "extra": {"nested": [1, None, "é"]}}),
        Patch(remove=("priority", "absent")),
        Patch(set={"lease": {"at": 5.5}, "big": 2**53 - 1, "f": 1e16}, remove=("created_at",)),
        Patch(set={"s": "\u2028 ok \x01 \u00e9 \U0001f600", "z": None, "b": False}),
        *(Patch(set={name: name}, remove=("status",)) for name in ODD_NAMES),
    ],
    ids=lambda p: repr(p)[:60],
)
async def test_patch_result_equals_the_reference_patch(
    tasks: Container, db_path: Path, patch: Patch
) -> None:
    """The stored JSON text is byte for byte what ``apply_patch`` makes, whichever path ran."""
    before = await tasks.get("t0005", "tenant2")
    expected = apply_patch(TASKS, before.body, patch)
    result = await tasks.update_if_match("t0005", "tenant2", before, patch)
    assert result.ok
    assert result.document is not None
    assert result.document.body == expected.body
    stored = await tasks.get("t0005", "tenant2")
    assert stored.body == expected.body
    assert stored.etag == result.document.etag != before.etag
    assert _raw_body(db_path, "tenant2", "t0005") == expected.raw  # so sizes agree exactly
    assert _columns_disagree(db_path, TASKS) == []


async def test_a_patch_value_that_is_not_utf8_is_invalid_and_writes_nothing(
    tasks: Container,
) -> None:
    """A lone surrogate in a patched string is InvalidRequestError on either patch path."""
    before = await tasks.get("t0005", "tenant2")
    for name in ("plain", 'quo"te'):
        with pytest.raises(InvalidRequestError):
            await tasks.update_if_match("t0005", "tenant2", before, Patch(set={name: "\ud800"}))
    assert await tasks.get("t0005", "tenant2") == before


@pytest.mark.parametrize("name", ["plain", 'quo"te'])
async def test_patch_size_limit_is_exact_in_utf8_bytes(store: DocumentStore, name: str) -> None:
    """A patch landing exactly on the limit is written; one byte more is refused, unwritten."""
    body = {"id": "d", "tenant": "t", "text": "é" * 40}
    patch = Patch(set={name: "ü" * 30})
    size = len(dumps({**body, **patch.set}).encode())
    exact = await store.create_container_if_not_exists(
        ContainerSpec("exact", partition_key="tenant", max_document_bytes=size)
    )
    doc = await exact.create(body)
    assert (await exact.update_if_match("d", "t", doc, patch)).ok
    short = await store.create_container_if_not_exists(
        ContainerSpec("short", partition_key="tenant", max_document_bytes=size - 1)
    )
    doc = await short.create(body)
    with pytest.raises(DocumentTooLargeError):
        await short.update_if_match("d", "t", doc, patch)
    assert await short.get("d", "t") == doc


async def test_an_oversized_patch_fails_its_batch_and_nothing_is_written(
    store: DocumentStore,
) -> None:
    """A batch whose patch would exceed the limit raises BatchError and leaves no trace."""
    small = await store.create_container_if_not_exists(
        ContainerSpec("small", partition_key="tenant", max_document_bytes=200)
    )
    doc = await small.create({"id": "d", "tenant": "t"})
    with pytest.raises(BatchError) as info:
        await small.batch(
            "t",
            [
                UpsertOp({"id": "other", "tenant": "t"}),
                PatchOp("d", Patch(set={"blob": "x" * 300})),
            ],
        )
    assert info.value.index == 1
    assert isinstance(info.value.cause, DocumentTooLargeError)
    assert await small.get("d", "t") == doc
    assert await small.count() == 1


# --- errors -----------------------------------------------------------------------------


async def test_a_path_below_a_regular_file_is_store_unavailable(tmp_path: Path) -> None:
    """A directory that cannot be created raises StoreUnavailableError, not OSError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError):
        await store_from_url(_url(blocker / "db.sqlite")).open()


async def test_a_directory_as_the_database_is_store_unavailable(tmp_path: Path) -> None:
    """A path naming a directory cannot be opened: StoreUnavailableError."""
    with pytest.raises(StoreUnavailableError):
        await store_from_url(_url(tmp_path)).open()


async def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    """Garbage where the database should be raises StoreUnavailableError, not sqlite3 errors."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, not even close" * 100)
    with pytest.raises(StoreUnavailableError):
        await store_from_url(_url(garbage)).open()


async def test_a_write_lock_held_past_the_busy_timeout_is_store_unavailable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding the write lock too long gives StoreUnavailableError."""
    monkeypatch.setattr(sqlite_provider, "BUSY_TIMEOUT_SECONDS", 0.2)
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        doc = await container.create(_task(1))
        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailableError, match="locked"):
                await container.update_if_match("t0001", "tenant1", doc, Patch(set={"n": 1}))
            with pytest.raises(StoreUnavailableError, match="locked"):
                await container.batch("tenant1", [PatchOp("t0001", Patch(set={"n": 2}))])
        finally:
            holder.close()
        assert (await container.update_if_match("t0001", "tenant1", doc, Patch(set={"n": 3}))).ok


async def test_no_write_waits_past_the_busy_timeout_behind_other_waiting_writes(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes made while a group waits for another process's lock fail within their own
    busy timeout, not after the group's and then a whole one of their own (up to 2x).

    Then a write whose lock is released within the timeout lands (the busy timeout
    lowered for the late group is raised again), as does every write after the release.
    """
    timeout, turns = 2.0, 8
    monkeypatch.setattr(sqlite_provider, "BUSY_TIMEOUT_SECONDS", timeout)
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        docs = [await container.create(_task(i)) for i in range(2 * turns + 1)]

        async def timed_failure(doc: Document) -> tuple[float, StoreUnavailableError]:
            begin = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await container.update_if_match(doc.id, doc.partition_key, doc, Patch(set={"n": 1}))
            return time.monotonic() - begin, info.value

        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            failures = []
            for turn in range(turns):  # two writes a turn, turns spread over the first's wait
                pair = docs[2 * turn : 2 * turn + 2]
                failures += [asyncio.create_task(timed_failure(doc)) for doc in pair]
                await asyncio.sleep(timeout / turns)  # the writers' pace, not a wait for an event
            waits = await asyncio.gather(*failures)
            assert max(seconds for seconds, _ in waits) < timeout + 0.5, waits
            for _, error in waits:  # the busy timeout's own error (503 above)
                assert str(error) == "sqlite: database is locked", error

            last = docs[-1]
            write = asyncio.create_task(
                container.update_if_match(last.id, last.partition_key, last, Patch(set={"n": 2}))
            )
            await asyncio.sleep(timeout / 4)  # the lock is held a while into its timeout
            assert not write.done()
            holder.execute("COMMIT")
            assert (await write).ok
        finally:
            holder.close()
        assert all(
            r.ok
            for r in await asyncio.gather(
                *(
                    container.update_if_match(d.id, d.partition_key, d, Patch(set={"n": 3}))
                    for d in docs[:-1]
                )
            )
        )


async def test_waiting_for_the_write_lock_does_not_block_the_event_loop(
    db_path: Path,
) -> None:
    """While a write waits for another connection's lock, other coroutines keep running."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        doc = await container.create(_task(1))
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(
            container.update_if_match("t0001", "tenant1", doc, Patch(set={"n": 1}))
        )
        ticks = 0
        while ticks < 20:  # the loop turns while the write is parked on the lock
            await asyncio.sleep(0.005)
            ticks += 1
            assert not write.done()
        holder.execute("COMMIT")
        holder.close()
        assert (await write).ok


# --- the event loop's own connection ---------------------------------------------------


def _inline(store: DocumentStore) -> Any:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    assert backend._inline is not None
    return backend._inline


async def test_writes_parked_on_another_connections_lock_all_land_exactly_once(
    db_path: Path,
) -> None:
    """Writes that find the lock taken go to the writer thread; the loop runs; each lands once."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        docs = [await container.create(_task(i)) for i in range(5)]
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        writes = asyncio.gather(
            container.create(_task(100)),
            *(
                container.update_if_match(d.id, d.partition_key, d, Patch(set={"n": 1}))
                for d in docs
            ),  # queued for the end of the turn, then handed over together
        )
        for _ in range(20):  # the loop turns while every write waits for the lock
            await asyncio.sleep(0.005)
            assert not writes.done()
        holder.execute("COMMIT")
        holder.close()
        created, *updated = await writes
        assert created.id == "t0100"
        assert all(r.ok for r in updated)  # run once each: a second run would conflict
        assert not _inline(store)._conn.in_transaction


async def test_the_wal_stays_bounded_while_inline_writes_never_pause(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints handed to the writer thread start the WAL over under a steady stream.

    A PASSIVE checkpoint never caught up with inline commits landing while it
    ran, so the WAL grew by every commit's pages for as long as writes kept
    coming (35 MB a thousand jobs in ``bench soak``), and checkpoints queued
    together ran in one group transaction, where SQLite refuses them.
    """
    monkeypatch.setattr(sqlite_provider, "INLINE_CHECKPOINT_COMMITS", 20)
    commits = 3000
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        doc = await container.create(_task(1))
        for n in range(commits):
            patch = Patch(set={"n": n})
            result = await container.update_if_match(doc.id, doc.partition_key, doc, patch)
            assert result.document is not None
            doc = result.document
        backend = store.backend
        assert isinstance(backend, SqliteBackend)
        frames = await backend._w.run(
            lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        )
        # Every commit appends at least one frame, so a WAL never started over holds at
        # least one per commit. How many commits pass between two checkpoints depends
        # on when the writer thread gets the GIL and the lock from this tight loop.
        assert frames < commits / 2


async def test_a_call_past_its_budget_moves_to_a_worker_and_runs_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no budget, every inline call is interrupted, rolled back and redone on a worker."""
    monkeypatch.setattr(sqlite_provider, "INLINE_BUDGET_STEPS", 0)
    monkeypatch.setattr(sqlite_provider, "INLINE_STEP_INSTRUCTIONS", 1)
    handed: list[bool] = []
    hand_over = sqlite_provider._hand_over

    def counted(exc: BaseException) -> bool:
        handed.append(hand_over(exc))
        return handed[-1]

    monkeypatch.setattr(sqlite_provider, "_hand_over", counted)
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        doc = await container.create(_task(1))  # AlreadyExistsError if it ran twice
        results = await asyncio.gather(
            container.update_if_match(doc.id, doc.partition_key, doc, Patch(set={"n": 1})),
            container.create(_task(2)),
            container.create(_task(3)),
        )
        assert results[0].ok  # CONFLICT if it ran twice
        assert (await container.get(doc.id, doc.partition_key)).body["n"] == 1
        page = await container.query(Query(where=[eq("status", "queued")], limit=10))
        assert sorted(d.id for d in page.items) == ["t0001", "t0003"]
        # Each inline attempt above but the lone create (outside the budget: its commit
        # is inside its statement): the gathered commit, a get, a query.
        assert handed.count(True) >= 3
        assert not _inline(store)._conn.in_transaction


def _statements(store: DocumentStore) -> list[str]:
    """The statements the inline connection runs from now on, as SQLite traces them."""
    seen: list[str] = []
    _inline(store)._conn.set_trace_callback(seen.append)
    return seen


async def test_a_lone_insert_commits_as_its_own_statement_and_a_turns_writes_together(
    db_path: Path,
) -> None:
    """An insert alone in its turn is one statement (SQLite's autocommit), durable at
    once for another connection; writes of one turn still share ``BEGIN IMMEDIATE``."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        seen = _statements(store)
        created = await container.create(_task(1))
        assert [s.split()[0] for s in seen] == ["INSERT"]
        other = sqlite3.connect(db_path)
        try:
            [(etag,)] = other.execute("SELECT etag FROM doc_tasks WHERE id = 't0001'").fetchall()
        finally:
            other.close()
        assert etag == created.etag
        seen.clear()
        await asyncio.gather(container.create(_task(2)), container.create(_task(3)))
        assert [s.split()[0] for s in seen] == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
        assert not _inline(store)._conn.in_transaction


async def test_a_lone_insert_refused_or_out_of_budget_leaves_nothing_open(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zero step budget does not interrupt a lone insert (its commit is inside its
    statement), and an existing id is AlreadyExistsError: neither leaves a transaction
    open, and one copy is stored."""
    monkeypatch.setattr(sqlite_provider, "INLINE_BUDGET_STEPS", 0)
    monkeypatch.setattr(sqlite_provider, "INLINE_STEP_INSTRUCTIONS", 1)
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        seen = _statements(store)
        await container.create(_task(1))
        assert [s.split()[0] for s in seen] == ["INSERT"]  # run inline, not handed over
        with pytest.raises(AlreadyExistsError):
            await container.create(_task(1))
        assert not _inline(store)._conn.in_transaction
        assert await container.count(Query()) == 1


async def test_a_lone_insert_finding_the_lock_taken_lands_once_through_the_writer(
    db_path: Path,
) -> None:
    """Another connection's write lock fails the autocommit insert before it writes;
    the writer thread waits for the lock and writes it once, the loop turning."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(container.create(_task(7)))
        for _ in range(10):
            await asyncio.sleep(0.005)
            assert not write.done()
        holder.execute("COMMIT")
        holder.close()
        assert (await write).id == "t0007"
        assert await container.count(Query()) == 1
        assert not _inline(store)._conn.in_transaction


async def test_racing_writes_of_one_loop_turn_have_one_winner(db_path: Path) -> None:
    """Twenty writes on one etag, committed together at the end of a turn: one wins."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        doc = await container.create(_task(1, n=0))
        for _ in range(5):
            results = await asyncio.gather(
                *(
                    container.update_if_match(
                        doc.id, doc.partition_key, doc, Patch(set={"n": doc.body["n"] + 1})
                    )
                    for _ in range(20)
                )
            )
            winners = [r.document for r in results if r.ok and r.document is not None]
            assert len(winners) == 1
            assert [r.outcome for r in results].count(Outcome.CONFLICT) == 19
            doc = winners[0]
        assert (await container.get(doc.id, doc.partition_key)).body["n"] == 5


async def test_a_cancelled_queued_write_is_not_run_and_leaves_no_transaction(
    db_path: Path,
) -> None:
    """A write cancelled while queued for the end of the turn never reaches the file."""
    async with store_from_url(_url(db_path)) as store:
        container = await store.create_container_if_not_exists(TASKS)
        first = asyncio.ensure_future(container.create(_task(1)))
        second = asyncio.ensure_future(container.create(_task(2)))
        await asyncio.sleep(0)  # both start and queue for the end of the turn
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0)
        with pytest.raises(DatastoreError):
            await container.get("t0002", "tenant2")
        assert not _inline(store)._conn.in_transaction


async def test_closing_commits_the_writes_queued_for_the_end_of_the_turn(db_path: Path) -> None:
    """Writes queued when the store closes are committed, then every connection closes."""
    store = await store_from_url(_url(db_path)).open()
    container = await store.create_container_if_not_exists(TASKS)
    writes = [asyncio.ensure_future(container.create(_task(i))) for i in range(3)]
    await asyncio.sleep(0)
    await store.close()
    assert [w.result().id for w in writes] == ["t0000", "t0001", "t0002"]
    async with store_from_url(_url(db_path)) as reopened:
        tasks = await reopened.create_container_if_not_exists(TASKS)
        assert (await tasks.get("t0002", "tenant2")).id == "t0002"


async def _script(db_path: Path) -> list[Any]:
    """The same calls, their outcomes without etags (random per write)."""
    seen: list[Any] = []
    async with store_from_url(_url(db_path)) as store:
        c = await store.create_container_if_not_exists(TASKS)
        docs = [await c.create(_task(i)) for i in range(20)]
        stale = docs[0]
        await c.update_if_match(stale.id, stale.partition_key, stale, Patch(set={"priority": 7}))
        outcomes = await asyncio.gather(
            *(
                c.update_if_match(d.id, d.partition_key, d, Patch(set={"status": "x"}))
                for d in docs
            ),
            c.create(_task(3)),
            c.replace(_task(4, status="r"), etag=docs[4].etag),
            c.delete("t0005", "tenant2"),
            c.upsert(_task(50)),
            c.batch("tenant0", [UpsertOp(_task(60, tenant="tenant0"))]),
            return_exceptions=True,
        )
        for o in outcomes:
            if isinstance(o, BaseException):
                seen.append(type(o).__name__)
            elif isinstance(o, UpdateResult):
                seen.append((o.outcome, o.document and o.document.body))
            elif isinstance(o, list):
                seen.append([d and d.body for d in o])
            else:
                seen.append(getattr(o, "body", o))
        page = await c.query(Query(where=[eq("status", "x")], order_by=["created_at"], limit=50))
        seen.append([d.body for d in page.items])
        seen.append(await c.count(Query(where=[eq("status", "queued")])))
    return seen


async def test_the_inline_path_and_the_worker_threads_give_identical_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One script of writes, races and reads answers the same with and without inline calls."""
    inline = await _script(tmp_path / "inline.db")
    monkeypatch.setattr(sqlite_provider, "INLINE", False)
    threads = await _script(tmp_path / "threads.db")
    assert inline == threads
    assert inline[0][0] == Outcome.CONFLICT  # the stale write lost on both


async def test_a_new_file_takes_the_page_size_and_an_existing_one_keeps_its_own(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PAGE_SIZE`` applies to a new file only; a file made with another size keeps it."""
    assert sqlite_provider.PAGE_SIZE == 2048
    async with store_from_url(_url(db_path)) as store:
        await store.create_container_if_not_exists(TASKS)
        assert await _pragma(store, "page_size") == 2048
    monkeypatch.setattr(sqlite_provider, "PAGE_SIZE", 8192)
    async with store_from_url(_url(db_path)) as store:
        assert await _pragma(store, "page_size") == 2048


async def test_a_dropped_table_is_an_unknown_container(store: DocumentStore, db_path: Path) -> None:
    """If another process drops a container's table, calls raise UnknownContainerError."""
    container = await store.create_container_if_not_exists(TASKS)
    with sqlite3.connect(db_path) as conn:
        conn.execute('DROP TABLE "doc_tasks"')
    with pytest.raises(UnknownContainerError):
        await container.get("x", "tenant0")


async def test_a_closed_store_is_unavailable(db_path: Path) -> None:
    """Calls after close raise StoreUnavailableError; closing twice is harmless."""
    store = await store_from_url(_url(db_path)).open()
    container = await store.create_container_if_not_exists(TASKS)
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailableError):
        await container.get("x", "tenant0")
    with pytest.raises(StoreUnavailableError):
        await store.ping()


def _raising(exc: BaseException) -> Any:
    def action() -> None:
        raise exc

    return action


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (_raising(sqlite3.OperationalError("database is locked")), StoreUnavailableError),
        (_raising(sqlite3.OperationalError("disk I/O error")), StoreUnavailableError),
        (_raising(sqlite3.OperationalError("no such table: doc_x")), UnknownContainerError),
        (_raising(sqlite3.DatabaseError("file is not a database")), StoreUnavailableError),
        (_raising(sqlite3.IntegrityError("UNIQUE constraint failed")), DatastoreError),
        (_raising(sqlite3.IntegrityError("fleet: document too large")), DocumentTooLargeError),
        (
            _raising(sqlite3.ProgrammingError("Cannot operate on a closed database.")),
            DatastoreError,
        ),
        (_raising(PermissionError("read-only file system")), StoreUnavailableError),
        ("\ud800".encode, InvalidRequestError),
        (lambda: loads("{not json"), DatastoreError),
    ],
)
def test_driver_errors_are_translated_at_one_boundary(
    action: Any, expected: type[DatastoreError]
) -> None:
    """Each sqlite3 (or OS, or encoding) error becomes the most specific DatastoreError."""
    with pytest.raises(expected) as info, translated():
        action()
    assert not isinstance(info.value, sqlite3.Error)
    assert info.value.__cause__ is not None


async def test_bodies_are_stored_as_compact_json_text(tasks: Container, db_path: Path) -> None:
    """The body column holds the same compact JSON the core serialises, keyed by (pk, id)."""
    raw = _raw_body(db_path, "tenant0", "t0003")
    assert raw == dumps(_task(3))
    assert json.loads(raw) == (await tasks.get("t0003", "tenant0")).body


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "writer-thread"])
async def test_a_group_commit_keeps_each_write_separate(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    """Writes queued together share one transaction, yet each succeeds or fails on its own.

    Failures inside the group (a duplicate create, a stale etag, a batch whose last
    operation fails, an oversized document) change nothing of theirs and nothing
    of the others'; every acknowledged write is stored. The same on the event
    loop's connection (writes of one loop turn) and on the writer thread.
    """
    from fleet_datastore.providers import sqlite_ops

    monkeypatch.setattr(sqlite_provider, "INLINE", inline)
    store = await store_from_url(_url(db_path)).open()
    tasks = await store.create_container_if_not_exists(TASKS)
    for i in range(300):
        await tasks.create(_task(i))
    sizes: list[int] = []
    run_group = sqlite_ops.run_group
    commit = sqlite_provider._Inline._commit

    def observed(conn: sqlite3.Connection, calls: Any) -> Any:
        sizes.append(len(calls))
        return run_group(conn, calls)

    def observed_inline(self: Any, writes: Any) -> Any:
        sizes.append(len(writes))
        return commit(self, writes)

    monkeypatch.setattr(sqlite_ops, "run_group", observed)
    monkeypatch.setattr(sqlite_provider._Inline, "_commit", observed_inline)
    sizes.clear()
    docs = [await tasks.get(f"t{i:04d}", f"tenant{i % 3}") for i in range(6)]
    stale = docs[5]
    huge = await tasks.get("t0200", "tenant2")
    big = dumps({**huge.body, "blob": "x" * (2 * 1024 * 1024)})
    await tasks.update_if_match(stale.id, stale.partition_key, stale, Patch(set={"priority": 9}))

    results = await asyncio.gather(
        *(
            tasks.update_if_match(d.id, d.partition_key, d, Patch(set={"status": "done"}))
            for d in docs[:5]
        ),
        tasks.update_if_match(stale.id, stale.partition_key, stale, Patch(set={"status": "x"})),
        tasks.create(_task(1)),  # exists: AlreadyExistsError
        tasks.create(_task(500)),
        tasks.batch(
            "tenant0",
            [
                UpsertOp(_task(600, tenant="tenant0")),
                PatchOp("t9999", Patch(set={"status": "x"})),  # missing: the batch fails
            ],
        ),
        tasks.create(_task(501, blob="x" * (2 * 1024 * 1024))),  # too large
        # Past the checks of ``prepare``: SQLite's size trigger aborts this statement
        # inside the group (a one-statement write, so it has no savepoint of its own).
        tasks._backend.upsert(
            TASKS, PreparedDocument(huge.id, huge.partition_key, {}, big, len(big))
        ),
        return_exceptions=True,
    )

    assert max(sizes, default=0) > 1, "the writes did not share a transaction"
    updates = [r for r in results[:6] if isinstance(r, UpdateResult)]
    assert [r.outcome for r in updates] == [Outcome.OK] * 5 + [Outcome.CONFLICT]
    assert isinstance(results[6], DatastoreError)
    assert not isinstance(results[7], BaseException)
    assert isinstance(results[8], BatchError)
    assert isinstance(results[9], DocumentTooLargeError)
    assert isinstance(results[10], DocumentTooLargeError)
    assert (await tasks.get(huge.id, huge.partition_key)).body == huge.body
    for d in docs[:5]:
        assert (await tasks.get(d.id, d.partition_key)).body["status"] == "done"
    assert (await tasks.get(stale.id, stale.partition_key)).body["priority"] == 9
    assert (await tasks.get(stale.id, stale.partition_key)).body["status"] != "x"
    assert (await tasks.get("t0500", "tenant2")).body["id"] == "t0500"
    for missing, pk in (("t0600", "tenant0"), ("t0501", "tenant0")):
        with pytest.raises(DatastoreError):
            await tasks.get(missing, pk)
    await store.close()


async def test_an_index_without_per_partition_has_no_partition_led_copy(
    store: DocumentStore,
) -> None:
    """``per_partition=False`` drops SQLite's pk-led copy; partition queries still answer right."""
    spec = ContainerSpec(
        name="shared",
        partition_key="tenant",
        fields={"status": "str", "created_at": "float"},
        indexes=(
            Index.of("status", "created_at", per_partition=False),
            Index.of("created_at"),
        ),
    )
    container = await store.create_container_if_not_exists(spec)
    for i in range(30):
        await container.create(_task(i, status="queued" if i % 3 else "leased"))
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    rows = await backend._w.run(
        lambda conn: conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index'").fetchall()
    )
    mine = [sql for (sql,) in rows if sql and "shared" in sql]
    led_by_pk = [sql for sql in mine if "(pk," in sql.replace('"', "")]
    assert len(led_by_pk) == 1, mine  # only created_at's copy
    page = await container.query(
        Query(where=[eq("status", "queued")], order_by=["created_at"], partition_key="tenant1")
    )
    expected = [f"t{i:04d}" for i in range(30) if i % 3 == 1]
    assert [d.id for d in page.items] == expected


# --- field columns ----------------------------------------------------------------------


def _columns_disagree(db_path: Path, spec: ContainerSpec) -> list[tuple[Any, ...]]:
    """Rows whose field columns differ from their body's value (or type) at that path."""
    bad: list[tuple[Any, ...]] = []
    with sqlite3.connect(db_path) as conn:
        for path in spec.fields:
            col = field_column(path)
            extract = f"json_extract(body, '$.{path}')"
            sql = (
                f'SELECT id, {col}, {extract} FROM "doc_{spec.name}" '
                f"WHERE {col} IS NOT {extract} OR typeof({col}) != typeof({extract})"
            )
            bad += [(path, *row) for row in conn.execute(sql)]
    return bad


async def test_every_write_keeps_the_field_columns_equal_to_the_body(
    store: DocumentStore, tasks: Container, db_path: Path
) -> None:
    """Create, replace, upsert, batch and every kind of patch leave columns == json_extract."""
    spec = ContainerSpec(
        name="typed",
        partition_key="tenant",
        fields={**TASKS.fields, "done": "bool", "lease.owner.name": "str"},
        indexes=TASKS.indexes,
    )
    typed = await store.create_container_if_not_exists(spec)
    for i in range(6):
        await typed.create(_task(i, done=bool(i % 2)))
    await typed.replace(_task(0, status="x", lease={"owner": {"name": "a"}}, done=True))
    await typed.upsert(_task(1, priority=4, lease=None))
    await typed.upsert(_task(7))
    await typed.batch(
        "tenant2",
        [
            UpsertOp(_task(8, created_at=3)),  # an int in a float field stays an int
            PatchOp("t0002", Patch(set={"lease": {"at": 1.5, "owner": {"name": "b"}}})),
        ],
    )
    patches = [
        ("t0003", "tenant0", Patch(set={"status": "leased", "done": False})),
        ("t0004", "tenant1", Patch(remove=("lease", "priority"))),
        ("t0005", "tenant2", Patch(set={"lease": {"owner": "not an object"}, "note": 1})),
        ("t0005", "tenant2", Patch(set={'quo"te': 1}, remove=("status",))),  # the Python path
        ("t0007", "tenant1", Patch(set={"lease": 5})),
    ]
    for doc_id, pk, patch in patches:
        before = await typed.get(doc_id, pk)
        assert (await typed.update_if_match(doc_id, pk, before, patch)).ok
    assert _columns_disagree(db_path, spec) == []
    assert _columns_disagree(db_path, TASKS) == []
    page = await typed.query(Query(where=[eq("done", True)], order_by=[]))
    assert sorted(d.id for d in page.items) == ["t0000", "t0005"]


def _index_writes(spec: ContainerSpec, patch: Patch) -> int:
    """How many index entries the compiled patch UPDATE inserts (EXPLAIN bytecode)."""
    with sqlite3.connect(":memory:") as conn:
        for statement in schema_sql(spec):
            conn.execute(statement)
        compiled = patch_sql(spec, "d", "p", "etag", patch, "new")
        rows = conn.execute(f"EXPLAIN {compiled.sql}", compiled.params).fetchall()
    return sum(1 for row in rows if row[1] == "IdxInsert")


def test_a_patch_rewrites_only_the_indexes_of_the_fields_it_changes() -> None:
    """An UPDATE assigns only the changed fields' columns, so SQLite skips the other indexes.

    TASKS has 5 indexes on fields (3 declared, 2 of them with a partition copy)
    plus ``(id, pk)``; a patch of an undeclared field updates none of them.
    """
    assert _index_writes(TASKS, Patch(set={"note": "x"})) == 0
    assert _index_writes(TASKS, Patch(remove=("note",))) == 0
    assert _index_writes(TASKS, Patch(set={"lease": {"at": 1.0}})) == 2  # status, lease.at
    assert _index_writes(TASKS, Patch(set={"created_at": 2.0})) == 3
    assert _index_writes(TASKS, Patch(set={"status": "x"})) == 4
    assert _index_writes(TASKS, Patch(set={"status": "x", "created_at": 1.0})) == 5


def test_field_column_names_are_distinct_whatever_the_case() -> None:
    """Paths that differ only by case, ``_`` or ``.`` get distinct (case-folded) names."""
    paths = ["a_b", "a.b", "a__b", "A_b", "a_B", "ab", "a.b_c", "a_b.c", "Ab", "aB"]
    names = [field_column(p).lower() for p in paths]
    assert len(set(names)) == len(paths)
    assert field_column("lease.expires_at") == "f_lease_0expires__at"


# --- migration ------------------------------------------------------------------------

OLD_LAYOUT = [
    # What the provider created before field columns (a fixture of history: keep literal).
    'CREATE TABLE IF NOT EXISTS "doc_tasks" (pk TEXT NOT NULL, id TEXT NOT NULL, '
    "etag TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (pk, id))",
    'CREATE INDEX IF NOT EXISTS "ix_tasks_id_a9a37e672fa1" ON "doc_tasks" (id, pk)',
    'CREATE INDEX IF NOT EXISTS "ix_tasks_f_34161b21be1d" ON "doc_tasks" '
    "(json_extract(body, '$.status') ASC, json_extract(body, '$.priority') DESC, "
    "json_extract(body, '$.created_at') ASC, id, pk)",
    'CREATE INDEX IF NOT EXISTS "ix_tasks_p_7275e080ac45" ON "doc_tasks" '
    "(pk, json_extract(body, '$.status') ASC, json_extract(body, '$.priority') DESC, "
    "json_extract(body, '$.created_at') ASC, id)",
    'CREATE INDEX IF NOT EXISTS "ix_tasks_f_c80d2b41170d" ON "doc_tasks" '
    "(json_extract(body, '$.status') ASC, json_extract(body, '$.lease.at') ASC, id, pk)",
    'CREATE INDEX IF NOT EXISTS "ix_tasks_p_29006d7ce6b6" ON "doc_tasks" '
    "(pk, json_extract(body, '$.status') ASC, json_extract(body, '$.lease.at') ASC, id)",
    'CREATE INDEX IF NOT EXISTS "ix_tasks_f_0fdfb15e9b39" ON "doc_tasks" '
    "(pk ASC, json_extract(body, '$.created_at') ASC, id)",
]


def _old_file(path: Path, count: int) -> None:
    """A file as the provider wrote it before field columns, holding ``count`` tasks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in OLD_LAYOUT:
            conn.execute(statement)
        conn.executemany(
            'INSERT INTO "doc_tasks" (pk, id, etag, body) VALUES (?, ?, ?, ?)',
            [(_task(i)["tenant"], _task(i)["id"], f"e{i}", dumps(_task(i))) for i in range(count)],
        )
    conn.close()


def _schema(path: Path) -> tuple[list[str], list[str]]:
    """The tasks table's column names and its index definitions."""
    with sqlite3.connect(path) as conn:
        cols = [str(row[1]) for row in conn.execute('PRAGMA table_info("doc_tasks")')]
        sql = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'doc_tasks'"
        indexes = sorted(str(row[0]) for row in conn.execute(sql) if row[0] is not None)
    conn.close()
    return cols, indexes


async def test_a_file_of_the_old_layout_is_migrated_on_open(db_path: Path) -> None:
    """Expression indexes give way to field columns filled from the bodies; queries agree.

    The migration is idempotent (a second open changes nothing) and two stores
    migrating the same file at once take turns (BEGIN IMMEDIATE, re-checked inside).
    """
    _old_file(db_path, 300)
    async with store_from_url(_url(db_path)) as a, store_from_url(_url(db_path)) as b:
        tasks, _ = await asyncio.gather(
            a.create_container_if_not_exists(TASKS), b.create_container_if_not_exists(TASKS)
        )
        cols, indexes = _schema(db_path)
        assert cols == ["pk", "id", "etag", "body", *(field_column(p) for p in TASKS.fields)]
        assert not [sql for sql in indexes if "json_extract" in sql]
        assert len(indexes) == 6
        assert _columns_disagree(db_path, TASKS) == []
        assert await tasks.count(Query(where=[eq("status", "queued")])) == 150
        for shape, query in QUERIES.items():
            page = await tasks.query(query)
            for detail in await _branch_plans(tasks, db_path, query):
                assert "<expr>" not in detail, (shape, detail)
                assert "TEMP B-TREE" not in detail, (shape, detail)
            if shape == "eq prefix, order by the rest":
                expected = sorted(
                    (d for d in (_task(i) for i in range(300)) if d["status"] == "queued"),
                    key=lambda d: (-d["priority"], d["created_at"], d["id"]),
                )
                assert [d.id for d in page.items] == [d["id"] for d in expected[:10]]
        old = await tasks.get("t0001", "tenant1")
        assert old.etag == "e1"
        won = await tasks.update_if_match("t0001", "tenant1", old, Patch(set={"status": "done"}))
        assert won.ok
        assert await tasks.count(Query(where=[eq("status", "done")])) == 1
    schema = _schema(db_path)
    async with store_from_url(_url(db_path)) as again:
        await again.create_container_if_not_exists(TASKS)
    assert _schema(db_path) == schema


async def test_a_field_declared_later_gets_its_column_filled(db_path: Path) -> None:
    """A spec gaining a field backfills its column; dropping it drops the column, so a
    field declared once more is filled afresh instead of keeping values gone stale."""
    owned = ContainerSpec(
        name=TASKS.name,
        partition_key=TASKS.partition_key,
        fields={**TASKS.fields, "owner": "str"},
        indexes=(*TASKS.indexes, Index.of("owner", "created_at")),
    )
    by_owner = Query(where=[eq("owner", "ann")], order_by=["created_at"])
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        for i in range(20):
            await tasks.create(_task(i, owner="ann" if i % 4 == 0 else "bob"))
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(owned)
        assert [d.id for d in (await tasks.query(by_owner)).items] == [
            f"t{i:04d}" for i in range(0, 20, 4)
        ]
        assert _columns_disagree(db_path, owned) == []
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        assert field_column("owner") not in _schema(db_path)[0]
        doc = await tasks.get("t0001", "tenant1")
        assert (
            await tasks.update_if_match("t0001", "tenant1", doc, Patch(set={"owner": "ann"}))
        ).ok
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(owned)
        ids = [d.id for d in (await tasks.query(by_owner)).items]
        assert ids == ["t0000", "t0001", "t0004", "t0008", "t0012", "t0016"]
        assert _columns_disagree(db_path, owned) == []


# --- partial indexes ----------------------------------------------------------------------

PARTIAL_TASKS = ContainerSpec(
    name=TASKS.name,
    partition_key=TASKS.partition_key,
    fields=TASKS.fields,
    indexes=(
        Index.of("status", "-priority", "created_at", where={"status": "queued"}),
        Index.of("status", "lease.at", sparse=True),
        Index.of("tenant", "created_at"),
    ),
)


async def test_a_file_with_full_indexes_is_migrated_to_partial_ones(db_path: Path) -> None:
    """Reopened with partial indexes, the full ones are dropped, the partial ones built and used.

    Two stores migrating at once take turns, a second open changes nothing, and a
    query the condition implies seeks the partial index on every page.
    """
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        for i in range(300):
            await tasks.create(_task(i))
    before = _schema(db_path)[1]
    async with store_from_url(_url(db_path)) as a, store_from_url(_url(db_path)) as b:
        tasks, _ = await asyncio.gather(
            a.create_container_if_not_exists(PARTIAL_TASKS),
            b.create_container_if_not_exists(PARTIAL_TASKS),
        )
        indexes = _schema(db_path)[1]
        partial = [sql for sql in indexes if " WHERE " in sql]
        assert len(partial) == 4, indexes  # two indexes, each with its partition copy
        assert not set(partial) & set(before)
        assert "f_status = 'queued'" in partial[0] or "f_status = 'queued'" in partial[1]
        assert any("f_lease_0at IS NOT NULL" in sql for sql in partial)
        assert len(indexes) == len(before)
        with sqlite3.connect(db_path) as conn:
            sizes = _partial_index_sizes(conn)
        conn.close()
        assert sorted(sizes.values()) == [150, 150, 300, 300], sizes  # the queued half only
        for shape in ("eq prefix, order by the rest", "in one partition"):
            for detail in await _branch_plans_of(PARTIAL_TASKS, db_path, QUERIES[shape]):
                assert "TEMP B-TREE" not in detail, detail
                assert detail.startswith("SEARCH"), detail
        query = QUERIES["eq prefix, order by the rest"]
        expected = sorted(
            (d for d in (_task(i) for i in range(300)) if d["status"] == "queued"),
            key=lambda d: (-d["priority"], d["created_at"], d["id"]),
        )
        assert [d.id for d in (await tasks.query(query)).items] == [d["id"] for d in expected[:10]]
        # A query outside the condition does not use it, and still answers.
        leased = Query(where=[eq("status", "leased")], order_by=["-priority", "created_at"])
        assert len((await tasks.query(leased)).items) == 150
        assert await tasks.count(Query(where=[eq("status", "leased")])) == 150
    schema = _schema(db_path)
    async with store_from_url(_url(db_path)) as again:
        await again.create_container_if_not_exists(PARTIAL_TASKS)
    assert _schema(db_path) == schema


def _partial_index_sizes(conn: sqlite3.Connection) -> dict[str, int]:
    """Entries in each partial index of ``doc_tasks`` (ANALYZE on a copy, which counts them)."""
    conn.commit()  # a backup waits for the source's open transaction
    with sqlite3.connect(":memory:") as copy:
        conn.backup(copy)
        copy.execute("ANALYZE")
        stats = dict(copy.execute("SELECT idx, stat FROM sqlite_stat1").fetchall())
        names = [
            str(name)
            for (name,) in copy.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
            )
        ]
    copy.close()
    return {name: int(str(stats.get(name, "0")).split()[0]) for name in names}


async def _branch_plans_of(spec: ContainerSpec, db_path: Path, query: Query) -> list[str]:
    plan = plan_query(spec, query)
    return _explain(db_path, [(b.sql, b.params) for b in query_branches(spec, plan)])


def test_a_status_change_outside_a_partial_index_condition_leaves_it_alone() -> None:
    """leased -> done moves only the full status indexes: the queued-only one is not written."""
    full = _index_writes(TASKS, Patch(set={"status": "x"}))
    assert _index_writes(PARTIAL_TASKS, Patch(set={"status": "x"})) == full
    with sqlite3.connect(":memory:") as conn:
        for statement in schema_sql(PARTIAL_TASKS):
            conn.execute(statement)
        conn.execute(
            'INSERT INTO "doc_tasks" (pk, id, etag, body, f_status, f_priority, f_created__at) '
            "VALUES ('p', 'd', 'e', '{}', 'leased', 1, 1.0)"
        )
        compiled = patch_sql(PARTIAL_TASKS, "d", "p", "e", Patch(set={"status": "done"}), "n")
        conn.execute(compiled.sql, compiled.params).fetchall()
        sizes = _partial_index_sizes(conn)
    assert list(sizes.values()) == [0, 0, 0, 0], sizes  # not queued, no lease.at: in none


def test_an_equality_on_a_condition_field_is_inline_so_the_statement_is_not_replanned() -> None:
    """``f_status = 'queued'``, not ``= ?``: a bound value there makes SQLite re-plan every run."""
    plan = plan_query(PARTIAL_TASKS, QUERIES["eq prefix, order by the rest"])
    (branch,) = query_branches(PARTIAL_TASKS, plan)
    assert "f_status = 'queued'" in branch.sql, branch.sql
    assert "queued" not in branch.params
    plan = plan_query(TASKS, QUERIES["eq prefix, order by the rest"])
    (branch,) = query_branches(TASKS, plan)
    assert "f_status = ?" in branch.sql  # no partial index names status: bound
    assert "queued" in branch.params


def _triggers(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'doc_tasks'"
        names = sorted(str(row[0]) for row in conn.execute(sql))
    conn.close()
    return names


async def test_a_file_without_the_size_trigger_gets_it_and_a_changed_limit_replaces_it(
    db_path: Path,
) -> None:
    """Patches are size-checked by a trigger: an older file gains it on open, a new limit swaps it.

    A file written before the trigger (its size check was in each UPDATE) would
    otherwise take oversized patches; a limit changed between opens must be the
    one enforced, and the old trigger must not linger to enforce the smaller one.
    """
    _old_file(db_path, 3)
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(
            dataclasses.replace(TASKS, max_document_bytes=400)
        )
        assert _triggers(db_path) == ["sz_tasks_400"]
        doc = await tasks.get("t0001", "tenant1")
        with pytest.raises(DocumentTooLargeError):
            await tasks.update_if_match("t0001", "tenant1", doc, Patch(set={"blob": "x" * 400}))
        assert await tasks.get("t0001", "tenant1") == doc
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(
            dataclasses.replace(TASKS, max_document_bytes=4000)
        )
        assert _triggers(db_path) == ["sz_tasks_4000"]
        assert (
            await tasks.update_if_match("t0001", "tenant1", doc, Patch(set={"blob": "x" * 400}))
        ).ok


@pytest.mark.parametrize("damage", ["garbage", "emptied"])
async def test_a_damaged_file_fails_every_call_and_the_ping_instead_of_hanging_a_write(
    db_path: Path, damage: str
) -> None:
    """A file overwritten under a running store (its header garbage, or cut to nothing).

    Found by an audit of a served coordinator: reads answered 503, but an inline write
    never answered (BEGIN IMMEDIATE raised a DatabaseError, not the OperationalError its
    handler expected, out of the end-of-turn callback, and no caller's future was ever
    settled), and ``/readyz`` stayed ready (``SELECT 1`` reads no page).
    """
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        await tasks.create(_task(1))
        checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)"
        backend = store.backend
        assert isinstance(backend, SqliteBackend)
        await backend._w.run(lambda conn: conn.execute(checkpoint).fetchall())
        with db_path.open("r+b") as file:
            if damage == "garbage":
                file.write(os.urandom(4 * 4096))
            else:
                file.truncate(0)
        async with asyncio.timeout(10):
            with pytest.raises(StoreUnavailableError):
                await tasks.create(_task(2))
            with pytest.raises(StoreUnavailableError):
                await tasks.upsert(_task(1))
            with pytest.raises(StoreUnavailableError):
                await store.ping()


def _move_away(path: Path, *, replace: bool) -> None:
    """Take the open file away from its path; put another (empty) one there if ``replace``."""
    path.rename(path.with_name("moved.db"))
    if replace:
        path.write_bytes(b"")


def _move_back(moved: Path, path: Path) -> None:
    path.unlink(missing_ok=True)
    moved.rename(path)


def _ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute('SELECT id FROM "doc_tasks" ORDER BY id')]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_writes_are_refused_once_the_ping_finds_the_file_gone(
    db_path: Path, how: str
) -> None:
    """Once a ping has found the file deleted or replaced, every write is 503 and none
    lands in the old inode (they were acknowledged and lost at the next restart);
    reads still answer. The file moved back, writes are taken again."""
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        await tasks.create(_task(1))
        _move_away(db_path, replace=how == "replaced")
        with pytest.raises(StoreUnavailableError, match="deleted or replaced"):
            await store.ping()
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: tasks.create(_task(2)),
            lambda: tasks.upsert(_task(3)),
            lambda: tasks.replace(_task(1)),
            lambda: tasks.delete("t0001", "tenant1"),
            lambda: tasks.batch("tenant1", [UpsertOp(_task(4))]),
        ]
        for write in writes:
            with pytest.raises(StoreUnavailableError, match="deleted or replaced"):
                await write()
        assert (await tasks.get("t0001", "tenant1")).id == "t0001"
        _move_back(db_path.with_name("moved.db"), db_path)
        await store.ping()
        await tasks.create(_task(2))
    assert _ids(db_path) == ["t0001", "t0002"]  # no refused write landed


async def test_the_store_finds_its_file_gone_without_a_ping(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody asks for readiness: the store's own timer (one stat a FILE_CHECK_SECONDS)
    finds the file deleted, and writes are refused from then on."""
    monkeypatch.setattr(sqlite_provider, "FILE_CHECK_SECONDS", 0.01)
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        _move_away(db_path, replace=False)
        async with asyncio.timeout(10):
            refused = await _first_refused_write(tasks)
        assert "deleted or replaced" in str(refused)


async def _first_refused_write(tasks: Container) -> StoreUnavailableError:
    """Write until a write is refused: each is one the store's timer has not seen yet."""
    for n in itertools.count(2):
        try:
            await tasks.create(_task(n))
        except StoreUnavailableError as exc:
            return exc
        await asyncio.sleep(0.01)  # a turn for the timer; what ends the loop is its check
    raise AssertionError("unreachable")


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection (another process, for SQLite's locks) taking the write lock."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _let_go(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK")
    conn.close()


async def test_the_ping_fails_once_another_connection_held_the_write_lock_too_long(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ping read through the lock (WAL readers never wait), so ``/readyz`` said ready
    while every write failed on it. Now a ping finding the lock taken, and taken at every
    ping for ``LOCK_HELD_SECONDS`` (a write's busy timeout), fails; a lock held briefly,
    or let go, does not."""
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        other = _hold_write_lock(db_path)
        try:
            await store.ping()  # taken just now: writes are waiting, not failing
            monkeypatch.setattr(sqlite_provider, "LOCK_HELD_SECONDS", 0.0)
            with pytest.raises(StoreUnavailableError, match="write lock"):
                await store.ping()
        finally:
            _let_go(other)
        await store.ping()
        await tasks.create(_task(1))  # the ping's own try of the lock left nothing held


async def test_the_ping_fails_after_a_write_found_the_disk_full(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failing with SQLITE_FULL (here the file may not grow, as on a full disk)
    makes the pings of the next ``FULL_SECONDS`` fail; a success costs nothing to record."""
    monkeypatch.setattr(sqlite_provider, "INLINE", False)  # every write on the writer's connection
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        await store.ping()
        backend = store.backend
        assert isinstance(backend, SqliteBackend)
        await backend._w.run(lambda conn: conn.execute("PRAGMA max_page_count = 1").fetchall())
        with pytest.raises(StoreUnavailableError, match="full"):
            await tasks.create(_task(1, blob="x" * 50_000))
        with pytest.raises(StoreUnavailableError, match="disk full"):
            await store.ping()
        monkeypatch.setattr(sqlite_provider, "FULL_SECONDS", 0.0)
        await store.ping()  # the failure is past: ready, until a write fails again


async def test_the_ping_fails_when_the_disk_has_nearly_no_space_left(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free space under ``MIN_FREE_BYTES`` on the file's disk (``statvfs``; here the
    bound raised past what the test's disk has) fails the ping before any write does."""
    async with store_from_url(_url(db_path)) as store:
        await store.ping()
        monkeypatch.setattr(sqlite_provider, "MIN_FREE_BYTES", 1 << 62)
        with pytest.raises(StoreUnavailableError, match="bytes free"):
            await store.ping()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_the_ping_fails_once_the_file_is_deleted_or_replaced_while_open(
    db_path: Path, how: str
) -> None:
    """Writes still land in a deleted file's inode, which a restart never opens again
    (an audit lost two acknowledged jobs so); ``/readyz`` said ready all along."""
    async with store_from_url(_url(db_path)) as store:
        tasks = await store.create_container_if_not_exists(TASKS)
        await tasks.create(_task(1))
        await store.ping()
        _move_away(db_path, replace=how == "replaced")
        with pytest.raises(StoreUnavailableError, match="deleted or replaced"):
            await store.ping()


def test_a_forked_child_draws_etags_of_its_own() -> None:
    """Etags are drawn ahead; a forked child must not hand out the ones its parent will."""
    from fleet_datastore.providers import sqlite_ops

    sqlite_ops._etag()  # the parent now holds etags drawn ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's own exit code is checked below
        try:
            os.write(write, "".join(sqlite_ops._etag() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert os.waitpid(child, 0)[1] == 0
    ours = "".join(sqlite_ops._etag() for _ in range(3))
    assert len(theirs) == len(ours) == 48
    assert theirs != ours
