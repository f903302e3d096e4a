"""Contract: partial indexes (``Index.where``, ``Index.sparse``) change costs, never answers.

Memory and SQLite keep only the matching documents in a partial index; Cosmos DB
ignores the condition. Every provider must return the same documents as a full
index would, whichever writes moved a document into or out of the index.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from fleet_datastore import (
    Container,
    ContainerSpec,
    CreateOp,
    DeleteOp,
    DocumentStore,
    Index,
    InvalidRequestError,
    Not,
    Patch,
    PatchOp,
    Query,
    UpsertOp,
    eq,
    le,
    store_from_url,
)
from fleet_datastore.continuation import encode, position
from fleet_datastore.providers.memory import MemoryBackend
from fleet_datastore.providers.sqlite_sql import query_branches, schema_sql
from fleet_datastore.query import plan_query, plan_shape

from .test_contract_query import all_pages

SPEC = ContainerSpec(
    name="partial",
    partition_key="queue",
    fields={
        "status": "str",
        "priority": "int",
        "created_at": "float",
        "due": "float",
        "flag": "bool",
    },
    indexes=(
        Index.of("status", "-priority", "created_at", where={"status": "queued"}),
        Index.of("status", "due", sparse=True),
        Index.of("flag", "created_at", where={"flag": True}),
        Index.of("priority", "created_at", where={"status": ("queued", "done")}),
        Index.of("status", "created_at"),
    ),
)


def _doc(i: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"d{i:02d}",
        "queue": f"q{i % 3}",
        "status": status,
        "priority": i % 4,
        "created_at": float(i),
        **extra,
    }


@pytest.fixture
async def partial(store: DocumentStore) -> Container:
    """Docs in every state under partial indexes, moved in and out by every kind of write."""
    return await _filled(store)


async def _filled(store: DocumentStore) -> Container:
    c = await store.create_container_if_not_exists(SPEC)
    for i in range(12):
        status = ("queued", "leased", "done")[i % 3]
        extra: dict[str, Any] = {"due": 100.0 - i} if status == "leased" else {}
        await c.create(_doc(i, status, flag=i % 2 == 0, **extra))
    # Into and out of the partial indexes through each kind of write.
    d = await c.get("d00", "q0")  # queued -> leased (leaves the claim index, enters the sparse one)
    assert (await c.update_if_match(d.id, "q0", d, Patch(set={"status": "leased", "due": 1.0}))).ok
    d = await c.get("d01", "q1")  # leased -> done (leaves the sparse index)
    assert (
        await c.update_if_match(d.id, "q1", d, Patch(set={"status": "done"}, remove=("due",)))
    ).ok
    await c.replace(_doc(2, "queued", flag=False))  # done -> queued, leaves the flag index
    await c.upsert(_doc(5, "queued", flag=True))  # done -> queued, joins the flag index
    await c.upsert(_doc(20, "queued", flag=True))  # a new one
    await c.delete("d03", "q0")  # a queued one gone
    await c.batch(
        "q1",
        [
            CreateOp(_doc(13, "queued", flag=True)),
            PatchOp("d04", Patch(set={"priority": 9})),  # within the leased/sparse index
            PatchOp("d07", Patch(set={"status": "leased", "due": 50.0, "flag": False})),
            DeleteOp("d10"),
        ],
    )
    await c.batch("q2", [UpsertOp(_doc(8, "queued", flag=True, due=3.0))])  # due, not leased
    return c


async def _everything(c: Container) -> list[dict[str, Any]]:
    return [d.body for p in await all_pages(c, Query(limit=100)) for d in p.items]


async def _ids(c: Container, query: Query) -> list[str]:
    return [d.id for p in await all_pages(c, query) for d in p.items]


async def test_a_query_the_condition_implies_returns_exactly_the_matches(
    partial: Container,
) -> None:
    """Queued jobs by priority, paged 2 at a time through the partial index, are all there."""
    docs = await _everything(partial)
    want = sorted(
        (d for d in docs if d["status"] == "queued"),
        key=lambda d: (-d["priority"], d["created_at"]),
    )
    query = Query(where=[eq("status", "queued")], order_by=["-priority", "created_at"], limit=2)
    assert await _ids(partial, query) == [d["id"] for d in want]
    flagged = sorted((d for d in docs if d.get("flag") is True), key=lambda d: d["created_at"])
    query = Query(where=[eq("flag", True)], order_by=["created_at"], limit=3)
    assert await _ids(partial, query) == [d["id"] for d in flagged]


async def test_a_query_outside_the_condition_still_returns_every_match(
    partial: Container,
) -> None:
    """Leased jobs in claim order are left out of the partial index but not of the answer."""
    docs = await _everything(partial)
    for status in ("leased", "done"):
        want = sorted(
            (d for d in docs if d["status"] == status),
            key=lambda d: (-d["priority"], d["created_at"]),
        )
        query = Query(where=[eq("status", status)], order_by=["-priority", "created_at"], limit=2)
        assert await _ids(partial, query) == [d["id"] for d in want]
    unflagged = sorted((d for d in docs if d.get("flag") is False), key=lambda d: d["created_at"])
    query = Query(where=[eq("flag", False)], order_by=["created_at"])
    assert await _ids(partial, query) == [d["id"] for d in unflagged]


async def test_a_sparse_index_answers_its_queries_and_counts_stay_whole(
    partial: Container,
) -> None:
    """Leased jobs due by 60 come in due order; counts include what a sparse index leaves out."""
    docs = await _everything(partial)
    due = sorted(
        (d for d in docs if d["status"] == "leased" and d.get("due", 1e9) <= 60.0),
        key=lambda d: d["due"],
    )
    query = Query(where=[eq("status", "leased"), le("due", 60.0)], order_by=["due"], limit=2)
    assert await _ids(partial, query) == [d["id"] for d in due]
    for status in ("queued", "leased", "done"):
        expected = sum(1 for d in docs if d["status"] == status)
        assert await partial.count(Query(where=[eq("status", status)])) == expected
    assert await partial.count(Query(where=[eq("flag", True)])) == sum(
        1 for d in docs if d.get("flag") is True
    )


async def test_a_condition_of_several_values_serves_each_and_leaves_the_rest_out(
    partial: Container,
) -> None:
    """``where={"status": ("queued", "done")}``: either status by priority; leased ones still found.

    Counts on two fields no index leads with both (memory walks the fewest entries
    an index narrows them to) agree with the documents.
    """
    docs = await _everything(partial)
    for status in ("queued", "done", "leased"):
        for priority in range(4):
            want = sorted(
                (d for d in docs if d["status"] == status and d["priority"] == priority),
                key=lambda d: d["created_at"],
            )
            where = [eq("status", status), eq("priority", priority)]
            query = Query(where=where, order_by=["created_at"], limit=2)
            assert await _ids(partial, query) == [d["id"] for d in want]
            assert await partial.count(Query(where=where)) == len(want)
            with_queue = [*where, eq("queue", "q1")]
            expected = sum(1 for d in want if d["queue"] == "q1")
            assert await partial.count(Query(where=with_queue)) == expected


def test_sqlite_seeks_a_condition_of_several_values_for_each_of_them() -> None:
    """SQLite judges ``status = 'done'`` to imply ``(status = 'done' OR status = 'queued')``."""
    spec = ContainerSpec(
        name="several",
        fields={"status": "str", "priority": "int", "created_at": "float"},
        indexes=(Index.of("priority", "created_at", where={"status": ("queued", "done")}),),
    )
    conn = sqlite3.connect(":memory:")
    for statement in schema_sql(spec):
        conn.execute(statement)
    # The index and its per-partition copy.
    several = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE '% OR %'")]
    assert len(several) == 2
    for status, wanted in (("queued", True), ("done", True), ("leased", False)):
        query = Query(
            where=[eq("status", status), eq("priority", 1)], order_by=["created_at"], limit=5
        )
        for branch in query_branches(spec, plan_query(spec, query)):
            rows = conn.execute(f"EXPLAIN QUERY PLAN {branch.sql}", branch.params).fetchall()
            text = " | ".join(str(row[3]) for row in rows)
            assert any(f"INDEX {name} " in text for name in several) is wanted, (status, text)
            assert "TEMP B-TREE" not in text or not wanted, text
    conn.close()


def test_a_condition_on_an_undeclared_field_or_of_the_wrong_type_is_refused() -> None:
    """``where`` names declared fields with values of their type, or the spec is invalid."""
    with pytest.raises(InvalidRequestError):
        ContainerSpec(name="x", fields={"a": "str"}, indexes=(Index.of("a", where={"b": "v"}),))
    with pytest.raises(InvalidRequestError):
        ContainerSpec(name="x", fields={"a": "str"}, indexes=(Index.of("a", where={"a": 1}),))
    with pytest.raises(InvalidRequestError):
        ContainerSpec(name="x", fields={"a": "int"}, indexes=(Index.of("a", where={"a": True}),))
    with pytest.raises(InvalidRequestError):
        ContainerSpec(name="x", fields={"a": "str"}, indexes=(Index.of("a", where={"a": ()}),))
    with pytest.raises(InvalidRequestError):
        ContainerSpec(
            name="x", fields={"a": "str"}, indexes=(Index.of("a", where={"a": ("v", 1)}),)
        )
    one = Index.of("a", where={"a": ("v",)})
    assert one == Index.of("a", where={"a": "v"})  # one value is that value
    assert Index.of("a", where={"a": ("w", "v")}) == Index.of("a", where={"a": ["v", "w", "v"]})


async def test_any_value_of_a_condition_field_is_matched_exactly(partial: Container) -> None:
    """Equalities on a field a condition names (SQLite writes them inline) take any string."""
    odd = ["it's", "'; DROP TABLE x; --", "ü\\n", ""]
    for i, status in enumerate(odd):
        await partial.create(_doc(30 + i, status))
    for i, status in enumerate(odd):
        query = Query(where=[eq("status", status)], order_by=["-priority", "created_at"])
        assert await _ids(partial, query) == [f"d{30 + i:02d}"]
        assert await partial.count(Query(where=[eq("status", status)])) == 1


async def test_the_memory_provider_keeps_only_matching_entries_in_a_partial_index() -> None:
    """Memory's SortedLists hold queued docs (``where``), docs with ``due`` (sparse), and so on."""
    async with store_from_url("memory://") as store:
        c = await _filled(store)
        docs = await _everything(c)
        backend = c._backend
        assert isinstance(backend, MemoryBackend)
        sizes = [len(entries) for _, entries in backend._tables[SPEC.name].indexes]
    assert sizes == [
        sum(1 for d in docs if d["status"] == "queued"),
        sum(1 for d in docs if "due" in d),
        sum(1 for d in docs if d.get("flag") is True),
        sum(1 for d in docs if d["status"] in ("queued", "done")),
        len(docs),
    ]


