"""Contract: the portable query — filters, ordering, limit, continuation, partition and count."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_datastore import (
    Container,
    Filter,
    InvalidRequestError,
    Page,
    Patch,
    Query,
    eq,
    ge,
    gt,
    in_,
    le,
    lt,
)

from .conftest import job

# Seven jobs chosen so that every filter and ordering below has ties, gaps and
# documents that lack the filtered or sorted field.
SEED: list[dict[str, Any]] = [
    job("a", "q1", priority=5, created_at=3.0, score=0.5, flag=True, lease={"expires_at": 30.0}),
    job("b", "q1", priority=5, created_at=1.0, score=1.5, flag=False),
    job("c", "q1", status="leased", priority=1, created_at=2.0, score=-2, flag=True,
        lease={"expires_at": 10.0}),
    job("d", "q2", priority=9, created_at=4.0, score=0.5, lease={"expires_at": 20.0}),
    job("e", "q2", status="failed", priority=-3, created_at=0.5, flag=False, lease={}),
    job("f", "q2", status="leased", priority=5, created_at=3.0, score=2,
        lease={"expires_at": 10.0}),
    {"id": "g", "queue": "q3", "status": "queued", "lease": None},
]  # fmt: skip


@pytest.fixture
async def seeded(jobs: Container) -> Container:
    """The jobs container holding SEED."""
    for body in SEED:
        await jobs.create(body)
    return jobs


async def ids(container: Container, query: Query) -> list[str]:
    """The ids of one page of ``query``, which must be the only page."""
    page = await container.query(query)
    assert page.continuation is None
    return [d.id for d in page.items]


async def all_pages(container: Container, query: Query) -> list[Page]:
    """Every page of ``query``, following continuations to the end."""
    pages = [await container.query(query)]
    while pages[-1].continuation is not None:
        assert len(pages) < 1000, "continuation never ends"
        nxt = Query(
            where=query.where,
            order_by=query.order_by,
            limit=query.limit,
            partition_key=query.partition_key,
            continuation=pages[-1].continuation,
        )
        pages.append(await container.query(nxt))
    return pages


# -- filters ----------------------------------------------------------------------------


async def test_query_without_filters_returns_everything_in_id_order(seeded: Container) -> None:
    """An unordered query returns every document, ordered by id."""
    assert await ids(seeded, Query()) == ["a", "b", "c", "d", "e", "f", "g"]


async def test_query_of_an_empty_container_returns_an_empty_last_page(jobs: Container) -> None:
    """A query with no matches returns no items and no continuation."""
    page = await jobs.query(Query(where=[eq("status", "queued")], limit=5))
    assert page.items == []
    assert page.continuation is None


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param([eq("status", "queued")], "abdg", id="eq-str"),
        pytest.param([eq("status", "nothing")], "", id="eq-no-match"),
        pytest.param([in_("status", ["leased", "failed"])], "cef", id="in-str"),
        pytest.param([in_("status", ["leased"])], "cf", id="in-one"),
        pytest.param([eq("priority", 5)], "abf", id="eq-int"),
        pytest.param([lt("priority", 5)], "ce", id="lt-int"),
        pytest.param([le("priority", 5)], "abcef", id="le-int"),
        pytest.param([gt("priority", 5)], "d", id="gt-int"),
        pytest.param([ge("priority", 5)], "abdf", id="ge-int"),
        pytest.param([ge("priority", -3), le("priority", 1)], "ce", id="int-between"),
        pytest.param([in_("priority", [9, -3, 100])], "de", id="in-int"),
        pytest.param([gt("created_at", 1.0), le("created_at", 3.0)], "acf", id="float-range"),
        pytest.param([eq("created_at", 3)], "af", id="float-eq-int-value"),
        pytest.param([eq("score", 2.0)], "f", id="float-eq-stored-int"),
        pytest.param([ge("score", 0.5)], "abdf", id="float-ge-mixed"),
        pytest.param([lt("score", 0)], "c", id="float-lt-zero"),
        pytest.param([in_("score", [0.5, 2])], "adf", id="in-float"),
        pytest.param([eq("flag", True)], "ac", id="eq-bool-true"),
        pytest.param([eq("flag", False)], "be", id="eq-bool-false"),
        pytest.param([lt("flag", True)], "be", id="lt-bool"),
        pytest.param([ge("flag", False)], "abce", id="ge-bool"),
        pytest.param([le("lease.expires_at", 20.0)], "cdf", id="nested-le"),
        pytest.param([eq("lease.expires_at", 10.0)], "cf", id="nested-eq"),
        pytest.param([gt("status", "leased")], "abdg", id="str-gt"),
        pytest.param([le("status", "leased")], "cef", id="str-le"),
        pytest.param([eq("id", "c")], "c", id="id-eq"),
        pytest.param([in_("id", ["a", "g", "zz"])], "ag", id="id-in"),
        pytest.param([gt("id", "d")], "efg", id="id-gt"),
        pytest.param([eq("queue", "q2")], "def", id="partition-field-eq"),
        pytest.param([eq("status", "queued"), ge("priority", 5)], "abd", id="two-filters"),
        pytest.param(
            [eq("status", "queued"), eq("queue", "q1"), lt("created_at", 2.0)], "b", id="three"
        ),
        pytest.param([eq("status", "queued"), eq("status", "leased")], "", id="contradiction"),
    ],
)
async def test_filters_match_exactly_the_documents_that_satisfy_them(
    seeded: Container, where: list[Filter], expected: str
) -> None:
    """A filter keeps exactly the documents whose field satisfies it; missing fields never match."""
    assert await ids(seeded, Query(where=where)) == list(expected)
    assert await seeded.count(Query(where=where)) == len(expected)


async def test_documents_missing_a_filtered_field_never_match(seeded: Container) -> None:
    """g lacks priority, created_at, score, flag and lease.expires_at, so no filter finds it."""
    for where in (
        [ge("priority", -(2**53 - 1))],
        [le("priority", 2**53 - 1)],
        [ge("created_at", -1e300)],
        [lt("score", 1e300)],
        [in_("flag", [True, False])],
        [ge("lease.expires_at", -1e300)],
    ):
        assert "g" not in await ids(seeded, Query(where=where))


# -- ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        pytest.param(["queue", "-priority", "created_at"], "bacdfe", id="whole-index"),
        pytest.param(["-priority", "created_at"], "dbafce", id="index-suffix"),
        pytest.param(["priority", "-created_at"], "ecfabd", id="reversed-suffix"),
        pytest.param(["-queue", "priority", "-created_at"], "efdcab", id="reversed-whole"),
        pytest.param(["created_at"], "ebcafd", id="last-field"),
        pytest.param(["-created_at"], "dfacbe", id="last-field-reversed"),
        pytest.param(["status", "lease.expires_at"], "cfda", id="nested-field"),
        pytest.param(["lease.expires_at"], "cfda", id="nested-suffix"),
        pytest.param(["-status", "-lease.expires_at"], "adfc", id="nested-reversed"),
        pytest.param(["score"], "cadbf", id="float-mixed-ints"),
        pytest.param(["-score"], "fbdac", id="float-reversed"),
        pytest.param(["flag", "-score"], "bac", id="bool-then-float"),
        pytest.param(["-flag", "score"], "cab", id="bool-reversed"),
        pytest.param(["id"], "abcdefg", id="id"),
        pytest.param(["-id"], "gfedcba", id="id-desc"),
        pytest.param(["-priority", "created_at", "id"], "dbafce", id="explicit-id-tiebreak"),
        pytest.param(["priority", "-created_at", "-id"], "ecfabd", id="reversed-explicit-id"),
    ],
)
async def test_ordering_follows_the_index_with_id_breaking_ties(
    seeded: Container, order_by: list[str], expected: str
) -> None:
    """order_by sorts by each key in turn, ties broken by id, documents lacking a key left out."""
    assert await ids(seeded, Query(order_by=order_by)) == list(expected)


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        pytest.param([], ["q1", "q2", "q3"], id="by-id"),
        pytest.param(["id"], ["q1", "q2", "q3"], id="id"),
        pytest.param(["-id"], ["q3", "q2", "q1"], id="id-desc"),
        pytest.param(["created_at"], ["q1", "q2", "q3"], id="index"),
        pytest.param(["-created_at"], ["q3", "q2", "q1"], id="reversed-index"),
        pytest.param(["-priority", "created_at", "id"], ["q1", "q2", "q3"], id="explicit-id"),
    ],
)
async def test_ties_on_every_key_and_id_are_broken_by_partition_key(
    jobs: Container, order_by: list[str], expected: list[str]
) -> None:
    """Documents equal in every sort key and in id come in partition-key order (or its reverse)."""
    for queue in ("q2", "q3", "q1"):
        await jobs.create(job("same", queue, priority=1, created_at=1.0))
    page = await jobs.query(Query(order_by=order_by))
    assert [d.partition_key for d in page.items] == expected
    pages = await all_pages(jobs, Query(order_by=order_by, limit=1))
    assert [d.partition_key for p in pages for d in p.items] == expected


async def test_reversed_order_is_the_exact_reverse(seeded: Container) -> None:
    """Ordering by the reversed index gives exactly the reverse sequence, tie-breaks included."""
    forward = await ids(seeded, Query(order_by=["-priority", "created_at"]))
    backward = await ids(seeded, Query(order_by=["priority", "-created_at"]))
    assert backward == list(reversed(forward))


async def test_ordering_combines_with_filters(seeded: Container) -> None:
    """Equality on the index prefix plus order on the rest serves the claim query shape."""
    query = Query(where=[eq("queue", "q2"), eq("status", "leased")], order_by=["-priority"])
    with pytest.raises(InvalidRequestError):  # ["-priority"] alone is no index suffix
        await seeded.query(query)
    query = Query(
        where=[eq("queue", "q1"), eq("status", "queued")], order_by=["-priority", "created_at"]
    )
    assert await ids(seeded, query) == ["b", "a"]
    query = Query(where=[ge("lease.expires_at", 15.0)], order_by=["status", "lease.expires_at"])
    assert await ids(seeded, query) == ["d", "a"]


async def test_documents_missing_a_sort_field_are_left_out_of_an_ordered_query(
    seeded: Container,
) -> None:
    """An ordered query skips documents lacking a sort field; count() still counts them."""
    assert "g" not in await ids(seeded, Query(order_by=["created_at"]))
    assert "e" not in await ids(seeded, Query(order_by=["lease.expires_at"]))
    # count() ignores ordering, so it counts documents an ordered query leaves out.
    assert await seeded.count(Query(order_by=["created_at"])) == 7


# -- limit and continuation -------------------------------------------------------------


async def test_limit_returns_the_first_documents_and_a_continuation(seeded: Container) -> None:
    """A limit smaller than the matches returns that many, in order, with a continuation."""
    page = await seeded.query(Query(order_by=["-priority", "created_at"], limit=2))
    assert [d.id for d in page.items] == ["d", "b"]
    assert page.more
    assert isinstance(page.continuation, str)
    assert page.continuation


async def test_a_continuation_read_late_resumes_where_its_page_ended(seeded: Container) -> None:
    """The token is made when first read; what the caller did to the bodies meanwhile is moot."""
    query = Query(order_by=["-priority", "created_at"], limit=2)
    page = await seeded.query(query)
    for doc in page.items:
        doc.body["priority"], doc.body["created_at"] = -100, 99.0
    rest = await seeded.query(Query(order_by=query.order_by, continuation=page.continuation))
    assert [d.id for d in rest.items] == ["a", "f", "c", "e"]


async def test_limit_equal_to_the_matches_returns_no_continuation(seeded: Container) -> None:
    """When the page holds the last match there is no continuation and no empty extra page."""
    page = await seeded.query(Query(where=[eq("status", "leased")], limit=2))
    assert [d.id for d in page.items] == ["c", "f"]
    assert not page.more
    assert page.continuation is None


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 100])
@pytest.mark.parametrize(
    "query",
    [
        pytest.param(Query(), id="by-id"),
        pytest.param(Query(order_by=["-priority", "created_at"]), id="index"),
        pytest.param(Query(order_by=["priority", "-created_at"]), id="reversed"),
        pytest.param(Query(order_by=["-id"]), id="id-desc"),
        pytest.param(Query(order_by=["score"]), id="float-ties"),
        pytest.param(Query(order_by=["status", "lease.expires_at"]), id="nested"),
        pytest.param(Query(where=[eq("status", "queued")]), id="filtered"),
        pytest.param(
            Query(where=[ge("priority", 1)], order_by=["queue", "-priority", "created_at"]),
            id="filtered-ordered",
        ),
        pytest.param(Query(partition_key="q2", order_by=["created_at"]), id="partition"),
        pytest.param(Query(where=[in_("id", ["f", "a", "zz", "c", "g", "d"])]), id="id-in"),
        pytest.param(
            Query(where=[in_("id", ["f", "a", "zz", "g"])], order_by=["-id"]), id="id-in-desc"
        ),
        pytest.param(Query(where=[in_("id", ["d", "e", "a"])], partition_key="q2"), id="id-in-pk"),
    ],
)
async def test_continuation_pages_return_every_match_exactly_once_in_order(
    seeded: Container, query: Query, limit: int
) -> None:
    """Following continuations yields the unpaged result exactly, split into pages of ``limit``."""
    everything = await ids(seeded, query)
    paged_query = Query(
        where=query.where, order_by=query.order_by, limit=limit, partition_key=query.partition_key
    )
    pages = await all_pages(seeded, paged_query)
    assert [d.id for p in pages for d in p.items] == everything
    assert all(len(p.items) == limit for p in pages[:-1])
    assert 1 <= len(pages[-1].items) <= limit or everything == []


async def test_continuation_survives_a_change_of_limit(seeded: Container) -> None:
    """A continuation resumes the same query; the page size may change between pages."""
    query = Query(order_by=["-priority", "created_at"], limit=1)
    first = await seeded.query(query)
    second = await seeded.query(
        Query(order_by=["-priority", "created_at"], limit=4, continuation=first.continuation)
    )
    rest = await seeded.query(
        Query(order_by=["-priority", "created_at"], continuation=second.continuation)
    )
    got = [d.id for p in (first, second, rest) for d in p.items]
    assert got == list("dbafce")
    assert rest.continuation is None


async def test_paging_with_writes_between_pages_returns_each_document_once(
    jobs: Container,
) -> None:
    """Continuations return every document present throughout exactly once, despite writes."""
    for i in range(0, 40, 2):
        await jobs.create(job(f"d{i:02}", priority=i % 3, created_at=float(i)))
    original = {f"d{i:02}" for i in range(0, 40, 2)}
    query = Query(order_by=["-priority", "created_at"], limit=3)
    seen: list[str] = []
    page = await jobs.query(query)
    step = 0
    while True:
        seen.extend(d.id for d in page.items)
        if page.continuation is None:
            break
        step += 1
        # Writes between pages: new documents both sides of the cursor, and
        # non-key updates to documents not yet seen.
        await jobs.create(job(f"n{step:02}a", priority=5, created_at=-1.0))
        await jobs.create(job(f"n{step:02}b", priority=0, created_at=1000.0 + step))
        for doc in (await jobs.query(Query(where=[eq("priority", 0)], limit=2))).items:
            await jobs.update_if_match(doc.id, "q1", doc, Patch(set={"note": step}))
        page = await jobs.query(
            Query(order_by=["-priority", "created_at"], limit=3, continuation=page.continuation)
        )
    assert len(seen) == len(set(seen)), "a document was returned twice"
    assert original <= set(seen), "a document present throughout was skipped"
    # New documents sorting after the cursor are seen; those sorting before it are not.
    assert not any(i.endswith("a") and i.startswith("n") for i in seen)
    assert any(i.endswith("b") and i.startswith("n") for i in seen)


async def test_paging_across_partitions_with_a_shared_id_returns_each_document_once(
    jobs: Container,
) -> None:
    """Documents sharing an id in different partitions are each paged exactly once."""
    for queue in ("q1", "q2", "q3"):
        await jobs.create(job("same", queue, priority=1))
        await jobs.create(job("z", queue, priority=1))
    pages = await all_pages(jobs, Query(limit=1))
    got = sorted((d.id, d.partition_key) for p in pages for d in p.items)
    assert got == sorted((i, q) for i in ("same", "z") for q in ("q1", "q2", "q3"))
    pages = await all_pages(jobs, Query(where=[in_("id", ["same", "nope"])], limit=1))
    assert [(d.id, d.partition_key) for p in pages for d in p.items] == [
        ("same", q) for q in ("q1", "q2", "q3")
    ]


# -- partition and count ----------------------------------------------------------------


async def test_partition_key_restricts_the_query_to_one_partition(seeded: Container) -> None:
    """A query with partition_key returns only that partition's documents."""
    assert await ids(seeded, Query(partition_key="q2")) == ["d", "e", "f"]
    assert await ids(seeded, Query(partition_key="q2", where=[eq("status", "leased")])) == ["f"]
    ordered = Query(partition_key="q1", order_by=["-priority", "created_at"])
    assert await ids(seeded, ordered) == ["b", "a", "c"]
    assert await ids(seeded, Query(partition_key="nope")) == []


