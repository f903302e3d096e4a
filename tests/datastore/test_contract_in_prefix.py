"""Contract: an ``in_`` filter on an index's leading field, with an order on the rest.

Such a query reads one index range per value of the ``in_`` filter (a claim over
several queues is one), and the ranges must come out merged in the query's order,
with the same tie-breakers (id, then partition key) on every provider; never one
value's documents after another's.
"""

from __future__ import annotations

from typing import Any

import pytest
from fleet_datastore import Container, Filter, Query, eq, in_

from .conftest import job

# Queue order (q1 < q2 < q3) disagrees with the sort order, and the sort keys tie:
# c and e tie on priority and created_at (id decides), the three "same" tie on
# everything but the partition key (it decides). x is in a queue left out below.
DOCS: list[dict[str, Any]] = [
    job("a", "q1", priority=0, created_at=1.0, lease={"expires_at": 5.0}),
    job("b", "q2", priority=0, created_at=2.0, status="leased", lease={"expires_at": 1.0}),
    job("c", "q2", priority=1, created_at=3.0, lease={"expires_at": 5.0}),
    job("d", "q1", priority=5, created_at=4.0, status="leased", lease={"expires_at": 9.0}),
    job("e", "q3", priority=1, created_at=3.0, status="failed", lease={"expires_at": 0.5}),
    job("same", "q1", priority=2, created_at=1.0, status="leased", lease={"expires_at": 5.0}),
    job("same", "q2", priority=2, created_at=1.0, lease={"expires_at": 5.0}),
    job("same", "q3", priority=2, created_at=1.0, status="leased", lease={"expires_at": 5.0}),
    job("x", "q4", priority=9, created_at=0.0, lease={"expires_at": 0.0}),
]

# (id, queue) in the order each query must return them.
BY_PRIORITY = [
    ("d", "q1"),
    ("same", "q1"),
    ("same", "q2"),
    ("same", "q3"),
    ("c", "q2"),
    ("e", "q3"),
    ("a", "q1"),
    ("b", "q2"),
]
BY_EXPIRY = [  # status in (leased, queued) ORDER BY lease.expires_at, id, queue
    ("x", "q4"),
    ("b", "q2"),
    ("a", "q1"),
    ("c", "q2"),
    ("same", "q1"),
    ("same", "q2"),
    ("same", "q3"),
    ("d", "q1"),
]

CASES = [
    pytest.param(
        [in_("queue", ["q3", "q1", "q2"])], ["-priority", "created_at"], BY_PRIORITY, id="pk-prefix"
    ),
    pytest.param(
        [in_("queue", ["q3", "q1", "q2"])],
        ["priority", "-created_at"],
        BY_PRIORITY[::-1],
        id="pk-prefix-reversed",
    ),
    pytest.param(
        [in_("queue", ["q1", "q2", "q3"]), eq("status", "queued")],
        ["-priority", "created_at"],
        [("same", "q2"), ("c", "q2"), ("a", "q1")],
        id="pk-prefix-filtered",
    ),
    pytest.param(
        [in_("status", ["queued", "leased"])], ["lease.expires_at"], BY_EXPIRY, id="field-prefix"
    ),
    pytest.param(
        [in_("status", ["queued", "leased"])],
        ["-lease.expires_at"],
        BY_EXPIRY[::-1],
        id="field-prefix-reversed",
    ),
]


@pytest.fixture
async def filled(jobs: Container) -> Container:
    """The jobs container holding DOCS."""
    for body in DOCS:
        await jobs.create(body)
    return jobs


@pytest.mark.parametrize(("where", "order_by", "expected"), CASES)
async def test_in_over_an_index_prefix_returns_one_order_across_its_values(
    filled: Container, where: list[Filter], order_by: list[str], expected: list[tuple[str, str]]
) -> None:
    """The documents of every value come interleaved in the query's order, ties by id then pk."""
    page = await filled.query(Query(where=where, order_by=order_by))
    assert page.continuation is None
    assert [(d.id, d.partition_key) for d in page.items] == expected
    assert await filled.count(Query(where=where)) == len(expected)


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
@pytest.mark.parametrize(("where", "order_by", "expected"), CASES)
async def test_in_over_an_index_prefix_pages_through_the_merge_exactly_once(
    filled: Container,
    where: list[Filter],
    order_by: list[str],
    expected: list[tuple[str, str]],
    limit: int,
) -> None:
    """Continuations resume the merged order, each page cutting across the values' ranges."""
    got: list[tuple[str, str]] = []
    continuation: str | None = None
    for _ in range(len(expected) + 1):
        page = await filled.query(
            Query(where=where, order_by=order_by, limit=limit, continuation=continuation)
        )
        assert len(page.items) <= limit
        got.extend((d.id, d.partition_key) for d in page.items)
        continuation = page.continuation
        if continuation is None:
            break
    assert continuation is None, "the continuation never ended"
    assert got == expected
