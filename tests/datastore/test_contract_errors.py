"""Contract: bad input raises a typed error before anything is written, on every provider."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fleet_datastore import (
    ASC,
    MAX_DOCUMENT_BYTES,
    Container,
    ContainerSpec,
    DatastoreError,
    DocumentStore,
    DocumentTooLargeError,
    Filter,
    Index,
    InvalidContinuationError,
    InvalidRequestError,
    NotFoundError,
    Patch,
    Query,
    UnknownContainerError,
    eq,
    ge,
    in_,
    lt,
    store_from_url,
)
from fleet_datastore.query import plan_query

from .conftest import job, job_spec, snapshot

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("a/b", id="slash"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("a?b", id="question-mark"),
    pytest.param("a#b", id="hash"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param(" padded", id="leading-space"),
    pytest.param("tab\there", id="control-char"),
    pytest.param(None, id="none"),
    pytest.param(7, id="int"),
]

NOT_JSON = [
    pytest.param({"s": {1, 2}}, id="set"),
    pytest.param({"f": float("nan")}, id="nan"),
    pytest.param({"f": float("inf")}, id="infinity"),
    pytest.param({"n": None, "deep": [{"f": -float("inf")}]}, id="nested-infinity-beside-null"),
    pytest.param({"n": None, "m": None, "f": float("nan")}, id="nan-beside-top-level-nulls"),
    pytest.param({"o": object()}, id="object"),
    pytest.param({"b": b"bytes"}, id="bytes"),
    pytest.param({"nested": {"deep": [1, {2, 3}]}}, id="nested-set"),
    pytest.param({"k": {1: "non-string key"}}, id="int-key"),
]

WRONG_TYPES = [
    pytest.param({"priority": "high"}, id="str-for-int"),
    pytest.param({"priority": 1.5}, id="float-for-int"),
    pytest.param({"priority": True}, id="bool-for-int"),
    pytest.param({"priority": 2**60}, id="int-beyond-2**53"),
    pytest.param({"priority": None}, id="null-for-int"),
    pytest.param({"created_at": "yesterday"}, id="str-for-float"),
    pytest.param({"created_at": False}, id="bool-for-float"),
    pytest.param({"flag": 1}, id="int-for-bool"),
    pytest.param({"flag": "true"}, id="str-for-bool"),
    pytest.param({"status": 3}, id="int-for-str"),
    pytest.param({"status": ["queued"]}, id="list-for-str"),
    pytest.param({"lease": {"expires_at": "soon"}}, id="nested-str-for-float"),
    pytest.param({"queue": 5}, id="int-partition-key"),
    pytest.param({"queue": ""}, id="empty-partition-key"),
]


async def _assert_unchanged(
    container: Container, before: list[Any], call: Callable[[], Awaitable[Any]]
) -> None:
    with pytest.raises(InvalidRequestError):
        await call()
    assert await snapshot(container) == before


# -- ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_ids_cosmos_refuses_are_refused_by_every_write_and_nothing_is_written(
    jobs: Container, bad_id: Any
) -> None:
    """An id Cosmos would refuse raises InvalidRequestError from every method and writes nothing."""
    good = await jobs.create(job("good"))
    before = await snapshot(jobs)
    body = {**job("good"), "id": bad_id}
    await _assert_unchanged(jobs, before, lambda: jobs.create(body))
    await _assert_unchanged(jobs, before, lambda: jobs.upsert(body))
    await _assert_unchanged(jobs, before, lambda: jobs.replace(body))
    await _assert_unchanged(jobs, before, lambda: jobs.get(bad_id, "q1"))
    await _assert_unchanged(jobs, before, lambda: jobs.delete(bad_id, "q1"))
    await _assert_unchanged(
        jobs,
        before,
        lambda: jobs.update_if_match(bad_id, "q1", good, Patch(set={"status": "x"})),
    )


async def test_an_id_of_255_characters_is_accepted(jobs: Container) -> None:
    """The longest id Cosmos accepts, 255 characters, works everywhere."""
    long_id = "x" * 255
    await jobs.create(job(long_id))
    assert (await jobs.get(long_id, "q1")).id == long_id


async def test_ids_with_unusual_but_legal_characters_round_trip(jobs: Container) -> None:
    """Ids with spaces, dots, quotes, percent signs and non-ASCII text are ordinary ids."""
    for doc_id in ("a b", "a.b", "it's", 'say "hi"', "100%", "ü-ß-✓", "a+b=c", "x:y;z", "*"):
        await jobs.create(job(doc_id))
        assert (await jobs.get(doc_id, "q1")).id == doc_id
        assert await jobs.count(Query(where=[eq("id", doc_id)])) == 1
    assert await jobs.count() == 9


@pytest.mark.parametrize(
    "bad_pk",
    [pytest.param("", id="empty"), pytest.param(None, id="none"), pytest.param(1, id="int")],
)
async def test_bad_partition_key_arguments_are_refused(jobs: Container, bad_pk: Any) -> None:
    """A partition key argument that is not a non-empty string raises InvalidRequestError."""
    doc = await jobs.create(job("j1"))
    before = await snapshot(jobs)
    await _assert_unchanged(jobs, before, lambda: jobs.get("j1", bad_pk))
    await _assert_unchanged(jobs, before, lambda: jobs.delete("j1", bad_pk))
    await _assert_unchanged(
        jobs, before, lambda: jobs.update_if_match("j1", bad_pk, doc, Patch(set={"status": "x"}))
    )
    await _assert_unchanged(jobs, before, lambda: jobs.batch(bad_pk, []))
    if bad_pk is not None:  # None means "every partition" in a query
        await _assert_unchanged(jobs, before, lambda: jobs.query(Query(partition_key=bad_pk)))


# -- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", NOT_JSON)
async def test_bodies_that_are_not_json_are_refused_and_nothing_is_written(
    jobs: Container, extra: dict[str, Any]
) -> None:
    """A body that is not JSON-serialisable raises InvalidRequestError from every write."""
    await jobs.create(job("j1"))
    before = await snapshot(jobs)
    await _assert_unchanged(jobs, before, lambda: jobs.create(job("j2", **extra)))
    await _assert_unchanged(jobs, before, lambda: jobs.upsert(job("j1", **extra)))
    await _assert_unchanged(jobs, before, lambda: jobs.replace(job("j1", **extra)))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["id", "x"], id="list"),
        pytest.param("{}", id="string"),
        pytest.param(None, id="none"),
        pytest.param({"queue": "q1"}, id="no-id"),
        pytest.param({"id": "x"}, id="no-partition-key"),
        pytest.param({**job("x"), "_rid": "r"}, id="underscore-field"),
        pytest.param({**job("x"), "_etag": "e"}, id="etag-field"),
        pytest.param({**job("x"), 5: "int-key"}, id="int-top-level-key"),  # type: ignore[misc]
    ],
)
async def test_malformed_bodies_are_refused_and_nothing_is_written(
    jobs: Container, body: Any
) -> None:
    """A body that is not an object with an id, a partition key and no '_' fields is refused."""
    before = await snapshot(jobs)
    await _assert_unchanged(jobs, before, lambda: jobs.create(body))
    await _assert_unchanged(jobs, before, lambda: jobs.upsert(body))


async def test_a_key_holding_a_line_break_and_an_underscore_is_not_refused(
    jobs: Container,
) -> None:
    """Only a key that starts with '_' is refused (the check joins the keys with line breaks)."""
    stored = await jobs.create({**job("x"), "a\n_b": 1})
    assert stored.body["a\n_b"] == 1


@pytest.mark.parametrize("wrong", WRONG_TYPES)
async def test_declared_fields_of_the_wrong_type_are_refused_and_nothing_is_written(
    jobs: Container, wrong: dict[str, Any]
) -> None:
    """A declared field holding another type raises InvalidRequestError from every write."""
    stored = await jobs.create(job("j1"))
    before = await snapshot(jobs)
    await _assert_unchanged(jobs, before, lambda: jobs.create({**job("j2"), **wrong}))
    await _assert_unchanged(jobs, before, lambda: jobs.upsert({**job("j1"), **wrong}))
    await _assert_unchanged(jobs, before, lambda: jobs.replace({**job("j1"), **wrong}))
    patch = Patch(set=wrong)  # top-level fields, and a nested one inside the value it sets
    await _assert_unchanged(jobs, before, lambda: jobs.update_if_match("j1", "q1", stored, patch))


async def test_declared_float_fields_accept_ints_and_nested_parents_may_be_absent(
    jobs: Container,
) -> None:
    """A float field takes any JSON number, and a nested field's parent may be missing or null."""
    await jobs.create(job("a", created_at=3, score=-1, lease={"expires_at": 5}))
    await jobs.create(job("b", lease=None))
    await jobs.create(job("c", lease="not an object"))
    await jobs.create({"id": "d", "queue": "q1"})
    assert await jobs.count() == 4