OWNED = ContainerSpec(
    name="owned",
    partition_key="queue",
    fields={"owner": "str", "status": "str", "created_at": "float"},
    indexes=(
        # The documents with an owner: "" (none) is never asked for by this index.
        Index.of("owner", "created_at", per_partition=False, where={"owner": Not("")}),
        Index.of("status", "owner", "created_at"),
    ),
)


async def _owned(store: DocumentStore) -> Container:
    """Owned and ownerless docs, moved into and out of the ``Not("")`` index by every write."""
    c = await store.create_container_if_not_exists(OWNED)
    for i in range(12):
        owner = ("", "a", "b")[i % 3]
        await c.create({**_doc(i, "queued"), "owner": owner})
    await c.create(_doc(12, "queued"))  # no owner at all: out of the index too
    d = await c.get("d00", "q0")  # "" -> "a": joins
    assert (await c.update_if_match(d.id, "q0", d, Patch(set={"owner": "a"}))).ok
    d = await c.get("d01", "q1")  # "a" -> "": leaves
    assert (await c.update_if_match(d.id, "q1", d, Patch(set={"owner": ""}))).ok
    await c.replace({**_doc(2, "queued"), "owner": "a"})  # "b" -> "a": moves within
    await c.upsert({**_doc(4, "queued"), "owner": ""})  # "a" -> "": leaves
    await c.batch("q2", [PatchOp("d05", Patch(remove=("owner",))), DeleteOp("d08")])
    return c


