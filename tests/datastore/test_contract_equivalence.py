"""Contract: the same documents and queries give the same answers on every provider.

Hypothesis generates a set of documents and a list of queries; each example
writes the documents to a fresh container on memory, SQLite and Cosmos, runs
every query on each (first page, every page concatenated through continuations,
and count), and compares the three answers with each other and with a plain
Python reading of the portable query semantics (query.py's docstring).

Examples are derandomised and not shrunk, so CI runs the same ones every time
and a failure is reported at once; set ``FLEET_EQUIVALENCE_EXAMPLES`` for more,
and ``FLEET_EQUIVALENCE_RANDOM=1`` to explore new examples and shrink failures.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any, get_args

import pytest
from fleet_datastore import Container, CosmosConfig, DocumentStore, Filter, Query
from fleet_datastore.documents import get_path
from fleet_datastore.query import Op
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import PROVIDERS, job_spec, open_provider

EXAMPLES = int(os.environ.get("FLEET_EQUIVALENCE_EXAMPLES", "30"))
RANDOM = os.environ.get("FLEET_EQUIVALENCE_RANDOM") == "1"

QUEUES = ("q1", "q2", "q3")
# A modest alphabet: mixed case, a digit, a space, punctuation Cosmos allows in ids.
ALPHABET = "abAB1 _-."
STATUSES = ("", "a", "b", "B", "aa", "ab", "a b", "queued", "leased")
# Small pools, so that sort keys tie and the id tie-break matters; extremes included.
INTS = (-(2**53 - 1), -1, 0, 1, 2**53 - 1)
FLOATS = (-1e300, -1, 0.0, 0.5, 1, 2.5, 1e300)

# Every valid ordering of job_spec(), with the direction of its tie-breakers: id,
# then the partition key; descending for the exact reverse of a declared index.
ORDERINGS: dict[tuple[str, ...], bool] = {
    (): False,
    ("id",): False,
    ("-id",): True,
    ("queue", "-priority", "created_at"): False,
    ("-queue", "priority", "-created_at"): True,
    ("-priority", "created_at"): False,
    ("priority", "-created_at"): True,
    ("created_at",): False,
    ("-created_at",): True,
    ("status", "lease.expires_at"): False,
    ("-status", "-lease.expires_at"): True,
    ("lease.expires_at",): False,
    ("-lease.expires_at",): True,
    ("score",): False,
    ("-score",): True,
    ("flag", "-score"): False,
    ("-flag", "score"): True,
    ("-priority", "created_at", "id"): False,
    ("priority", "-created_at", "-id"): True,
}

# No surrounding spaces: ids must not start or end with one.
_edge = st.sampled_from(ALPHABET.replace(" ", ""))
ids = _edge | st.builds(lambda a, b, c: a + b + c, _edge, st.text(ALPHABET, max_size=2), _edge)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": ids,
    "queue": st.sampled_from(QUEUES),
    "status": st.sampled_from(STATUSES),
    "priority": st.sampled_from(INTS),
    "created_at": st.sampled_from(FLOATS),
    "score": st.sampled_from(FLOATS) | st.sampled_from(INTS),
    "flag": st.booleans(),
    "lease.expires_at": st.sampled_from(FLOATS),
}


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value, sometimes None: the marker for "field absent"."""
    present = st.sampled_from([True, True, True, False])
    return present.flatmap(lambda p: strategy if p else st.none())


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    """0 to 24 job documents, unique by (queue, id), any declared field possibly absent."""
    size = draw(st.sampled_from([12, 16, 20, 24, 0, 1, 3, 8]))
    # Ids come from a pool smaller than the documents, so one id often appears in
    # several partitions and the partition-key tie-break gets exercised.
    pool = draw(st.lists(ids, min_size=1, max_size=max(1, size * 2 // 3), unique=True))
    keys = draw(st.permutations(list(itertools.product(pool, QUEUES))))[:size]
    docs = []
    for doc_id, queue in keys:
        body: dict[str, Any] = {"id": doc_id, "queue": queue}
        for name in ("status", "priority", "created_at", "score", "flag"):
            value = draw(_maybe(VALUES[name]))
            if value is not None:
                body[name] = value
        lease = draw(
            st.sampled_from(["absent", "null", "empty", "text", "value", "value", "value"])
        )
        if lease == "null":
            body["lease"] = None
        elif lease == "empty":
            body["lease"] = {}
        elif lease == "text":
            body["lease"] = "not an object"
        elif lease == "value":
            body["lease"] = {"expires_at": draw(VALUES["lease.expires_at"])}
        docs.append(body)
    return docs


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    """One filter of any operator on any declared field, with a value of the field's type."""
    name = draw(st.sampled_from(sorted(VALUES)))
    op: Op = draw(st.sampled_from(get_args(Op)))
    if op == "in":
        return Filter(name, "in", tuple(draw(st.lists(VALUES[name], min_size=1, max_size=3))))
    return Filter(name, op, draw(VALUES[name]))


@st.composite
def queries(draw: st.DrawFn) -> Query:
    """A valid portable query: filters, an index ordering, a partition and a limit."""
    return Query(
        where=draw(
            st.sampled_from([0, 0, 1, 1, 2, 3]).flatmap(
                lambda n: st.lists(filters(), min_size=n, max_size=n)
            )
        ),
        order_by=draw(st.sampled_from(sorted(ORDERINGS))),
        limit=draw(st.none() | st.integers(min_value=1, max_value=5)),
        partition_key=draw(st.none() | st.sampled_from(QUEUES)),
    )


# -- the reference reading of the portable query -----------------------------------------


def _matches(body: dict[str, Any], f: Filter) -> bool:
    value = get_path(body, f.field)
    if value is None:
        return False  # a document lacking a filtered field never matches
    if f.op == "eq":
        return bool(value == f.value)
    if f.op == "in":
        assert isinstance(f.value, tuple)
        return value in f.value
    ops = {
        "lt": value < f.value,
        "le": value <= f.value,
        "gt": value > f.value,
        "ge": value >= f.value,
    }
    return bool(ops[f.op])


def _value_at(name: str, doc: dict[str, Any]) -> Any:
    return get_path(doc, name)


def _where_holds(body: dict[str, Any], query: Query) -> bool:
    return (query.partition_key is None or body["queue"] == query.partition_key) and all(
        _matches(body, f) for f in query.where
    )


def expected_ids(docs: Sequence[dict[str, Any]], query: Query) -> list[tuple[str, str]]:
    """What every provider must answer: (partition key, id) of the matches, in order."""
    keys = [(k[1:], True) if k.startswith("-") else (k, False) for k in query.order_by]
    if keys and keys[-1][0] == "id":
        keys.pop()
    descending = ORDERINGS[tuple(query.order_by)]
    keys.append(("id", descending))
    if "queue" not in {name for name, _ in keys}:
        keys.append(("queue", descending))
    hits = [
        d
        for d in docs
        if _where_holds(d, query) and all(get_path(d, name) is not None for name, _ in keys)
    ]
    for name, descending in reversed(keys):  # stable sorts, least significant key first
        hits.sort(key=functools.partial(_value_at, name), reverse=descending)
    return [(d["queue"], d["id"]) for d in hits]


def expected_count(docs: Sequence[dict[str, Any]], query: Query) -> int:
    """What count() must answer: matches of the filters and partition, ordering ignored."""
    return sum(_where_holds(d, query) for d in docs)


# -- running one example everywhere ------------------------------------------------------


async def _answer(container: Container, query: Query) -> dict[str, Any]:
    first = await container.query(query)
    pages = [first]
    while pages[-1].continuation is not None:
        assert len(pages) <= 100, "continuation never ends"
        pages.append(
            await container.query(
                Query(
                    where=query.where,
                    order_by=query.order_by,
                    limit=query.limit,
                    partition_key=query.partition_key,
                    continuation=pages[-1].continuation,
                )
            )
        )
    return {
        "first": [(d.partition_key, d.id) for d in first.items],
        "first_has_more": first.continuation is not None,
        "all": [(d.partition_key, d.id) for p in pages for d in p.items],
        "bodies": [d.body for p in pages for d in p.items],
        "pages": [len(p.items) for p in pages],
        "count": await container.count(query),
    }


_names = itertools.count()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    # Shrinking re-runs three providers per attempt and can take minutes; CI reports
    # the failing example as found (the message names the query and every answer).
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if RANDOM else [])],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    docs=documents(),
    query_list=st.lists(queries(), min_size=1, max_size=8),
    page_size=st.integers(min_value=1, max_value=5),
)
async def test_every_provider_answers_random_queries_identically(
    tmp_path_factory: pytest.TempPathFactory,
    cosmos_config: Callable[[], CosmosConfig],
    docs: list[dict[str, Any]],
    query_list: list[Query],
    page_size: int,
) -> None:
    """Random documents and queries give the same ids, pages, bodies and counts everywhere."""
    directory = tmp_path_factory.mktemp("equivalence")
    stores: dict[str, DocumentStore] = {}
    try:
        for name in PROVIDERS:
            stores[name] = await open_provider(name, directory=directory, cosmos=cosmos_config)
        spec = job_spec(f"eq{next(_names)}")
        containers = {}
        for name, store in stores.items():
            containers[name] = await store.create_container_if_not_exists(spec)
            for body in docs:
                await containers[name].create(body)
        by_key = {(d["queue"], d["id"]): d for d in docs}
        # Every ordering unfiltered as well, so that each tie-break meets ties.
        every_order = [Query(order_by=order, limit=page_size) for order in ORDERINGS]
        for query in [*query_list, *every_order]:
            want = expected_ids(docs, query)
            limit = query.limit or len(want) or 1
            reference = {
                "first": want[:limit],
                "first_has_more": len(want) > limit,
                "all": want,
                "bodies": [by_key[key] for key in want],
                "pages": [len(want[i : i + limit]) for i in range(0, len(want), limit)] or [0],
                "count": expected_count(docs, query),
            }
            answers = {name: await _answer(c, query) for name, c in containers.items()}
            differing = {name: a for name, a in answers.items() if a != reference}
            assert not differing, (
                f"providers {sorted(differing)} differ from the reference for {query}:\n"
                f"reference: {reference}\n"
                + "\n".join(f"{name}: {a}" for name, a in differing.items())
            )
    finally:
        for store in stores.values():
            await store.close()
