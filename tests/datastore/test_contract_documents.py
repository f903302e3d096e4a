"""Contract: create, get, replace, upsert, delete, etags and copy-in/copy-out, on every provider."""

from __future__ import annotations

import pytest
from fleet_datastore import (
    AlreadyExistsError,
    Container,
    DatastoreError,
    Document,
    DocumentStore,
    NotFoundError,
    Patch,
    PreconditionFailedError,
    Query,
    ReadOp,
)

from .conftest import job, job_spec, snapshot

# -- create -----------------------------------------------------------------------------


async def test_create_returns_the_document_with_id_partition_key_and_etag(jobs: Container) -> None:
    """create() returns the stored body, its id, its partition key and a non-empty etag."""
    body = job("j1", "q1", priority=3, payload={"a": [1, 2, {"b": None}]}, lease={"x": "y"})
    doc = await jobs.create(body)
    assert isinstance(doc, Document)
    assert (doc.id, doc.partition_key) == ("j1", "q1")
    assert isinstance(doc.etag, str)
    assert doc.etag
    assert doc.body == body


async def test_create_then_get_round_trips_the_body(jobs: Container) -> None:
    """A created document reads back with the same body and etag."""
    body = job(
        "j1",
        "q1",
        priority=-7,
        created_at=1.5,
        score=0.25,
        flag=False,
        lease={"expires_at": 12.5, "holder": "a"},
        text="héllo ✓ \u2603 \U0001f600",
        nested={"list": [1, "two", 3.5, True, None, {"k": []}]},
    )
    created = await jobs.create(body)
    got = await jobs.get("j1", "q1")
    assert got == created
    assert got.body == body


async def test_create_existing_id_raises_already_exists_and_keeps_the_original(
    jobs: Container,
) -> None:
    """create() with an id taken in that partition raises AlreadyExistsError and changes nothing."""
    first = await jobs.create(job("j1", "q1", priority=1))
    with pytest.raises(AlreadyExistsError):
        await jobs.create(job("j1", "q1", priority=2))
    assert await jobs.get("j1", "q1") == first


async def test_same_id_in_two_partitions_is_two_documents(jobs: Container) -> None:
    """An id is unique within its partition only: the same id in two partitions is two documents."""
    a = await jobs.create(job("j1", "q1", priority=1))
    b = await jobs.create(job("j1", "q2", priority=2))
    assert (await jobs.get("j1", "q1")).body == a.body
    assert (await jobs.get("j1", "q2")).body == b.body
    assert await jobs.count() == 2


async def test_already_exists_is_a_datastore_error(jobs: Container) -> None:
    """Every error a store raises derives from DatastoreError."""
    await jobs.create(job("j1"))
    with pytest.raises(DatastoreError):
        await jobs.create(job("j1"))


# -- get --------------------------------------------------------------------------------