async def test_a_not_condition_serves_every_other_value_and_leaves_none_out(
    store: DocumentStore,
) -> None:
    """``where={"owner": Not("")}``: each owner's docs, paged; the ownerless ones still found."""
    c = await _owned(store)
    docs = [d.body for p in await all_pages(c, Query(limit=100)) for d in p.items]
    for owner in ("a", "b", "", "nobody"):
        want = sorted((d for d in docs if d.get("owner") == owner), key=lambda d: d["created_at"])
        query = Query(where=[eq("owner", owner)], order_by=["created_at"], limit=2)
        assert await _ids(c, query) == [d["id"] for d in want], owner
        assert await c.count(Query(where=[eq("owner", owner)])) == len(want)
        with_status = [eq("owner", owner), eq("status", "queued")]
        query = Query(where=with_status, order_by=["created_at"], limit=2)
        assert await _ids(c, query) == [d["id"] for d in want], owner


async def test_the_memory_provider_keeps_no_entry_a_not_condition_leaves_out() -> None:
    """Memory's ``Not("")`` index holds only documents with an owner other than ``""``."""
    async with store_from_url("memory://") as store:
        c = await _owned(store)
        docs = [d.body for d in (await c.query(Query(limit=100))).items]
        backend = c._backend
        assert isinstance(backend, MemoryBackend)
        sizes = [len(entries) for _, entries in backend._tables[OWNED.name].indexes]
    assert sizes == [sum(1 for d in docs if d.get("owner") not in (None, "")), len(docs)]


