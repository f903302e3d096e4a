"""Contract: update_if_match returns ok / conflict / not_found and patches only what it names."""

from __future__ import annotations

import pytest
from fleet_datastore import (
    Container,
    Document,
    InvalidRequestError,
    Outcome,
    Patch,
    UpdateResult,
)

from .conftest import job, snapshot


async def test_update_with_current_etag_returns_ok_with_the_new_document(jobs: Container) -> None:
    """A matching etag writes the patch and returns ok with the stored document and a new etag."""
    doc = await jobs.create(job("j1", status="queued"))
    result = await jobs.update_if_match("j1", "q1", doc, Patch(set={"status": "leased"}))
    assert isinstance(result, UpdateResult)
    assert result.ok
    assert result.outcome is Outcome.OK
    assert result.document is not None
    assert result.document.etag != doc.etag
    assert result.document.body == {**doc.body, "status": "leased"}
    assert (result.document.id, result.document.partition_key) == ("j1", "q1")
    assert await jobs.get("j1", "q1") == result.document


async def test_update_with_stale_etag_is_a_conflict_and_changes_nothing(jobs: Container) -> None:
    """A stale etag returns conflict, raises nothing, and leaves the stored document as it was."""
    old = await jobs.create(job("j1", status="queued"))
    current = await jobs.replace(job("j1", status="leased"))
    result = await jobs.update_if_match("j1", "q1", old, Patch(set={"status": "failed"}))
    assert not result.ok
    assert result.outcome is Outcome.CONFLICT
    assert result.document is None
    assert await jobs.get("j1", "q1") == current


async def test_update_of_missing_document_is_not_found_and_creates_nothing(
    jobs: Container,
) -> None:
    """Updating a document that does not exist returns not_found and writes nothing."""
    ghost = await jobs.create(job("j1"))
    await jobs.delete("j1", "q1")
    result = await jobs.update_if_match("j1", "q1", ghost, Patch(set={"status": "leased"}))
    assert result.outcome is Outcome.NOT_FOUND
    assert not result.ok
    assert result.document is None
    assert await snapshot(jobs) == []


async def test_update_in_the_wrong_partition_is_not_found(jobs: Container) -> None:
    """update_if_match addresses (id, partition key); the same id elsewhere is not touched."""
    doc = await jobs.create(job("j1", "q1"))
    result = await jobs.update_if_match("j1", "q2", doc, Patch(set={"status": "x"}))
    assert result.outcome is Outcome.NOT_FOUND
    assert await jobs.get("j1", "q1") == doc


async def test_update_with_the_etag_of_another_document_is_a_conflict(jobs: Container) -> None:
    """The expected etag is compared with the addressed document's own etag only."""
    other = await jobs.create(job("other"))
    target = await jobs.create(job("target"))
    result = await jobs.update_if_match("target", "q1", other, Patch(set={"status": "x"}))
    assert result.outcome is Outcome.CONFLICT
    assert await jobs.get("target", "q1") == target


async def test_second_update_with_the_same_etag_is_a_conflict(jobs: Container) -> None:
    """An etag is good for one write: reusing it after a successful update is a conflict."""
    doc = await jobs.create(job("j1"))
    first = await jobs.update_if_match("j1", "q1", doc, Patch(set={"status": "a"}))
    second = await jobs.update_if_match("j1", "q1", doc, Patch(set={"status": "b"}))
    assert first.ok
    assert second.outcome is Outcome.CONFLICT
    assert (await jobs.get("j1", "q1")).body["status"] == "a"


async def test_chained_updates_with_each_returned_etag_all_succeed(jobs: Container) -> None:
    """Each ok result's document carries the etag for the next conditional write."""
    doc: Document = await jobs.create(job("j1", priority=0))
    etags = {doc.etag}
    for i in range(1, 6):
        result = await jobs.update_if_match("j1", "q1", doc, Patch(set={"priority": i}))
        assert result.ok
        assert result.document is not None
        doc = result.document
        etags.add(doc.etag)
    assert len(etags) == 6
    assert (await jobs.get("j1", "q1")).body["priority"] == 5