@pytest.mark.parametrize("method", ["create", "upsert", "replace"])
async def test_documents_over_two_megabytes_are_refused_and_nothing_is_written(
    jobs: Container, method: str
) -> None:
    """A body larger than MAX_DOCUMENT_BYTES raises DocumentTooLargeError and writes nothing."""
    assert MAX_DOCUMENT_BYTES == 2 * 1024 * 1024
    await jobs.create(job("j1"))
    before = await snapshot(jobs)
    big = job("j1", blob="x" * MAX_DOCUMENT_BYTES)
    with pytest.raises(DocumentTooLargeError):
        await getattr(jobs, method)(big)
    assert await snapshot(jobs) == before


async def test_multibyte_text_counts_in_encoded_bytes(jobs: Container) -> None:
    """The size limit counts UTF-8 bytes, so 1M three-byte characters are too large."""
    with pytest.raises(DocumentTooLargeError):
        await jobs.create(job("j1", blob="✓" * (MAX_DOCUMENT_BYTES // 3 + 1)))
    assert await jobs.count() == 0


async def test_a_document_just_under_the_limit_is_accepted(jobs: Container) -> None:
    """A document of a little under 2 MB is stored and read back whole."""
    blob = "y" * (MAX_DOCUMENT_BYTES - 1024)
    await jobs.create(job("j1", blob=blob))
    assert (await jobs.get("j1", "q1")).body["blob"] == blob


async def test_integers_beyond_2_53_are_refused_everywhere_and_nothing_is_written(
    jobs: Container,
) -> None:
    """An integer beyond ±(2**53 - 1) anywhere in a body is refused, so no provider rounds it."""
    for value in (2**53, -(2**53), 2**60):
        with pytest.raises(InvalidRequestError):
            await jobs.create(job("j1", big=value))
        with pytest.raises(InvalidRequestError):
            await jobs.create(job("j1", nested={"deep": [value]}))
    assert await jobs.count() == 0
    edge = await jobs.create(job("j1", big=2**53 - 1, small=-(2**53 - 1)))
    assert (await jobs.get("j1", "q1")).body["big"] == edge.body["big"] == 2**53 - 1
    with pytest.raises(InvalidRequestError):
        await jobs.update_if_match("j1", "q1", edge, Patch(set={"big": 2**53}))
    assert (await jobs.get("j1", "q1")).etag == edge.etag


# -- containers -------------------------------------------------------------------------


async def test_unknown_container_raises_unknown_container_error(store: DocumentStore) -> None:
    """get_container of a name never declared raises UnknownContainerError."""
    with pytest.raises(UnknownContainerError):
        store.get_container("nope")
    await store.create_container_if_not_exists(job_spec())
    with pytest.raises(UnknownContainerError):
        store.get_container("Jobs")
    assert isinstance(UnknownContainerError(), InvalidRequestError)


async def test_redeclaring_a_container_differently_is_refused(store: DocumentStore) -> None:
    """Declaring a known container name with another spec raises InvalidRequestError."""
    jobs = await store.create_container_if_not_exists(job_spec())
    await jobs.create(job("j1"))
    other = ContainerSpec(name="jobs", partition_key="queue", fields={"status": "str"})
    with pytest.raises(InvalidRequestError):
        await store.create_container_if_not_exists(other)
    assert store.get_container("jobs").spec == job_spec()
    assert await jobs.count() == 1


@pytest.mark.parametrize(
    "make_spec",
    [
        pytest.param(lambda: ContainerSpec(name=""), id="empty-name"),
        pytest.param(lambda: ContainerSpec(name="a/b"), id="slash-name"),
        pytest.param(lambda: ContainerSpec(name="x", partition_key="id"), id="pk-is-id"),
        pytest.param(lambda: ContainerSpec(name="x", partition_key="a.b"), id="nested-pk"),
        pytest.param(
            lambda: ContainerSpec(name="x", fields={"n": "decimal"}),  # type: ignore[dict-item]
            id="bad-type",
        ),
        pytest.param(
            lambda: ContainerSpec(name="x", indexes=(Index.of("u"),)),
            id="index-undeclared",
        ),
    ],
)
def test_invalid_container_specs_are_refused(make_spec: Callable[[], ContainerSpec]) -> None:
    """A spec with a bad name, partition key, field type or index raises InvalidRequestError."""
    with pytest.raises(InvalidRequestError):
        make_spec()


def test_unknown_url_scheme_is_refused() -> None:
    """store_from_url with a scheme no provider serves raises InvalidRequestError."""
    for url in ("redis://localhost", "memory", "", "sqlite://"):
        with pytest.raises(InvalidRequestError):
            store_from_url(url)


# -- queries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(Query(where=[eq("payload", "x")]), id="undeclared-filter"),
        pytest.param(Query(where=[eq("lease", 1.0)]), id="parent-of-declared-filter"),
        pytest.param(Query(order_by=["payload"]), id="undeclared-sort"),
        pytest.param(Query(order_by=["status"]), id="not-an-index-suffix"),
        pytest.param(Query(order_by=["-priority"]), id="index-middle-only"),
        pytest.param(Query(order_by=["queue", "priority", "created_at"]), id="half-reversed"),
        pytest.param(Query(order_by=["created_at", "-priority"]), id="index-out-of-order"),
        pytest.param(Query(order_by=["score", "score"]), id="field-twice"),
        pytest.param(Query(order_by=["status", "id"]), id="no-index-then-id"),
        pytest.param(Query(order_by=["-priority", "created_at", "-id"]), id="id-against-index"),
        pytest.param(Query(order_by=["id", "created_at"]), id="id-not-last"),
        pytest.param(Query(order_by=["", "x"]), id="empty-sort-key"),
        pytest.param(Query(order_by=["-"]), id="bare-minus"),
        pytest.param(Query(where=[eq("priority", "5")]), id="str-for-int"),
        pytest.param(Query(where=[eq("priority", 1.5)]), id="float-for-int"),
        pytest.param(Query(where=[eq("flag", 1)]), id="int-for-bool"),
        pytest.param(Query(where=[lt("created_at", float("nan"))]), id="nan"),
        pytest.param(Query(where=[eq("priority", 2**64)]), id="int-past-64-bits"),
        pytest.param(Query(where=[lt("created_at", -(2**70))]), id="int-past-64-bits-for-float"),
        pytest.param(Query(where=[in_("priority", [1, 2**53])]), id="in-int-past-2-53"),
        pytest.param(Query(where=[eq("status", None)]), id="none-value"),  # type: ignore[arg-type]
        pytest.param(Query(where=[in_("status", [])]), id="empty-in"),
        pytest.param(Query(where=[in_("status", ["a"] * 257)]), id="in-too-long"),
        pytest.param(Query(where=[in_("priority", [1, "2"])]), id="in-mixed"),
        pytest.param(
            Query(where=[Filter("status", "ne", "x")]),  # type: ignore[arg-type]
            id="unknown-op",
        ),
        pytest.param(Query(where=["status = 'x'"]), id="not-a-filter"),  # type: ignore[list-item]
        pytest.param(Query(limit=0), id="limit-zero"),
        pytest.param(Query(limit=-1), id="limit-negative"),
        pytest.param(Query(limit=10_001), id="limit-too-big"),
        pytest.param(Query(limit=True), id="limit-bool"),
        pytest.param(Query(limit=2.0), id="limit-float"),  # type: ignore[arg-type]
        pytest.param(Query(partition_key=""), id="empty-partition"),
    ],
)
async def test_invalid_queries_raise_invalid_request_error(jobs: Container, query: Query) -> None:
    """A query on undeclared fields, off-index orderings or ill-typed values is refused."""
    await jobs.create(job("j1", payload="x"))
    with pytest.raises(InvalidRequestError):
        await jobs.query(query)


def test_an_ordering_is_resolved_for_each_spec_and_a_refused_one_every_time() -> None:
    """The resolved orderings ``plan_query`` keeps are the spec's own, never another's."""
    indexed = ContainerSpec(name="a", fields={"n": "int"}, indexes=(Index.of("n"),))
    bare = ContainerSpec(name="b", fields={"n": "int"})
    query = Query(order_by=["n"])
    assert plan_query(indexed, query).sort == (("n", ASC), ("id", ASC), ("pk", ASC))
    for _ in range(2):  # the same strings on a spec without the index: refused, each time
        with pytest.raises(InvalidRequestError, match="not a suffix"):
            plan_query(bare, query)
    assert plan_query(indexed, query).sort == (("n", ASC), ("id", ASC), ("pk", ASC))
    unhashable = Query(order_by=[["n"]])  # type: ignore[list-item]
    with pytest.raises(InvalidRequestError, match="bad order_by entry"):
        plan_query(indexed, unhashable)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64 !!!", id="not-base64"),
        pytest.param("%%%", id="symbols"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(), id="not-utf8"),
        pytest.param(base64.urlsafe_b64encode(b"not json").decode(), id="not-json"),
        pytest.param(base64.urlsafe_b64encode(b"[1,2]").decode(), id="json-list"),
        pytest.param(base64.urlsafe_b64encode(b'{"s":"x"}').decode(), id="missing-key"),
        pytest.param("A" * 20_000, id="too-long"),
    ],
)
async def test_malformed_continuations_raise_invalid_continuation_error(
    jobs: Container, token: str
) -> None:
    """A continuation that is not one this store issued raises InvalidContinuationError."""
    await jobs.create(job("j1"))
    with pytest.raises(InvalidContinuationError):
        await jobs.query(Query(limit=1, continuation=token))