def test_sqlite_seeks_a_not_condition_for_any_other_value_and_never_for_that_one() -> None:
    """``Not("")`` is ``owner <> ''``: a query writes that term beside ``owner = ?`` to seek it."""
    conn = sqlite3.connect(":memory:")
    for statement in schema_sql(OWNED):
        conn.execute(statement)
    (name,) = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE '%<>%'")]
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
    assert sql.endswith("WHERE f_owner <> ''"), sql
    for owner, wanted in (("a", True), ("it's", True), ("", False)):
        query = Query(where=[eq("owner", owner)], order_by=["created_at"], limit=5)
        plan = plan_query(OWNED, query)
        page = encode(
            plan_shape(plan), position(plan.sort, {"created_at": 1.0, "id": "d", "queue": "q"})
        )
        for q in (query, Query(where=query.where, order_by=query.order_by, continuation=page)):
            for branch in query_branches(OWNED, plan_query(OWNED, q)):
                rows = conn.execute(f"EXPLAIN QUERY PLAN {branch.sql}", branch.params).fetchall()
                text = " | ".join(str(row[3]) for row in rows)
                assert (f"INDEX {name} " in text) is wanted, (owner, text)
                assert "TEMP B-TREE" not in text or not wanted, text
    conn.close()


def test_a_not_condition_of_the_wrong_type_is_refused() -> None:
    """``Not(v)`` names a value of the field's declared type, as any condition does."""
    with pytest.raises(InvalidRequestError):
        ContainerSpec(name="x", fields={"a": "str"}, indexes=(Index.of("a", where={"a": Not(1)}),))