async def test_update_after_replace_or_upsert_needs_the_new_etag(jobs: Container) -> None:
    """replace() and upsert() invalidate older etags for update_if_match."""
    old = await jobs.create(job("j1"))
    replaced = await jobs.replace(job("j1", status="r"))
    assert (await jobs.update_if_match("j1", "q1", old, Patch(set={"status": "x"}))).outcome is (
        Outcome.CONFLICT
    )
    upserted = await jobs.upsert(job("j1", status="u"))
    stale = await jobs.update_if_match("j1", "q1", replaced, Patch(set={"status": "x"}))
    assert stale.outcome is Outcome.CONFLICT
    fresh = await jobs.update_if_match("j1", "q1", upserted, Patch(set={"status": "ok"}))
    assert fresh.ok


async def test_patch_sets_and_removes_top_level_fields_and_changes_nothing_else(
    jobs: Container,
) -> None:
    """A patch sets and removes exactly the fields it names; every other field keeps its value."""
    body = job(
        "j1",
        status="queued",
        priority=3,
        created_at=5.5,
        score=1.25,
        flag=True,
        lease={"expires_at": 10.0, "holder": "a"},
        payload={"deep": {"list": [1, 2, 3]}},
        note="keep me",
        drop_me="x",
        drop_too=[1],
    )
    doc = await jobs.create(body)
    patch = Patch(
        set={
            "status": "leased",
            "lease": {"expires_at": 20.0, "holder": "b", "epoch": 1},
            "new_field": {"n": [None, False]},
            "score": 7,
        },
        remove=("drop_me", "drop_too"),
    )
    result = await jobs.update_if_match("j1", "q1", doc, patch)
    assert result.ok
    assert result.document is not None
    expected = {key: value for key, value in body.items() if key not in ("drop_me", "drop_too")}
    expected.update(
        status="leased",
        lease={"expires_at": 20.0, "holder": "b", "epoch": 1},
        new_field={"n": [None, False]},
        score=7,
    )
    assert result.document.body == expected
    assert (await jobs.get("j1", "q1")).body == expected


async def test_patch_replaces_a_nested_object_whole(jobs: Container) -> None:
    """Setting a top-level object replaces it whole rather than merging into it."""
    doc = await jobs.create(job("j1", lease={"expires_at": 1.0, "holder": "a"}))
    result = await jobs.update_if_match("j1", "q1", doc, Patch(set={"lease": {"holder": "b"}}))
    assert result.ok
    assert (await jobs.get("j1", "q1")).body["lease"] == {"holder": "b"}


async def test_patch_removing_an_absent_field_is_fine(jobs: Container) -> None:
    """Removing a field the document does not have succeeds and changes only the etag."""
    doc = await jobs.create(job("j1", note="n"))
    result = await jobs.update_if_match("j1", "q1", doc, Patch(remove=("not_there",)))
    assert result.ok
    assert result.document is not None
    assert result.document.body == doc.body
    assert result.document.etag != doc.etag
    assert await jobs.get("j1", "q1") == result.document


async def test_patch_removing_a_declared_field_takes_it_out_of_queries(jobs: Container) -> None:
    """A removed declared field no longer matches filters on it."""
    from fleet_datastore import Query, eq

    doc = await jobs.create(job("j1", score=1.0))
    result = await jobs.update_if_match("j1", "q1", doc, Patch(remove=("score",)))
    assert result.ok
    assert "score" not in (await jobs.get("j1", "q1")).body
    assert await jobs.count(Query(where=[eq("score", 1.0)])) == 0


async def test_patch_with_many_fields_is_applied_whole(jobs: Container) -> None:
    """A patch with more fields than one provider round trip may carry is still all or nothing."""
    doc = await jobs.create({**job("j1"), **{f"r{i}": i for i in range(8)}})
    patch = Patch(
        set={f"s{i}": i for i in range(12)} | {"status": "leased"},
        remove=tuple(f"r{i}" for i in range(8)),
    )
    result = await jobs.update_if_match("j1", "q1", doc, patch)
    assert result.ok
    expected = {**job("j1", status="leased"), **{f"s{i}": i for i in range(12)}}
    assert (await jobs.get("j1", "q1")).body == expected