async def test_count_counts_matches_ignoring_limit_and_order(seeded: Container) -> None:
    """count() returns how many documents match the filters and partition, whatever the limit."""
    assert await seeded.count() == 7
    assert await seeded.count(Query()) == 7
    assert await seeded.count(Query(where=[eq("status", "queued")], limit=1)) == 4
    assert await seeded.count(Query(partition_key="q1")) == 3
    assert await seeded.count(Query(partition_key="q1", where=[eq("status", "queued")])) == 2
    assert await seeded.count(Query(where=[ge("lease.expires_at", 0.0)])) == 4
    assert await seeded.count(Query(where=[eq("status", "none")])) == 0


async def test_count_ignores_a_continuation(seeded: Container) -> None:
    """count() counts every match even when given a query carrying a continuation."""
    first = await seeded.query(Query(limit=2))
    assert await seeded.count(Query(limit=2, continuation=first.continuation)) == 7


async def test_query_results_reflect_updates_and_deletes(seeded: Container) -> None:
    """Queries see the latest writes: updated values move documents, deleted ones disappear."""
    doc = await seeded.get("e", "q2")
    result = await seeded.update_if_match("e", "q2", doc, Patch(set={"priority": 100}))
    assert result.ok
    await seeded.delete("d", "q2")
    assert await ids(seeded, Query(order_by=["-priority", "created_at"], limit=10)) == list("ebafc")
    assert await ids(seeded, Query(where=[gt("priority", 5)])) == ["e"]


async def test_query_returns_full_documents_with_their_etags(seeded: Container) -> None:
    """Query items are whole documents whose etags are the stored ones."""
    page = await seeded.query(Query(where=[eq("id", "a")]))
    (doc,) = page.items
    assert doc == await seeded.get("a", "q1")
    assert doc.body == SEED[0]
