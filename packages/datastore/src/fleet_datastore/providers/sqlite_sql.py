"""SQL text for the SQLite provider: schema, expression indexes, patches and portable queries.

Every function here is pure (spec or plan in, SQL text and parameters out), so
the compiled text can be cached and the backend stays about connections.

Declared fields live inside the JSON ``body`` and are read with
``json_extract(body, '$.path')``; the same expression text is used in the index
definitions and in queries, which is what lets SQLite match one to the other.
Field paths are validated by ``ContainerSpec`` (letters, digits, ``_``, dots), so
embedding them as SQL literals is safe; values are always bound.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from ..errors import InvalidRequestError
from ..model import ContainerSpec, Patch
from ..query import Filter, QueryPlan

__all__ = [
    "Compiled",
    "column",
    "patch_sql",
    "query_branches",
    "count_sql",
    "schema_sql",
    "sql_patchable",
    "table",
]

_CMP = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# Keys SQLite 3.40's JSON path can address exactly: printable ASCII without the
# quote and backslash, whose JSON text is the key itself (no escapes to mismatch).
_PLAIN_KEY = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]+$")


@dataclass(frozen=True, slots=True)
class Compiled:
    """SQL text with its positional parameters."""

    sql: str
    params: tuple[Any, ...]


def table(spec: ContainerSpec) -> str:
    """The quoted table name of a container (names are validated: no quotes inside)."""
    return f'"doc_{spec.name}"'


def column(spec: ContainerSpec, path: str) -> str:
    """The SQL expression for a declared field path."""
    if path == "id":
        return "id"
    if path == spec.partition_key:
        return "pk"
    return f"json_extract(body, '$.{path}')"


def bind(value: Any) -> Any:
    """A filter value as SQLite sees it: json_extract yields 1/0 for JSON booleans."""
    return int(value) if isinstance(value, bool) else value


def _index_sql(spec: ContainerSpec, name: str, cols: Sequence[str]) -> str:
    digest = hashlib.sha256("|".join(cols).encode()).hexdigest()[:12]
    return (
        f'CREATE INDEX IF NOT EXISTS "ix_{spec.name}_{name}_{digest}" '
        f"ON {table(spec)} ({', '.join(cols)})"
    )


def schema_sql(spec: ContainerSpec) -> list[str]:
    """Statements that create the container's table and indexes; each is idempotent.

    Each declared index becomes ``(fields..., id, pk)``: equality filters on a
    prefix, then the sort fields, then the tie-breakers, so a filtered, ordered
    top-k is a seek plus k steps in either direction. Unless it already leads
    with the partition key (or is declared ``per_partition=False``), a second copy
    ``(pk, fields..., id)`` serves the same query inside one partition without
    walking the other partitions' entries.
    Updates only touch these when ``body`` changes; ``(id, pk)`` serves the
    default id order and is never touched by an update.
    """
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table(spec)} ("
        "pk TEXT NOT NULL, id TEXT NOT NULL, etag TEXT NOT NULL, body TEXT NOT NULL, "
        "PRIMARY KEY (pk, id))",
        _index_sql(spec, "id", ["id", "pk"]),
    ]
    for index in spec.indexes:
        cols = [f"{column(spec, n)} {d.upper()}" for n, d in index.fields]
        used = {column(spec, n) for n in index.names}
        tail = [c for c in ("id", "pk") if c not in used]
        statements.append(_index_sql(spec, "f", cols + tail))
        if index.per_partition and index.names[0] != spec.partition_key:
            inner = ["pk", *cols, *([] if "id" in used else ["id"])]
            statements.append(_index_sql(spec, "p", inner))
    return statements


def sql_patchable(patch: Patch) -> bool:
    """True when every patched name is addressable by a SQLite JSON path."""
    return all(_PLAIN_KEY.match(k) for k in (*patch.set, *patch.remove))


@lru_cache(maxsize=256)
def _patch_text(name: str, n_set: int, n_remove: int, with_etag: bool) -> str:
    new = "body"
    if n_remove:
        new = f"json_remove({new}{', ?' * n_remove})"
    if n_set:
        new = f"json_set({new}{', ?, json(?)' * n_set})"
    cond = " AND etag = ?" if with_etag else ""
    # The new body is computed twice (SET and the size guard) so that an oversized
    # result writes nothing in one statement; that costs less than a transaction.
    return (
        f"UPDATE {name} SET body = {new}, etag = ? "
        f"WHERE pk = ? AND id = ?{cond} AND length(CAST({new} AS BLOB)) <= ? "
        "RETURNING body"
    )


def patch_sql(
    spec: ContainerSpec,
    doc_id: str,
    partition_key: str,
    expected_etag: str | None,
    patch: Patch,
    new_etag: str,
) -> Compiled:
    """One UPDATE applying ``patch`` inside SQLite: no read, and atomic by construction."""
    new_params: list[Any] = [f'$."{k}"' for k in patch.remove]
    for key, value in patch.set.items():
        new_params += [f'$."{key}"', _json(value)]
    params: list[Any] = [*new_params, new_etag, partition_key, doc_id]
    if expected_etag is not None:
        params.append(expected_etag)
    params += [*new_params, spec.max_document_bytes]
    sql = _patch_text(table(spec), len(patch.set), len(patch.remove), expected_etag is not None)
    return Compiled(sql, tuple(params))


def _json(value: Any) -> str:
    # orjson, like documents.dumps, so the patched text (and its size) is the same
    # byte for byte as the body apply_patch would make.
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a plain string
        raise InvalidRequestError(f"patch value is not JSON-serialisable: {exc}") from exc


def _where(spec: ContainerSpec, plan: QueryPlan) -> tuple[list[str], list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    if plan.partition_key is not None:
        conds.append("pk = ?")
        params.append(plan.partition_key)
    for f in plan.where:
        conds.append(_filter(spec, f, params))
    if plan.explicit_order:
        # A document lacking a sort field is left out of an ordered query.
        cols = (column(spec, n) for n, _ in plan.sort)
        conds += [f"{c} IS NOT NULL" for c in cols if c not in ("id", "pk")]
    return conds, params


def _filter(spec: ContainerSpec, f: Filter, params: list[Any]) -> str:
    col = column(spec, f.field)
    if f.op == "in":
        assert isinstance(f.value, tuple)
        params.extend(bind(v) for v in f.value)
        return f"{col} IN ({', '.join('?' * len(f.value))})"
    params.append(bind(f.value))
    return f"{col} {_CMP[f.op]} ?"


def _order(plan: QueryPlan, spec: ContainerSpec, depth: int = 0) -> str:
    # ORDER BY only what equalities leave open: SQLite does not see that
    # `json_extract(...) = ?` makes a sort term constant, and would sort the matches.
    fixed = {f.field for f in plan.where if f.op == "eq"}
    fixed.update(name for name, _ in plan.sort[:depth])
    terms = [f"{column(spec, n)} {d.upper()}" for n, d in plan.sort if n not in fixed]
    return ", ".join(terms) or "id"


def count_sql(spec: ContainerSpec, plan: QueryPlan) -> Compiled:
    """``SELECT count(*)`` of the documents matching the plan's filters and partition."""
    conds, params = _where(spec, plan)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    return Compiled(f"SELECT count(*) FROM {table(spec)}{where}", tuple(params))


