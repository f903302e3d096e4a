"""A batch's creates as multi-row INSERTs (``sqlite_ops._creates``) inside a group commit: the
writes of one loop turn share a transaction, and each batch stays all or nothing on its own
when one of its creates, in its first INSERT or its second, meets a taken id."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fleet_datastore import (
    AlreadyExistsError,
    BatchError,
    Container,
    ContainerSpec,
    CreateOp,
    Document,
    DocumentStore,
    Index,
    store_from_url,
)
from fleet_datastore.providers.sqlite import SqliteBackend

JOBS = ContainerSpec(
    name="jobs",
    partition_key="pk",
    fields={"status": "str", "priority": "int", "created_at": "float"},
    indexes=(Index.of("status", "-priority", "created_at"),),
)
SIZE = 60
TAKEN = 36  # the 37th create of the second batch
LATE = 57  # in its second INSERT (56 rows, then 4): the first one's rows are undone too


def _job(pk: str, i: int) -> dict[str, Any]:
    return {"id": f"{pk}-{i:03d}", "pk": pk, "status": "queued", "priority": i % 3, "created_at": i}


def _inline(store: DocumentStore) -> Any:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    assert backend._inline is not None
    return backend._inline


def _rows(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT pk, id, etag, body FROM doc_jobs").fetchall()
    return {(pk, doc_id): (etag, body) for pk, doc_id, etag, body in rows}


def _batches(pks: list[str]) -> list[list[CreateOp]]:
    return [[CreateOp(_job(pk, i)) for i in range(SIZE)] for pk in pks]


async def _turn(
    store: DocumentStore, jobs: Container, batches: list[list[CreateOp]], *extra: Any
) -> list[Any]:
    """The batches (then ``extra`` awaitables) made in one turn: one group commit."""
    calls = [asyncio.ensure_future(jobs.batch(ops[0].body["pk"], ops)) for ops in batches]
    calls += [asyncio.ensure_future(call) for call in extra]
    await asyncio.sleep(0)  # every call has made its write; the turn ends after this
    assert len(_inline(store)._queued) == len(calls)  # all queued for one inline commit
    results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
    return results


@pytest.mark.parametrize("taken", [TAKEN, LATE])
async def test_a_grouped_batch_meeting_a_taken_id_writes_nothing_and_the_others_land(
    tmp_path: Path, taken: int
) -> None:
    """The second batch's 37th create of 60 meets a stored id while the other batches run
    in the same transaction: that batch fails naming it, none of its rows is written, and
    every other batch and the lone create of the turn land with their own documents."""
    path = tmp_path / "s.db"
    async with store_from_url(f"sqlite:///{path}") as store:
        jobs = await store.create_container_if_not_exists(JOBS)
        stored = await jobs.create(_job("b", taken))
        batches = _batches(["a", "b", "c", "d"])
        results = await _turn(store, jobs, batches, jobs.create(_job("e", 1)))
    failed = results[1]
    assert isinstance(failed, BatchError)
    assert failed.index == taken
    assert isinstance(failed.cause, AlreadyExistsError)
    assert repr(f"b-{taken:03d}") in str(failed.cause)
    rows = _rows(path)
    assert {doc_id for pk, doc_id in rows if pk == "b"} == {stored.id}
    assert rows["b", stored.id][0] == stored.etag
    for ops, docs in zip(batches, results[:-1], strict=True):
        if ops is batches[1]:
            continue
        assert [d.id for d in docs] == [op.body["id"] for op in ops]
        for op, doc in zip(ops, docs, strict=True):
            assert rows[doc.partition_key, doc.id][0] == doc.etag
            assert doc.body == op.body
    lone = results[-1]
    assert isinstance(lone, Document)
    assert rows["e", lone.id][0] == lone.etag
    etags = [etag for etag, _ in rows.values()]
    assert len(set(etags)) == len(etags)


@pytest.mark.parametrize("taken", [TAKEN, LATE])
async def test_a_grouped_batch_repeating_an_id_of_its_own_names_the_repeat(
    tmp_path: Path, taken: int
) -> None:
    """A create repeating an earlier create's id of the same batch is the one named."""
    path = tmp_path / "s.db"
    async with store_from_url(f"sqlite:///{path}") as store:
        jobs = await store.create_container_if_not_exists(JOBS)
        batches = _batches(["a", "b"])
        batches[1][taken] = CreateOp(_job("b", 3))
        results = await _turn(store, jobs, batches)
    assert isinstance(results[1], BatchError)
    assert results[1].index == taken
    assert not [key for key in _rows(path) if key[0] == "b"]
    assert len(results[0]) == SIZE
