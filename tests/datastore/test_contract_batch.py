"""Contract: a transactional batch in one partition takes effect whole or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_datastore import (
    MAX_BATCH_OPERATIONS,
    AlreadyExistsError,
    BatchError,
    BatchOp,
    Container,
    CreateOp,
    DatastoreError,
    DeleteOp,
    InvalidRequestError,
    NotFoundError,
    Patch,
    PatchOp,
    PreconditionFailedError,
    ReadOp,
    ReplaceOp,
    UpsertOp,
)

from .conftest import job, snapshot


async def test_batch_runs_every_kind_of_operation_and_returns_one_result_each(
    jobs: Container,
) -> None:
    """A batch of create, replace, upsert, delete, patch and read applies all and reports each."""
    keep = await jobs.create(job("keep", status="queued"))
    to_replace = await jobs.create(job("rep", status="queued"))
    to_delete = await jobs.create(job("del"))
    to_patch = await jobs.create(job("pat", priority=1, drop="x"))
    results = await jobs.batch(
        "q1",
        [
            CreateOp(job("new", priority=7)),
            ReplaceOp(job("rep", status="leased"), etag=to_replace.etag),
            UpsertOp(job("ups", priority=2)),
            UpsertOp(job("keep", status="upserted")),
            DeleteOp("del", etag=to_delete.etag),
            PatchOp("pat", Patch(set={"priority": 9}, remove=("drop",)), etag=to_patch.etag),
            ReadOp("pat"),
        ],
    )
    assert len(results) == 7
    created, replaced, upserted_new, upserted_old, deleted, patched, read = results
    assert deleted is None
    for doc in (created, replaced, upserted_new, upserted_old, patched, read):
        assert doc is not None
        assert doc.etag
        assert doc.partition_key == "q1"
    assert created is not None
    assert created.body == job("new", priority=7)
    assert replaced is not None
    assert replaced.etag != to_replace.etag
    assert upserted_old is not None
    assert upserted_old.etag != keep.etag
    assert patched is not None
    assert patched.body == job("pat", priority=9)
    assert read is not None
    assert read.body == job("pat", priority=9)
    assert read.etag == patched.etag
    stored = {d[1]: d for d in await snapshot(jobs)}
    assert sorted(stored) == ["keep", "new", "pat", "rep", "ups"]
    for doc in (created, replaced, upserted_new, upserted_old, patched):
        assert doc is not None
        assert stored[doc.id][2:] == (doc.etag, doc.body)


async def test_batch_operations_see_earlier_operations_of_the_same_batch(jobs: Container) -> None:
    """Operations apply in order: later ones read, patch or delete what earlier ones wrote."""
    results = await jobs.batch(
        "q1",
        [
            CreateOp(job("a", priority=1)),
            PatchOp("a", Patch(set={"priority": 2})),
            ReadOp("a"),
            CreateOp(job("b")),
            DeleteOp("b"),
        ],
    )
    read = results[2]
    assert read is not None
    assert read.body["priority"] == 2
    assert [d[1] for d in await snapshot(jobs)] == ["a"]
    assert (await jobs.get("a", "q1")).body["priority"] == 2


async def test_batch_unconditional_ops_without_etag_succeed(jobs: Container) -> None:
    """Replace, delete and patch without an etag only need the document to exist."""
    await jobs.create(job("a"))
    await jobs.create(job("b"))
    await jobs.create(job("c"))
    results = await jobs.batch(
        "q1",
        [
            ReplaceOp(job("a", status="r")),
            DeleteOp("b"),
            PatchOp("c", Patch(set={"status": "p"})),
        ],
    )
    assert results[1] is None
    assert {d[1]: d[3]["status"] for d in await snapshot(jobs)} == {"a": "r", "c": "p"}


async def test_batch_results_are_readable_with_their_etags(jobs: Container) -> None:
    """An etag returned by a batch is the stored etag, usable for the next conditional write."""
    (created,) = await jobs.batch("q1", [CreateOp(job("a"))])
    assert created is not None
    result = await jobs.update_if_match("a", "q1", created, Patch(set={"status": "next"}))
    assert result.ok


async def _prepare_failing_batch_scene(jobs: Container) -> dict[str, Any]:
    existing = await jobs.create(job("existing", status="queued"))
    stale = await jobs.create(job("stale"))
    await jobs.replace(job("stale", status="moved"))
    return {"existing": existing, "stale": stale}


FAILURES: list[tuple[str, Any, type[DatastoreError]]] = [
    ("create-existing", lambda s: CreateOp(job("existing")), AlreadyExistsError),
    ("replace-missing", lambda s: ReplaceOp(job("missing")), NotFoundError),
    (
        "replace-stale",
        lambda s: ReplaceOp(job("stale", status="x"), etag=s["stale"].etag),
        PreconditionFailedError,
    ),
    ("delete-missing", lambda s: DeleteOp("missing"), NotFoundError),
    ("delete-stale", lambda s: DeleteOp("stale", etag=s["stale"].etag), PreconditionFailedError),
    ("patch-missing", lambda s: PatchOp("missing", Patch(set={"status": "x"})), NotFoundError),
    (
        "patch-stale",
        lambda s: PatchOp("stale", Patch(set={"status": "x"}), etag=s["stale"].etag),
        PreconditionFailedError,
    ),
    ("read-missing", lambda s: ReadOp("missing"), NotFoundError),
]


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize(
    ("make_op", "cause"), [pytest.param(m, c, id=name) for name, m, c in FAILURES]
)
async def test_batch_with_one_failing_operation_writes_nothing(
    jobs: Container, make_op: Any, cause: type[DatastoreError], position: str
) -> None:
    """One failing operation raises BatchError(index, cause) and nothing is written."""
    scene = await _prepare_failing_batch_scene(jobs)
    before = await snapshot(jobs)
    good: list[BatchOp] = [
        CreateOp(job("fresh1", priority=1)),
        UpsertOp(job("existing", status="upserted")),
        PatchOp("stale", Patch(set={"status": "patched"})),
        CreateOp(job("fresh2", priority=2)),
        ReplaceOp(job("existing", status="replaced")),
    ]
    index = {"first": 0, "middle": 3, "last": len(good)}[position]
    ops = [*good[:index], make_op(scene), *good[index:]]
    with pytest.raises(BatchError) as caught:
        await jobs.batch("q1", ops)
    assert caught.value.index == index
    assert isinstance(caught.value.cause, cause)
    assert await snapshot(jobs) == before


async def test_batch_error_for_a_create_conflicting_with_an_earlier_op_in_the_batch(
    jobs: Container,
) -> None:
    """Creating the same id twice in one batch fails at the second create and writes nothing."""
    with pytest.raises(BatchError) as caught:
        await jobs.batch("q1", [CreateOp(job("a")), CreateOp(job("b")), CreateOp(job("a"))])
    assert caught.value.index == 2
    assert isinstance(caught.value.cause, AlreadyExistsError)
    assert await snapshot(jobs) == []


@pytest.mark.parametrize("taken", [0, 4, 9])
async def test_batch_of_creates_only_with_one_id_taken_names_it_and_writes_nothing(
    jobs: Container, taken: int
) -> None:
    """Creates alone (SQLite runs them as one statement) still name the create that failed."""
    await jobs.create(job(f"c{taken}", status="stored"))
    before = await snapshot(jobs)
    with pytest.raises(BatchError) as caught:
        await jobs.batch("q1", [CreateOp(job(f"c{i}")) for i in range(10)])
    assert caught.value.index == taken
    assert isinstance(caught.value.cause, AlreadyExistsError)
    assert await snapshot(jobs) == before


@pytest.mark.parametrize("where", ["stored", "earlier_in_batch"])
async def test_batch_of_many_creates_names_the_37th_and_writes_nothing(
    jobs: Container, where: str
) -> None:
    """The 37th of 60 creates meets a taken id: BatchError names index 37, nothing is written.

    SQLite inserts a run of creates with one statement; the index must still be the
    first create whose id was taken, whether stored before or by an earlier create.
    """
    if where == "stored":
        await jobs.create(job("m37", status="stored"))
    before = await snapshot(jobs)
    ops: list[BatchOp] = [CreateOp(job(f"m{i:02}")) for i in range(60)]
    if where == "earlier_in_batch":
        ops[37] = CreateOp(job("m05", status="again"))
        ops[50] = CreateOp(job("m05", status="third"))
    with pytest.raises(BatchError) as caught:
        await jobs.batch("q1", ops)
    assert caught.value.index == 37
    assert isinstance(caught.value.cause, AlreadyExistsError)
    assert await snapshot(jobs) == before


async def test_batch_creates_around_other_operations_name_the_failing_create(
    jobs: Container,
) -> None:
    """Runs of creates split by another operation: the failing create's index, nothing written."""
    await jobs.create(job("old", status="stored"))
    await jobs.create(job("x2", status="stored"))
    before = await snapshot(jobs)
    ops: list[BatchOp] = [
        CreateOp(job("x0")),
        CreateOp(job("x1")),
        ReadOp("old"),
        CreateOp(job("x3")),
        CreateOp(job("x2")),
        CreateOp(job("x4")),
    ]
    with pytest.raises(BatchError) as caught:
        await jobs.batch("q1", ops)
    assert caught.value.index == 4
    assert isinstance(caught.value.cause, AlreadyExistsError)
    assert await snapshot(jobs) == before
    results = await jobs.batch("q1", [op for i, op in enumerate(ops) if i != 4])
    assert [doc.id if doc else None for doc in results] == ["x0", "x1", "old", "x3", "x4"]
    etags = {doc.id: doc.etag for doc in results if doc is not None}
    assert len(set(etags.values())) == len(etags)
    for doc in results:
        assert doc is not None
        assert (await jobs.get(doc.id, "q1")) == doc