async def test_tampered_continuation_raises_invalid_continuation_error(jobs: Container) -> None:
    """A real token whose position was edited to a wrongly typed value is refused."""
    for i in range(3):
        await jobs.create(job(f"j{i}", priority=i, created_at=float(i)))
    query = Query(order_by=["-priority", "created_at"], limit=1)
    token = (await jobs.query(query)).continuation
    assert token is not None
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for key in (["x", "y", "z"], [1, 2.0], [1.5, 2.0, "j1"], "j1", [None, None, None]):
        forged = base64.urlsafe_b64encode(json.dumps({"s": data["s"], "k": key}).encode())
        bad = Query(order_by=query.order_by, limit=1, continuation=forged.decode().rstrip("="))
        with pytest.raises(InvalidContinuationError):
            await jobs.query(bad)


FORGED_POSITIONS = [
    pytest.param('[0, 0.0, "\\ud800", "q1"]', id="lone-high-surrogate"),
    pytest.param('[0, 0.0, "j1", "\\udfff"]', id="lone-low-surrogate"),
    pytest.param('[0, NaN, "j1", "q1"]', id="nan"),
    pytest.param('[0, Infinity, "j1", "q1"]', id="infinity"),
    pytest.param('[0, -Infinity, "j1", "q1"]', id="minus-infinity"),
    pytest.param('[0, 1e400, "j1", "q1"]', id="overflowing-float"),
    pytest.param('[9007199254740992, 0.0, "j1", "q1"]', id="int-past-2**53"),
    pytest.param('[-9223372036854775809, 0.0, "j1", "q1"]', id="int-past-int64"),
    pytest.param('[9223372036854775808, 0.0, "j1", "q1"]', id="int-past-sqlite-integer"),
    pytest.param('[0, 9007199254740993, "j1", "q1"]', id="float-field-int-past-2**53"),
    pytest.param('[0, 0.0, "", "q1"]', id="empty-id"),
    pytest.param('[0, 0.0, "' + "x" * 256 + '", "q1"]', id="id-too-long"),
    pytest.param('[0, 0.0, "j/1", "q1"]', id="id-with-slash"),
    pytest.param('[0, 0.0, "j1", ""]', id="empty-partition-key"),
    pytest.param('[0, 0.0, "j1", "' + "q" * 2049 + '"]', id="partition-key-too-long"),
]