async def test_many_fields_patch_with_stale_etag_is_a_conflict(jobs: Container) -> None:
    """The etag condition also holds for patches too large for a single patch request."""
    old = await jobs.create(job("j1"))
    current = await jobs.replace(job("j1", status="moved"))
    patch = Patch(set={f"s{i}": i for i in range(15)})
    result = await jobs.update_if_match("j1", "q1", old, patch)
    assert result.outcome is Outcome.CONFLICT
    assert await jobs.get("j1", "q1") == current


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param(Patch(set={"id": "other"}), id="set-id"),
        pytest.param(Patch(remove=("id",)), id="remove-id"),
        pytest.param(Patch(set={"queue": "q2"}), id="set-partition-key"),
        pytest.param(Patch(remove=("queue",)), id="remove-partition-key"),
        pytest.param(Patch(set={"_x": 1}), id="set-underscore"),
        pytest.param(Patch(remove=("_etag",)), id="remove-underscore"),
        pytest.param(Patch(set={"lease.expires_at": 1.0}), id="dotted-name"),
        pytest.param(Patch(set={"a/b": 1}), id="slash-name"),
        pytest.param(Patch(set={"": 1}), id="empty-name"),
        pytest.param(Patch(), id="empty-patch"),
        pytest.param(Patch(set={"a": 1}, remove=("a",)), id="set-and-remove-same"),
        pytest.param(Patch(set={"priority": "high"}), id="declared-wrong-type"),
        pytest.param(Patch(set={"priority": True}), id="bool-for-int"),
        pytest.param(Patch(set={"flag": 1}), id="int-for-bool"),
        pytest.param(Patch(set={"lease": {"expires_at": "soon"}}), id="nested-declared-type"),
        pytest.param(Patch(set={"status": None}), id="null-declared"),
        pytest.param(Patch(set={"x": {1, 2}}), id="set-value"),
        pytest.param(Patch(set={"x": float("nan")}), id="nan-value"),
        pytest.param(Patch(set={"x": {"a": None, "b": [float("nan")]}}), id="nested-nan-value"),
        pytest.param(Patch(set={"x": object()}), id="object-value"),
    ],
)
async def test_invalid_patch_raises_invalid_request_and_writes_nothing(
    jobs: Container, patch: Patch
) -> None:
    """A patch touching id, the partition key, '_' fields or declared types is refused unwritten."""
    doc = await jobs.create(job("j1", lease={"expires_at": 1.0}))
    with pytest.raises(InvalidRequestError):
        await jobs.update_if_match("j1", "q1", doc, patch)
    assert await snapshot(jobs) == [("q1", "j1", doc.etag, doc.body)]


async def test_update_with_a_non_document_expected_is_invalid(jobs: Container) -> None:
    """expected must be a Document carrying an etag."""
    doc = await jobs.create(job("j1"))
    bad = Document(doc.id, doc.partition_key, "", doc.body)
    with pytest.raises(InvalidRequestError):
        await jobs.update_if_match("j1", "q1", bad, Patch(set={"status": "x"}))
    with pytest.raises(InvalidRequestError):
        await jobs.update_if_match(
            "j1",
            "q1",
            doc.etag,  # type: ignore[arg-type]
            Patch(set={"status": "x"}),
        )
    assert await jobs.get("j1", "q1") == doc


async def test_patch_growing_the_document_past_the_size_limit_is_refused(
    jobs: Container,
) -> None:
    """A patch that would make the document larger than the limit raises and writes nothing."""
    from fleet_datastore import MAX_DOCUMENT_BYTES, DocumentTooLargeError

    doc = await jobs.create(job("j1", blob="a" * (MAX_DOCUMENT_BYTES // 2)))
    patch = Patch(set={"blob2": "b" * (MAX_DOCUMENT_BYTES // 2 + 10)})
    with pytest.raises(DocumentTooLargeError):
        await jobs.update_if_match("j1", "q1", doc, patch)
    assert await jobs.get("j1", "q1") == doc
