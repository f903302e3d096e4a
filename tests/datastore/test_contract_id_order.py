"""Contract: ``ContainerSpec.id_order=False``, a container that keeps no id order across partitions.

Such a container's queries name an ``order_by`` of a declared index or a partition
(inside which the primary key is the id order); every provider refuses any other
query the same way, so a caller finds out in a test, not as a scan on SQLite,
which keeps no ``(id, pk)`` index for it (one B-tree fewer on every insert).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from fleet_datastore import (
    ContainerSpec,
    DocumentStore,
    Index,
    InvalidRequestError,
    Query,
    eq,
    in_,
    store_from_url,
)
from fleet_datastore.providers.sqlite_sql import schema_sql

from .conftest import job

SPEC = ContainerSpec(
    name="unordered",
    partition_key="queue",
    fields={"status": "str", "created_at": "float"},
    indexes=(Index.of("status", "created_at", per_partition=False),),
    id_order=False,
)

REFUSED = {
    "no order": Query(),
    "no order, a page": Query(limit=10),
    "by id": Query(order_by=["id"]),
    "by id, descending": Query(order_by=["-id"]),
    "ids named": Query(where=[in_("id", ["a", "b"])]),
    "a filter": Query(where=[eq("status", "queued")], limit=5),
}


@pytest.mark.parametrize("shape", list(REFUSED))
async def test_a_query_without_order_across_partitions_is_refused(
    store: DocumentStore, shape: str
) -> None:
    """The same InvalidRequestError on every provider, naming ``id_order``."""
    c = await store.create_container_if_not_exists(SPEC)
    await c.create(job("a", "q1", created_at=1.0))
    with pytest.raises(InvalidRequestError, match="id_order"):
        await c.query(REFUSED[shape])


async def test_ordered_queries_partition_queries_and_counts_are_answered(
    store: DocumentStore,
) -> None:
    """An index's order, the id order inside one partition, and a count across them all."""
    c = await store.create_container_if_not_exists(SPEC)
    for i, (doc_id, queue) in enumerate([("d", "q1"), ("b", "q2"), ("c", "q1"), ("a", "q1")]):
        await c.create(job(doc_id, queue, status=("queued", "done")[i % 2], created_at=float(i)))
    page = await c.query(Query(where=[eq("status", "queued")], order_by=["created_at"]))
    assert [d.id for d in page.items] == ["d", "c"]
    assert [d.id for d in (await c.query(Query(partition_key="q1"))).items] == ["a", "c", "d"]
    named = Query(where=[in_("id", ["d", "a", "b"])], partition_key="q1", order_by=["-id"])
    assert [d.id for d in (await c.query(named)).items] == ["d", "a"]
    assert await c.count() == 4
    assert await c.count(Query(where=[eq("status", "done")])) == 2


async def test_an_sqlite_file_opened_without_id_order_drops_the_id_index(tmp_path: Path) -> None:
    """A table written with the ``(id, pk)`` index loses it on open; its documents stay."""
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    async with store_from_url(url) as store:
        c = await store.create_container_if_not_exists(dataclasses.replace(SPEC, id_order=True))
        for i in range(5):
            await c.create(job(f"j{i}", f"q{i % 2}", created_at=float(i)))
    async with store_from_url(url) as store:
        c = await store.create_container_if_not_exists(SPEC)
        assert await c.count() == 5
        page = await c.query(Query(where=[eq("status", "queued")], order_by=["created_at"]))
        assert [d.id for d in page.items] == [f"j{i}" for i in range(5)]
    with sqlite3.connect(tmp_path / "ids.db") as conn:
        indexes = [
            str(sql).replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS")
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        ]
    conn.close()
    assert indexes == [s for s in schema_sql(SPEC) if s.startswith("CREATE INDEX")]
    assert not [s for s in schema_sql(SPEC) if "(id, pk)" in s]
    assert [s for s in schema_sql(dataclasses.replace(SPEC, id_order=True)) if "(id, pk)" in s]
