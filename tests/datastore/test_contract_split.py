"""Contract: ``split_in`` answers an ``in_`` as one query per value, merged, on every provider.

The answer, its pages and its continuations are those of the query without
``split_in``: the same documents in the query's order (ties by id, then
partition key), each page at most ``limit``, every value's query resuming
strictly after the page's last document. That one shared position is what keeps
a document that changes value between pages from being returned twice or
skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
from fleet_datastore import (
    Container,
    ContainerSpec,
    DocumentStore,
    Filter,
    Index,
    InvalidContinuationError,
    InvalidRequestError,
    Query,
    eq,
    in_,
)
from fleet_datastore.query import plan_query, split_plans

STATUSES = ("queued", "leased", "done")

SPEC = ContainerSpec(
    name="split",
    partition_key="pk",
    fields={"queue": "str", "status": "str", "priority": "int", "created_at": "float"},
    indexes=(
        # As the coordinator's jobs: no index without ``status`` serves the order, and
        # each value's documents sit in a partial index the ``in_`` cannot use.
        Index.of("queue", "status", "created_at", where={"status": ("queued", "done")}),
        Index.of("status", "created_at", where={"status": ("queued", "done")}),
        Index.of("status", "created_at", where={"status": "leased"}),
        Index.of("status", "-priority", "created_at"),
    ),
)


def _body(i: int) -> dict[str, Any]:
    # Ids repeat across partitions and created_at repeats often: ties by id, then pk.
    return {
        "id": f"d{i % 20:02d}",
        "pk": f"p{i // 20}",
        "queue": f"q{i % 2}",
        "status": STATUSES[i % 3],
        "priority": i % 4,
        "created_at": float(i % 7),
    }


@pytest.fixture
async def split(store: DocumentStore) -> Container:
    """The container holding 60 documents over three statuses, two queues, three partitions."""
    c = await store.create_container_if_not_exists(SPEC)
    for i in range(60):
        await c.create(_body(i))
    return c


def _brute(
    docs: list[dict[str, Any]], where: list[Filter], order_by: list[str]
) -> list[tuple[str, str]]:
    """What the query must return: filter and sort in Python, ties by id then pk."""

    def keeps(d: dict[str, Any]) -> bool:
        for f in where:
            values = f.value if isinstance(f.value, tuple) else (f.value,)
            if d[f.field] not in values:
                return False
        return True

    kept = [d for d in docs if keeps(d)]
    reverse = order_by[0].startswith("-") and len(order_by) == 1  # the reversed index
    # Ties (id, pk) ascending for an as-declared order, descending for a reversed one:
    # sort stably from the last key to the first.
    kept.sort(key=lambda d: (d["id"], d["pk"]), reverse=reverse)
    for name in reversed(order_by):
        field = name.lstrip("-")

        def value(d: dict[str, Any], f: str = field) -> Any:
            return d[f]

        kept.sort(key=value, reverse=name.startswith("-"))
    return [(d["id"], d["pk"]) for d in kept]


CASES = [
    pytest.param([in_("status", STATUSES)], ["created_at"], id="every-status"),
    pytest.param(
        [eq("queue", "q1"), in_("status", STATUSES)], ["created_at"], id="queue-every-status"
    ),
    pytest.param([in_("status", ["done", "leased"])], ["created_at"], id="two-statuses"),
    pytest.param([in_("status", STATUSES)], ["-created_at"], id="reversed"),
    pytest.param(
        [in_("status", ["leased", "queued", "leased", "gone"])],
        ["-priority", "created_at"],
        id="mixed-directions-repeated-and-absent-values",
    ),
]


async def _pages(c: Container, query: Query) -> list[list[tuple[str, str]]]:
    pages: list[list[tuple[str, str]]] = []
    continuation: str | None = None
    for _ in range(100):
        page = await c.query(
            Query(
                where=query.where,
                order_by=query.order_by,
                limit=query.limit,
                continuation=continuation,
                split_in=query.split_in,
            )
        )
        pages.append([(d.id, d.partition_key) for d in page.items])
        continuation = page.continuation
        if continuation is None:
            return pages
    raise AssertionError("the continuation never ended")


@pytest.mark.parametrize("limit", [1, 4, 7, None])
@pytest.mark.parametrize(("where", "order_by"), CASES)
async def test_a_split_query_pages_through_exactly_what_the_filters_select(
    split: Container, where: list[Filter], order_by: list[str], limit: int | None
) -> None:
    """Each value's documents interleaved in the query's order, each page at most ``limit``."""
    docs = [_body(i) for i in range(60)]
    expected = _brute(docs, where, order_by)
    assert expected  # the cases select something
    query = Query(where=where, order_by=order_by, limit=limit, split_in="status")
    pages = await _pages(split, query)
    assert [d for page in pages for d in page] == expected
    assert all(len(page) <= (limit or len(expected)) for page in pages)
    plain = await _pages(split, Query(where=where, order_by=order_by, limit=limit))
    assert pages == plain  # the same pages as without split_in


async def test_documents_changing_value_between_pages_come_exactly_once(
    split: Container,
) -> None:
    """Every value's query resumes after the page's last document, not after its own.

    Between pages the last document returned moves to the next status, and so
    does the next one to return. With a position per value, the first would come
    again from the status it moved to, whose own position was behind it.
    """
    docs = {(d["id"], d["pk"]): d for d in (_body(i) for i in range(60))}
    order = _brute(list(docs.values()), [in_("status", STATUSES)], ["created_at"])
    got: list[tuple[str, str]] = []
    continuation: str | None = None
    for _ in range(100):
        page = await split.query(
            Query(
                where=[in_("status", STATUSES)],
                order_by=["created_at"],
                limit=4,
                continuation=continuation,
                split_in="status",
            )
        )
        got.extend((d.id, d.partition_key) for d in page.items)
        continuation = page.continuation
        if continuation is None:
            break
        upcoming = order[len(got)] if len(got) < len(order) else None
        for key in (got[-1], upcoming):
            if key is None:
                continue
            body = docs[key]
            body["status"] = STATUSES[(STATUSES.index(body["status"]) + 1) % 3]
            await split.upsert(body)
    assert continuation is None
    assert got == order


def test_each_value_is_one_equality_query_from_the_same_position() -> None:
    """``split_plans``: the ``in_`` replaced by one ``eq`` per distinct value, all else kept."""
    first = Query(
        where=[eq("queue", "q1"), in_("status", ["leased", "queued", "leased"])],
        order_by=["created_at"],
        limit=3,
        split_in="status",
    )
    plan = plan_query(SPEC, first)
    plans = split_plans(plan)
    assert [p.where for p in plans] == [
        (eq("queue", "q1"), eq("status", "leased")),
        (eq("queue", "q1"), eq("status", "queued")),
    ]
    assert {(p.sort, p.limit, p.after, p.split) for p in plans} == {
        (plan.sort, 3, plan.after, None)
    }


async def test_split_in_needs_one_in_filter_and_tokens_stay_bound_to_their_query(
    split: Container,
) -> None:
    """``split_in`` without an ``in_`` on its field is refused; a foreign token too."""
    for where, field in (
        ([eq("status", "done")], "status"),
        ([in_("status", STATUSES)], "queue"),
        ([in_("status", STATUSES), in_("status", ["done"])], "status"),
    ):
        with pytest.raises(InvalidRequestError):
            await split.query(Query(where=where, order_by=["created_at"], split_in=field))
    query = Query(
        where=[eq("queue", "q0"), in_("status", STATUSES)],
        order_by=["created_at"],
        limit=2,
        split_in="status",
    )
    token = (await split.query(query)).continuation
    assert token is not None
    other = Query(
        where=[eq("queue", "q1"), in_("status", STATUSES)],
        order_by=["created_at"],
        limit=2,
        continuation=token,
        split_in="status",
    )
    with pytest.raises(InvalidContinuationError):
        await split.query(other)