def query_branches(spec: ContainerSpec, plan: QueryPlan) -> list[Compiled]:
    """The SELECTs whose results, concatenated in order, are the plan's answer.

    Without a continuation that is one ordered SELECT. With one, the keyset
    condition "strictly after (v0, v1, ..., id, pk)" in mixed directions is split
    into disjoint ranges, deepest first: (= v0, = v1, ..., = id, > pk), ...,
    (> v0). Each is a plain index seek, unlike one OR-expanded condition, which
    SQLite could only answer by walking from the start of the range; and the
    ranges follow each other in sort order, so the caller concatenates them and
    stops at ``fetch``.
    """
    base, base_params = _where(spec, plan)
    head = f"SELECT id, pk, etag, body FROM {table(spec)}"
    limit, limit_params = (" LIMIT ?", (plan.fetch,)) if plan.fetch else ("", ())
    if plan.after is None:
        where = f" WHERE {' AND '.join(base)}" if base else ""
        sql = f"{head}{where} ORDER BY {_order(plan, spec)}{limit}"
        return [Compiled(sql, (*base_params, *limit_params))]
    branches: list[Compiled] = []
    for depth in range(len(plan.sort) - 1, -1, -1):
        conds, params = list(base), list(base_params)
        for (name, _), value in zip(plan.sort[:depth], plan.after, strict=False):
            conds.append(f"{column(spec, name)} = ?")
            params.append(bind(value))
        name, direction = plan.sort[depth]
        conds.append(f"{column(spec, name)} {'>' if direction == 'asc' else '<'} ?")
        params.append(bind(plan.after[depth]))
        sql = f"{head} WHERE {' AND '.join(conds)} ORDER BY {_order(plan, spec, depth)}{limit}"
        branches.append(Compiled(sql, (*params, *limit_params)))
    return branches