@pytest.mark.parametrize("position", FORGED_POSITIONS)
async def test_a_position_no_stored_document_could_have_is_refused(
    jobs: Container, position: str
) -> None:
    """A token whose position holds a value the store never writes raises InvalidContinuationError.

    They used to reach the provider: SQLite failed on a lone surrogate or an integer
    past 64 bits, Cosmos DB answered "unavailable" for NaN or an infinity, and the
    other values resumed quietly from the forged place.
    """
    for i in range(3):
        await jobs.create(job(f"j{i}", priority=i, created_at=float(i)))
    query = Query(order_by=["-priority", "created_at"], limit=1)
    token = (await jobs.query(query)).continuation
    assert token is not None
    shape = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["s"]
    text = f'{{"s": "{shape}", "k": {position}}}'  # raw text: json.dumps cannot write these
    forged = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    with pytest.raises(InvalidContinuationError):
        await jobs.query(Query(order_by=query.order_by, limit=1, continuation=forged))


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Query(limit=1, where=[eq("status", "leased")]), id="other-filter"),
        pytest.param(Query(limit=1, where=[eq("status", "queued"), ge("priority", 0)]), id="more"),
        pytest.param(Query(limit=1, order_by=["-id"]), id="other-order"),
        pytest.param(Query(limit=1, partition_key="q1"), id="partition-added"),
        pytest.param(
            Query(limit=1, where=[eq("status", "queued")], partition_key="q2"), id="other-partition"
        ),
    ],
)
async def test_foreign_continuations_raise_invalid_continuation_error(
    jobs: Container, other: Query
) -> None:
    """A continuation from one query cannot resume a different query."""
    for i in range(3):
        await jobs.create(job(f"j{i}"))
    token = (await jobs.query(Query(where=[eq("status", "queued")], limit=1))).continuation
    assert token is not None
    resumed = Query(
        where=other.where,
        order_by=other.order_by,
        limit=other.limit,
        partition_key=other.partition_key,
        continuation=token,
    )
    with pytest.raises(InvalidContinuationError):
        await jobs.query(resumed)


async def test_continuation_from_another_container_is_refused(store: DocumentStore) -> None:
    """A continuation issued by one container cannot resume a query on another."""
    alpha = await store.create_container_if_not_exists(job_spec("alpha"))
    beta = await store.create_container_if_not_exists(job_spec("beta"))
    for i in range(3):
        await alpha.create(job(f"j{i}"))
        await beta.create(job(f"j{i}"))
    token = (await alpha.query(Query(limit=1))).continuation
    assert token is not None
    with pytest.raises(InvalidContinuationError):
        await beta.query(Query(limit=1, continuation=token))


async def test_every_error_is_a_datastore_error(jobs: Container) -> None:
    """NotFoundError and InvalidRequestError both derive from the one root, DatastoreError."""
    with pytest.raises(DatastoreError):
        await jobs.get("nope", "q1")
    with pytest.raises(DatastoreError):
        await jobs.create({"id": ""})
    assert issubclass(NotFoundError, DatastoreError)