async def test_get_missing_raises_not_found(jobs: Container) -> None:
    """get() of an id that was never written raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await jobs.get("nope", "q1")


async def test_get_with_the_wrong_partition_key_raises_not_found(jobs: Container) -> None:
    """A document is addressed by id and partition key; the wrong partition does not find it."""
    await jobs.create(job("j1", "q1"))
    with pytest.raises(NotFoundError):
        await jobs.get("j1", "q2")


# -- replace ----------------------------------------------------------------------------


async def test_replace_without_etag_overwrites_the_whole_body(jobs: Container) -> None:
    """replace() without an etag overwrites the document; fields not in the new body are gone."""
    old = await jobs.create(job("j1", status="queued", extra="old"))
    new = await jobs.replace(job("j1", status="leased"))
    assert new.etag != old.etag
    stored = await jobs.get("j1", "q1")
    assert stored == new
    assert stored.body["status"] == "leased"
    assert "extra" not in stored.body


async def test_replace_with_current_etag_succeeds(jobs: Container) -> None:
    """replace() with the current etag writes and returns a new etag."""
    old = await jobs.create(job("j1"))
    new = await jobs.replace(job("j1", status="leased"), etag=old.etag)
    assert new.etag != old.etag
    assert await jobs.get("j1", "q1") == new


async def test_replace_with_stale_etag_raises_precondition_failed_and_changes_nothing(
    jobs: Container,
) -> None:
    """replace() with an etag that is no longer current raises and leaves the stored document."""
    old = await jobs.create(job("j1"))
    current = await jobs.replace(job("j1", status="leased"))
    with pytest.raises(PreconditionFailedError):
        await jobs.replace(job("j1", status="failed"), etag=old.etag)
    assert await jobs.get("j1", "q1") == current


async def test_replace_missing_raises_not_found_and_creates_nothing(jobs: Container) -> None:
    """replace() of a missing document raises NotFoundError, with or without an etag."""
    with pytest.raises(NotFoundError):
        await jobs.replace(job("j1"))
    other = await jobs.create(job("j2"))
    with pytest.raises((NotFoundError, PreconditionFailedError)):
        await jobs.replace(job("j1"), etag=other.etag)
    assert [d[1] for d in await snapshot(jobs)] == ["j2"]


async def test_replace_in_another_partition_raises_not_found(jobs: Container) -> None:
    """replace() addresses the partition in the body; the same id elsewhere is not touched."""
    original = await jobs.create(job("j1", "q1"))
    with pytest.raises(NotFoundError):
        await jobs.replace(job("j1", "q2"))
    assert await snapshot(jobs) == [("q1", "j1", original.etag, original.body)]


# -- upsert -----------------------------------------------------------------------------


async def test_upsert_creates_when_missing(jobs: Container) -> None:
    """upsert() of a new id creates it."""
    doc = await jobs.upsert(job("j1", priority=4))
    assert doc.etag
    assert await jobs.get("j1", "q1") == doc


async def test_upsert_overwrites_when_present(jobs: Container) -> None:
    """upsert() of an existing id overwrites its whole body and changes its etag."""
    old = await jobs.create(job("j1", priority=4, extra=True))
    new = await jobs.upsert(job("j1", priority=5))
    assert new.etag != old.etag
    stored = await jobs.get("j1", "q1")
    assert stored == new
    assert stored.body == job("j1", priority=5)


# -- delete -----------------------------------------------------------------------------


async def test_delete_existing_returns_true_and_removes_it(jobs: Container) -> None:
    """delete() of an existing document returns True and get() then raises NotFoundError."""
    await jobs.create(job("j1"))
    assert await jobs.delete("j1", "q1") is True
    with pytest.raises(NotFoundError):
        await jobs.get("j1", "q1")
    assert await jobs.count() == 0


async def test_delete_missing_without_etag_returns_false(jobs: Container) -> None:
    """delete() without an etag is idempotent: deleting a missing document returns False."""
    assert await jobs.delete("nope", "q1") is False
    await jobs.create(job("j1"))
    assert await jobs.delete("j1", "q1") is True
    assert await jobs.delete("j1", "q1") is False


async def test_delete_with_current_etag_removes_it(jobs: Container) -> None:
    """delete() with the current etag removes the document."""
    doc = await jobs.create(job("j1"))
    assert await jobs.delete("j1", "q1", etag=doc.etag) is True
    assert await jobs.count() == 0


async def test_delete_with_stale_etag_raises_precondition_failed_and_keeps_it(
    jobs: Container,
) -> None:
    """delete() with a stale etag raises PreconditionFailedError and the document stays."""
    old = await jobs.create(job("j1"))
    current = await jobs.replace(job("j1", status="leased"))
    with pytest.raises(PreconditionFailedError):
        await jobs.delete("j1", "q1", etag=old.etag)
    assert await jobs.get("j1", "q1") == current


async def test_delete_with_an_etag_of_a_missing_document_returns_false(jobs: Container) -> None:
    """A conditional delete of a document that is already gone reports False, like a plain one."""
    doc = await jobs.create(job("j1"))
    assert await jobs.delete("j1", "q1") is True
    assert await jobs.delete("j1", "q1", etag=doc.etag) is False
    assert await jobs.count() == 0


async def test_delete_only_touches_its_partition(jobs: Container) -> None:
    """delete() of an id in one partition leaves the same id in another partition."""
    await jobs.create(job("j1", "q1"))
    kept = await jobs.create(job("j1", "q2"))
    assert await jobs.delete("j1", "q1") is True
    assert await snapshot(jobs) == [("q2", "j1", kept.etag, kept.body)]


async def test_recreate_after_delete_works(jobs: Container) -> None:
    """A deleted id can be created again, with a fresh etag."""
    first = await jobs.create(job("j1", priority=1))
    await jobs.delete("j1", "q1")
    second = await jobs.create(job("j1", priority=2))
    assert second.etag != first.etag
    assert (await jobs.get("j1", "q1")).body["priority"] == 2


# -- etags ------------------------------------------------------------------------------


async def test_etag_changes_on_every_write_even_with_an_identical_body(jobs: Container) -> None:
    """Every write produces a new etag, including rewriting the same body."""
    body = job("j1")
    etags = [(await jobs.create(body)).etag]
    etags.append((await jobs.replace(body)).etag)
    etags.append((await jobs.replace(body, etag=etags[-1])).etag)
    etags.append((await jobs.upsert(body)).etag)
    for _ in range(3):
        current = await jobs.get("j1", "q1")
        result = await jobs.update_if_match("j1", "q1", current, Patch(set={"status": "queued"}))
        assert result.ok
        assert result.document is not None
        etags.append(result.document.etag)
    assert len(set(etags)) == len(etags)
    assert (await jobs.get("j1", "q1")).etag == etags[-1]


async def test_reads_do_not_change_the_etag(jobs: Container) -> None:
    """get(), query() and count() leave the etag as it was."""
    doc = await jobs.create(job("j1"))
    await jobs.get("j1", "q1")
    await jobs.query(Query())
    await jobs.count()
    assert (await jobs.get("j1", "q1")).etag == doc.etag


async def test_etags_differ_between_documents_written_alike(jobs: Container) -> None:
    """Two documents with identical bodies but different ids never share an etag."""
    a = await jobs.create(job("a"))
    b = await jobs.create(job("b"))
    assert a.etag != b.etag


async def test_etag_of_one_document_does_not_satisfy_another(jobs: Container) -> None:
    """An etag is checked against the addressed document only."""
    a = await jobs.create(job("a"))
    b = await jobs.create(job("b"))
    with pytest.raises(PreconditionFailedError):
        await jobs.replace(job("b", status="x"), etag=a.etag)
    assert await jobs.get("b", "q1") == b


# -- copies in and out ------------------------------------------------------------------


async def test_mutating_the_input_body_after_create_does_not_change_the_store(
    jobs: Container,
) -> None:
    """The store copies a body in: mutating the caller's dict afterwards changes nothing."""
    body = job("j1", payload={"items": [1, 2]}, lease={"expires_at": 1.0})
    created = await jobs.create(body)
    body["status"] = "mutated"
    body["payload"]["items"].append(3)
    body["lease"]["expires_at"] = 99.0
    stored = await jobs.get("j1", "q1")
    assert stored.body == job("j1", payload={"items": [1, 2]}, lease={"expires_at": 1.0})
    assert stored.etag == created.etag