async def test_batch_of_the_maximum_size_succeeds(jobs: Container) -> None:
    """A batch of exactly MAX_BATCH_OPERATIONS operations is accepted."""
    ops: list[BatchOp] = [CreateOp(job(f"d{i:03}")) for i in range(MAX_BATCH_OPERATIONS)]
    results = await jobs.batch("q1", ops)
    assert len(results) == MAX_BATCH_OPERATIONS
    assert await jobs.count() == MAX_BATCH_OPERATIONS


async def test_batch_over_the_maximum_size_is_invalid_and_writes_nothing(jobs: Container) -> None:
    """More than MAX_BATCH_OPERATIONS operations raise InvalidRequestError before any write."""
    ops: list[BatchOp] = [CreateOp(job(f"d{i:03}")) for i in range(MAX_BATCH_OPERATIONS + 1)]
    with pytest.raises(InvalidRequestError):
        await jobs.batch("q1", ops)
    assert await snapshot(jobs) == []


async def test_empty_batch_is_invalid(jobs: Container) -> None:
    """A batch needs at least one operation."""
    with pytest.raises(InvalidRequestError):
        await jobs.batch("q1", [])


@pytest.mark.parametrize("kind", ["create", "replace", "upsert"])
async def test_batch_mixing_partitions_is_invalid_and_writes_nothing(
    jobs: Container, kind: str
) -> None:
    """A body outside the batch's partition raises InvalidRequestError and nothing is written."""
    existing = await jobs.create(job("x", "q2"))
    before = await snapshot(jobs)
    foreign = job("x", "q2", status="foreign")
    ops: dict[str, BatchOp] = {
        "create": CreateOp(foreign),
        "replace": ReplaceOp(foreign, etag=existing.etag),
        "upsert": UpsertOp(foreign),
    }
    op = ops[kind]
    with pytest.raises(InvalidRequestError):
        await jobs.batch("q1", [CreateOp(job("a", "q1")), op])
    assert await snapshot(jobs) == before


