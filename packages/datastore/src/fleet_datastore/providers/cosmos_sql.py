"""Cosmos DB SQL for the portable query, and the indexing policy a container spec needs.

Pure functions, no I/O: ``compile_query`` and ``compile_count`` turn a validated
``QueryPlan`` into parameterised SQL whose results equal the memory and SQLite
providers'; ``indexing_policy`` is the policy the container is created with (and
what infrastructure templates should declare).
"""

from __future__ import annotations

import json
from typing import Any

from ..model import ASC, ContainerSpec, Direction
from ..query import Filter, QueryPlan

__all__ = [
    "compile_count",
    "compile_query",
    "composite_indexes",
    "effective_sort",
    "field_ref",
    "indexing_policy",
]

Params = list[dict[str, Any]]

_ORDER = {"asc": "ascending", "desc": "descending"}
_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def field_ref(path: str) -> str:
    """``c["a"]["b"]`` for ``a.b``: bracket form, so reserved words (value, order…) are safe."""
    return "c" + "".join(f"[{json.dumps(part)}]" for part in path.split("."))


def _index_path(path: str) -> str:
    return "/" + "/".join(path.split("."))


def effective_sort(
    sort: tuple[tuple[str, Direction], ...],
) -> tuple[tuple[int, str, Direction], ...]:
    """The sort keys with their positions, each field once: a repeat can never decide.

    Cosmos rejects an ORDER BY or composite index naming a path twice (possible
    when a declared index names ``id`` itself).
    """
    seen: set[str] = set()
    out: list[tuple[int, str, Direction]] = []
    for position, (name, direction) in enumerate(sort):
        if name not in seen:
            seen.add(name)
            out.append((position, name, direction))
    return tuple(out)


def _composite(keys: tuple[tuple[str, Direction], ...]) -> tuple[tuple[str, Direction], ...]:
    return tuple((n, d) for _, n, d in effective_sort(keys))


def composite_indexes(spec: ContainerSpec) -> list[list[dict[str, str]]]:
    """The composite indexes every ordering ``query.plan_query`` accepts needs.

    A sort is an ``order_by`` that is a suffix of a declared index, or its exact
    reverse, followed by ``id`` and (unless the suffix names it) the partition key
    as tie-breakers, ascending for the as-declared order; with no ``order_by`` it
    is ``id``, partition key. Cosmos serves a multi-path ORDER BY from a composite
    index with exactly those paths and orders, or from its exact reverse, so one
    as-declared composite per suffix covers both directions.
    """
    pk = spec.partition_key
    wanted: list[tuple[tuple[str, Direction], ...]] = [_composite((("id", ASC), (pk, ASC)))]
    for index in spec.indexes:
        for start in range(len(index.fields)):
            suffix = index.fields[start:]
            ties = (("id", ASC),) if pk in {n for n, _ in suffix} else (("id", ASC), (pk, ASC))
            wanted.append(_composite((*suffix, *ties)))
    out: list[list[dict[str, str]]] = []
    seen: set[tuple[tuple[str, Direction], ...]] = set()
    for keys in wanted:
        if len(keys) >= 2 and keys not in seen:  # one path: the range index serves it
            seen.add(keys)
            out.append([{"path": _index_path(n), "order": _ORDER[d]} for n, d in keys])
    return out


def indexing_policy(spec: ContainerSpec) -> dict[str, Any]:
    """The indexing policy for ``spec``: only the paths a query may use, plus composites.

    Queries may filter and sort only on declared fields, ``id`` and the partition
    key, so those are the only range-indexed paths; everything else (payloads,
    results, histories) is excluded, which keeps each write's RU charge independent
    of how large or deep those bodies are.
    """
    paths = sorted({"id", spec.partition_key, *spec.fields})
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": f"{_index_path(p)}/?"} for p in paths],
        "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
        "compositeIndexes": composite_indexes(spec),
    }


class _Sql:
    """Accumulates parameters while clauses are written."""

    def __init__(self) -> None:
        self.params: Params = []

    def param(self, value: Any) -> str:
        name = f"@p{len(self.params)}"
        self.params.append({"name": name, "value": value})
        return name

    def condition(self, f: Filter) -> str:
        ref = field_ref(f.field)
        # No IS_DEFINED guard is needed: in Cosmos SQL a comparison with an
        # undefined value is undefined, and WHERE keeps only true rows, so a
        # document lacking the field never matches, as on every provider.
        if f.op == "eq":
            return f"{ref} = {self.param(f.value)}"
        if f.op == "in":
            values = f.value if isinstance(f.value, tuple) else (f.value,)
            return f"{ref} IN ({', '.join(self.param(v) for v in values)})"
        return f"{ref} {_COMPARE[f.op]} {self.param(f.value)}"

    def after(self, sort: tuple[tuple[str, Direction], ...], key: tuple[Any, ...]) -> str:
        # Keyset position: (a > x) OR (a = x AND ((b > y) OR (b = y AND ...))),
        # with < for descending keys, so only rows strictly after the key remain.
        clause = ""
        for (name, direction), value in reversed(list(zip(sort, key, strict=True))):
            ref = field_ref(name)
            p = self.param(value)
            step = f"{ref} {'>' if direction == ASC else '<'} {p}"
            clause = f"({step} OR ({ref} = {p} AND {clause}))" if clause else f"({step})"
        return clause


def _where(sql: _Sql, plan: QueryPlan, *, ordered: bool) -> str:
    parts = [sql.condition(f) for f in plan.where]
    keys = effective_sort(plan.sort)
    if ordered and plan.explicit_order:
        # An ordered query leaves out documents lacking a sort field (the portable
        # rule); Cosmos would otherwise sort undefined first.
        # The trailing tie-breakers (id, partition key) are always defined.
        ordered_by = {n for n, _ in plan.sort[: len(plan.sort) - plan.ties]}
        parts.extend(f"IS_DEFINED({field_ref(n)})" for _, n, _ in keys if n in ordered_by)
    if ordered and plan.after is not None:
        after = plan.after
        parts.append(
            sql.after(tuple((n, d) for _, n, d in keys), tuple(after[i] for i, _, _ in keys))
        )
    return f" WHERE {' AND '.join(parts)}" if parts else ""


def compile_query(plan: QueryPlan) -> tuple[str, Params]:
    """``SELECT TOP @n * FROM c WHERE … ORDER BY …`` and its parameters for ``plan``."""
    sql = _Sql()
    top = f"TOP {sql.param(plan.fetch)} " if plan.fetch is not None else ""
    where = _where(sql, plan, ordered=True)
    order = ", ".join(
        f"{field_ref(n)} {'ASC' if d == ASC else 'DESC'}" for _, n, d in effective_sort(plan.sort)
    )
    return f"SELECT {top}* FROM c{where} ORDER BY {order}", sql.params


def compile_count(plan: QueryPlan) -> tuple[str, Params]:
    """``SELECT VALUE COUNT(1) FROM c WHERE …`` and its parameters for ``plan``."""
    sql = _Sql()
    return f"SELECT VALUE COUNT(1) FROM c{_where(sql, plan, ordered=False)}", sql.params