async def test_mutating_returned_documents_does_not_change_the_store(jobs: Container) -> None:
    """Documents handed out by any method are copies: mutating them never changes stored state."""
    created = await jobs.create(job("j1", payload={"items": [1]}))
    got = await jobs.get("j1", "q1")
    page = await jobs.query(Query())
    result = await jobs.update_if_match("j1", "q1", got, Patch(set={"tag": {"deep": [1]}}))
    assert result.ok
    assert result.document is not None
    expected_body = {**job("j1", payload={"items": [1]}), "tag": {"deep": [1]}}
    for doc in (created, got, page.items[0], result.document):
        doc.body["status"] = "mutated"
        doc.body.setdefault("payload", {}).setdefault("items", []).append("x")
        doc.body.pop("priority", None)
    stored = await jobs.get("j1", "q1")
    assert stored.body == expected_body
    result.document.body.setdefault("tag", {"deep": []})["deep"].append(2)
    assert (await jobs.get("j1", "q1")).body == expected_body
    (read,) = await jobs.batch("q1", [ReadOp("j1")])
    assert read is not None
    read.body["tag"]["deep"].append(3)
    assert (await jobs.get("j1", "q1")).body == expected_body


async def test_mutating_a_patch_value_after_update_does_not_change_the_store(
    jobs: Container,
) -> None:
    """A patch value is copied in: mutating it after update_if_match changes nothing."""
    doc = await jobs.create(job("j1"))
    value = {"items": [1]}
    result = await jobs.update_if_match("j1", "q1", doc, Patch(set={"payload": value}))
    assert result.ok
    value["items"].append(2)
    assert (await jobs.get("j1", "q1")).body["payload"] == {"items": [1]}


# -- containers -------------------------------------------------------------------------


async def test_containers_are_isolated(store: DocumentStore) -> None:
    """Documents written to one container are invisible in another."""
    a = await store.create_container_if_not_exists(job_spec("alpha"))
    b = await store.create_container_if_not_exists(job_spec("beta"))
    await a.create(job("j1"))
    assert await b.count() == 0
    with pytest.raises(NotFoundError):
        await b.get("j1", "q1")
    await b.create(job("j1", priority=9))
    assert (await a.get("j1", "q1")).body["priority"] == 0


async def test_declaring_a_container_twice_returns_it_with_its_documents(
    store: DocumentStore,
) -> None:
    """create_container_if_not_exists is idempotent and get_container finds the declared one."""
    first = await store.create_container_if_not_exists(job_spec())
    doc = await first.create(job("j1"))
    again = await store.create_container_if_not_exists(job_spec())
    assert await again.get("j1", "q1") == doc
    assert (await store.get_container("jobs").get("j1", "q1")) == doc
    assert store.get_container("jobs").spec == job_spec()


async def test_ping_answers_on_an_open_store(store: DocumentStore) -> None:
    """ping() returns quietly when the store is reachable."""
    await store.ping()