@pytest.mark.parametrize(
    "bad_op",
    [
        pytest.param(CreateOp({"id": "a/b", "queue": "q1"}), id="bad-id"),
        pytest.param(DeleteOp("a?b"), id="bad-delete-id"),
        pytest.param(ReadOp(""), id="empty-read-id"),
        pytest.param(PatchOp("a", Patch(set={"id": "b"})), id="patch-id"),
        pytest.param(PatchOp("a", Patch()), id="empty-patch"),
        pytest.param(CreateOp({**job("b"), "priority": "high"}), id="wrong-type"),
        pytest.param(UpsertOp(job("b", extra={1, 2})), id="not-json"),
        pytest.param(ReplaceOp(job("a"), etag=""), id="empty-etag"),
        pytest.param("create a", id="not-an-op"),
    ],
)
async def test_batch_with_an_invalid_operation_is_refused_before_any_write(
    jobs: Container, bad_op: Any
) -> None:
    """An invalid operation anywhere in a batch raises InvalidRequestError; nothing is written."""
    await jobs.create(job("a"))
    before = await snapshot(jobs)
    with pytest.raises(InvalidRequestError):
        await jobs.batch("q1", [CreateOp(job("c")), UpsertOp(job("a", status="u")), bad_op])
    assert await snapshot(jobs) == before


