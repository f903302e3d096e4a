"""Contract: ``batch_etags`` is ``batch`` answering etags only, on every provider.

Its creates skip reading their JSON back (``PreparedDocument.owned``): what is
stored must still be the body as it was when the call was made, whatever the
caller does with its own objects while the call runs or afterwards.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_datastore import (
    AlreadyExistsError,
    BatchError,
    BatchOp,
    BatchTooLargeError,
    Container,
    ContainerSpec,
    CreateOp,
    DeleteOp,
    DocumentStore,
    Index,
    InvalidRequestError,
    Patch,
    PatchOp,
    Query,
    ReadOp,
    ReplaceOp,
    UpsertOp,
    eq,
)
from fleet_datastore.documents import prepare

from .conftest import job, job_spec, snapshot

FLAT = ContainerSpec(
    name="flat",
    partition_key="pk",
    fields={"status": "str", "rank": "int", "at": "float"},
    indexes=(Index.of("status", "at"),),
)
"""Declared fields all top-level: the spec whose creates skip reading their JSON back."""


def _doc(doc_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": doc_id, "pk": "p", "status": "queued", "rank": 1, "at": 1.5, **extra}


@pytest.fixture
async def flat(store: DocumentStore) -> Container:
    return await store.create_container_if_not_exists(FLAT)


async def test_batch_etags_answers_each_operations_etag_and_writes_what_batch_writes(
    flat: Container,
) -> None:
    await flat.create(_doc("old"))
    await flat.create(_doc("gone"))
    ops: list[BatchOp] = [
        CreateOp(_doc("a1", payload={"x": [1, 2]})),
        UpsertOp(_doc("u1")),
        ReplaceOp(_doc("old", status="done")),
        PatchOp("a1", Patch(set={"rank": 7})),
        DeleteOp("gone"),
        ReadOp("u1"),
    ]
    etags = await flat.batch_etags("p", ops)
    assert len(etags) == len(ops)
    assert etags[4] is None
    for doc_id, etag in (("u1", etags[1]), ("old", etags[2]), ("a1", etags[3])):
        assert (await flat.get(doc_id, "p")).etag == etag
    assert etags[5] == etags[1]
    assert (await flat.get("a1", "p")).body == _doc("a1", payload={"x": [1, 2]}, rank=7)
    assert (await flat.get("old", "p")).body == _doc("old", status="done")
    assert [d.id for d in (await flat.query(Query(where=[eq("status", "done")]))).items] == ["old"]


async def test_batch_etags_stores_the_bodies_as_they_were_when_called(flat: Container) -> None:
    """The caller changing its bodies, top-level or nested, while the call runs (SQLite
    and Cosmos wait in between) or after it returned, changes nothing stored."""
    bodies = [_doc(f"d{i}", payload={"n": i, "tags": ["t"]}) for i in range(5)]
    task = asyncio.create_task(flat.batch_etags("p", [CreateOp(b) for b in bodies]))
    # One loop turn (no wait: the task's first step runs before this resumes): the
    # call has prepared its bodies and, on SQLite and Cosmos, not yet written them.
    await asyncio.sleep(0)
    for body in bodies:
        body["status"] = "changed"
        body["rank"] = 99
        body["payload"]["n"] = -1
        body["payload"]["tags"].append("late")
    etags = await task
    for i, etag in enumerate(etags):
        doc = await flat.get(f"d{i}", "p")
        assert doc.etag == etag
        assert doc.body == _doc(f"d{i}", payload={"n": i, "tags": ["t"]})
    page = await flat.query(Query(where=[eq("status", "queued")], order_by=["at"]))
    assert sorted(d.id for d in page.items) == [f"d{i}" for i in range(5)]
    assert (await flat.query(Query(where=[eq("status", "changed")], order_by=["at"]))).items == []
    # A patch builds on the stored body, not on the caller's objects.
    await flat.batch_etags("p", [PatchOp("d0", Patch(set={"rank": 2}))])
    assert (await flat.get("d0", "p")).body["payload"] == {"n": 0, "tags": ["t"]}


async def test_batch_etags_refuses_and_fails_as_batch_does_writing_nothing(
    flat: Container,
) -> None:
    await flat.create(_doc("c3"))
    before = await snapshot(flat)
    with pytest.raises(BatchError) as caught:
        await flat.batch_etags("p", [CreateOp(_doc(f"c{i}")) for i in range(6)])
    assert caught.value.index == 3
    assert isinstance(caught.value.cause, AlreadyExistsError)
    big = "x" * (1024 * 1024)
    with pytest.raises(BatchTooLargeError):
        await flat.batch_etags("p", [CreateOp(_doc(f"b{i}", big=big)) for i in range(2)])
    for bad in (_doc("n1", rank="one"), _doc("n2", _x=1), _doc("a/b"), _doc("n3", f=float("nan"))):
        with pytest.raises(InvalidRequestError):
            await flat.batch_etags("p", [CreateOp(_doc("ok")), CreateOp(bad)])
    with pytest.raises(InvalidRequestError):
        await flat.batch_etags("other", [CreateOp(_doc("ok"))])
    assert await snapshot(flat) == before


async def test_batch_etags_on_a_spec_with_nested_declared_fields(jobs: Container) -> None:
    body = job("n1", lease={"expires_at": 5.0})
    [etag] = await jobs.batch_etags("q1", [CreateOp(body)])
    body["lease"]["expires_at"] = 9.0
    doc = await jobs.get("n1", "q1")
    assert (doc.etag, doc.body) == (etag, job("n1", lease={"expires_at": 5.0}))
    page = await jobs.query(Query(where=[eq("status", "queued")], order_by=["lease.expires_at"]))
    assert [d.id for d in page.items] == ["n1"]


def test_a_body_prepared_unowned_is_a_snapshot_unless_nested_fields_are_declared() -> None:
    body = _doc("s1", payload={"k": 1})
    prepared = prepare(FLAT, body, owned=False)
    assert not prepared.owned
    assert prepared.body == body
    assert prepared.body is not body
    body["status"] = "changed"
    assert prepared.body["status"] == "queued"
    own = prepared.own_body()
    assert own == _doc("s1", payload={"k": 1})
    assert own["payload"] is not body["payload"]
    nested = prepare(job_spec(), job("s2", lease={"expires_at": 1.0}), owned=False)
    assert nested.owned
    assert nested.own_body() is nested.body