async def test_batch_documents_over_the_size_limit_are_refused(jobs: Container) -> None:
    """A too-large document in a batch raises DocumentTooLargeError and nothing is written."""
    from fleet_datastore import MAX_DOCUMENT_BYTES, DocumentTooLargeError

    with pytest.raises(DocumentTooLargeError):
        await jobs.batch(
            "q1", [CreateOp(job("a")), CreateOp(job("b", blob="x" * MAX_DOCUMENT_BYTES))]
        )
    assert await snapshot(jobs) == []


async def test_batch_patch_growing_past_the_size_limit_writes_nothing(jobs: Container) -> None:
    """A batch patch that would make a document too large fails the batch and writes nothing."""
    from fleet_datastore import MAX_DOCUMENT_BYTES, DocumentTooLargeError

    await jobs.create(job("a", blob="x" * (MAX_DOCUMENT_BYTES // 2)))
    before = await snapshot(jobs)
    with pytest.raises((BatchError, DocumentTooLargeError)) as caught:
        await jobs.batch(
            "q1",
            [
                CreateOp(job("b")),
                PatchOp("a", Patch(set={"more": "y" * (MAX_DOCUMENT_BYTES // 2 + 10)})),
            ],
        )
    if isinstance(caught.value, BatchError):
        assert caught.value.index == 1
        assert isinstance(caught.value.cause, DocumentTooLargeError)
    assert await snapshot(jobs) == before


async def test_batch_whose_documents_are_too_large_together_is_refused(jobs: Container) -> None:
    """Documents over MAX_BATCH_BYTES together raise BatchTooLargeError; nothing is written.

    Cosmos DB refuses a batch request over 2 MB, even of documents each within
    their own limit; every provider refuses it, so a caller that fits one fits all.
    Each half is accepted.
    """
    from fleet_datastore import MAX_BATCH_BYTES, BatchTooLargeError

    blob = "x" * (MAX_BATCH_BYTES // 3)
    ops: list[BatchOp] = [CreateOp(job(f"d{i}", blob=blob)) for i in range(4)]
    with pytest.raises(BatchTooLargeError):
        await jobs.batch("q1", ops)
    assert await snapshot(jobs) == []
    for half in (ops[:2], ops[2:]):
        assert len(await jobs.batch("q1", half)) == 2
    assert await jobs.count() == 4
