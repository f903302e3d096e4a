"""SQL text for the SQLite provider: schema, field columns, patches and portable queries.

Every function here is pure (spec or plan in, SQL text and parameters out), so
the compiled text can be cached and the backend stays about connections.

The document is the JSON ``body``; each declared field (other than ``id`` and the
partition key) also has a plain column of its own (``field_column``), written
from Python beside the body on every write, and the indexes and queries use
those columns: SQLite never parses a body to maintain an index or answer a
query. Field paths are validated by ``ContainerSpec`` (letters, digits, ``_``,
dots), so embedding them in SQL text is safe; values are always bound.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from ..errors import InvalidRequestError
from ..model import ContainerSpec, Index, Not, Patch, Scalar, allowed
from ..query import Filter, QueryPlan

__all__ = [
    "TOO_LARGE",
    "Compiled",
    "backfill_sql",
    "column",
    "field_column",
    "field_columns",
    "field_values",
    "insert_rows_sql",
    "insert_sql",
    "index_names",
    "patch_columns",
    "patch_sql",
    "query_branches",
    "count_sql",
    "schema_sql",
    "size_trigger",
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


@lru_cache(maxsize=1024)
def field_column(path: str) -> str:
    """The column name of a declared field path: ``f_`` then the path, escaped.

    ``_`` becomes ``__``, ``.`` becomes ``_0`` and an upper-case letter ``X``
    becomes ``_x``: the result is lower-case letters, digits and ``_`` only, and
    distinct paths give distinct names even though SQLite compares column names
    without regard to case (``lease.expires_at`` → ``f_lease_0expires__at``).
    """
    out = ["f_"]
    for char in path:
        if char == "_":
            out.append("__")
        elif char == ".":
            out.append("_0")
        elif char.isupper():
            out.append("_" + char.lower())
        else:
            out.append(char)
    return "".join(out)


def _declared(spec: ContainerSpec) -> list[str]:
    """The declared field paths that have a column: all but ``id`` and the partition key."""
    return [p for p in spec.fields if p != "id" and p != spec.partition_key]


def column(spec: ContainerSpec, path: str) -> str:
    """The SQL column of a declared field path (``id``, ``pk`` or a field column)."""
    if path == "id":
        return "id"
    if path == spec.partition_key:
        return "pk"
    return field_column(path)


def bind(value: Any) -> Any:
    """A value as its column holds it: booleans as 1/0, as ``json_extract`` reads them."""
    return int(value) if isinstance(value, bool) else value


class _Layout(NamedTuple):
    """A spec's field columns, precomputed for the write path."""

    columns: tuple[str, ...]
    """Every field column, in ``_declared`` order."""
    steps: tuple[tuple[str, ...], ...]
    """The path of each column's field, split at the dots."""
    by_root: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]
    """Top-level key → (column, path steps) of the declared fields under it."""
    conditions: frozenset[str]
    """Fields a partial index's ``where`` names with values: their equality filters are
    written inline."""
    excluded: dict[str, tuple[Scalar, ...]]
    """Field → the values a partial index's ``Not`` condition on it leaves out."""
    tops: tuple[str, ...] | None
    """Every declared field's name when all are top-level (the common case), else None."""
    plain: tuple[str, ...] | None
    """``tops`` when none of them is declared ``bool``: their values bind as they are."""
    insert: str
    """The INSERT of a whole document that writes nothing when its id is taken."""
    upsert: str
    """The INSERT of a whole document that overwrites one with its id."""


_LAYOUTS: dict[int, tuple[ContainerSpec, _Layout]] = {}


def _layout(spec: ContainerSpec) -> _Layout:
    # Keyed by identity (a spec holds a dict, so it is not hashable); the entry
    # keeps its spec alive, so the id cannot be reused while it is cached.
    entry = _LAYOUTS.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    paths = _declared(spec)
    steps = tuple(tuple(p.split(".")) for p in paths)
    by_root: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for path, parts in zip(paths, steps, strict=True):
        by_root.setdefault(parts[0], []).append((field_column(path), parts))
    columns = tuple(field_column(p) for p in paths)
    tops = tuple(paths) if all(len(parts) == 1 for parts in steps) else None
    layout = _Layout(
        columns,
        steps,
        {root: tuple(cols) for root, cols in by_root.items()},
        frozenset(n for index in spec.indexes for n, c in index.where if not isinstance(c, Not)),
        _excluded(spec),
        tops,
        None if tops is None or "bool" in (spec.fields[p] for p in tops) else tops,
        _insert_text(table(spec), columns, upsert=False),
        _insert_text(table(spec), columns, upsert=True),
    )
    if len(_LAYOUTS) >= 256:
        _LAYOUTS.clear()
    _LAYOUTS[id(spec)] = (spec, layout)
    return layout


def _insert_text(name: str, cols: tuple[str, ...], *, upsert: bool) -> str:
    names = "".join(f", {c}" for c in cols)
    marks = ", ?" * len(cols)
    sql = f"INSERT INTO {name} (pk, id, etag, body{names}) VALUES (?, ?, ?, ?{marks}) "
    if not upsert:
        return sql + "ON CONFLICT DO NOTHING"
    sets = "".join(f", {c} = excluded.{c}" for c in cols)
    return (
        sql + f"ON CONFLICT (pk, id) DO UPDATE SET etag = excluded.etag, body = excluded.body{sets}"
    )


def insert_sql(spec: ContainerSpec, *, upsert: bool) -> str:
    """The INSERT of a whole document (``pk, id, etag, body`` then ``field_values``).

    Without ``upsert`` it writes nothing when the id is taken (its row count says so);
    with it, it overwrites that document.
    """
    layout = _layout(spec)
    return layout.upsert if upsert else layout.insert


def insert_rows_sql(spec: ContainerSpec, rows: int) -> str:
    """The INSERT of ``rows`` whole documents in one statement: ``VALUES (…), (…), …``.

    One bind and one ``sqlite3_step`` do every row's work (``executemany`` binds and
    steps each row from Python). No ``ON CONFLICT``: a taken id fails the statement,
    and SQLite undoes all of its rows (ABORT).
    """
    return _rows_text(_layout(spec).insert, rows)


@lru_cache(maxsize=256)
def _rows_text(insert: str, rows: int) -> str:
    head, _, rest = insert.partition(" VALUES ")
    row = rest.partition(" ON CONFLICT ")[0]
    return f"{head} VALUES {', '.join([row] * rows)}"


def _excluded(spec: ContainerSpec) -> dict[str, tuple[Scalar, ...]]:
    out: dict[str, tuple[Scalar, ...]] = {}
    for index in spec.indexes:
        for name, condition in index.where:
            if isinstance(condition, Not) and condition.value not in out.get(name, ()):
                out[name] = (*out.get(name, ()), condition.value)
    return out


def _value_at(node: Any, steps: tuple[str, ...]) -> Any:
    """The column value at ``steps`` below ``node``: a scalar, or None when absent.

    Declared fields hold their declared (scalar) type when present: ``Container``
    validates every body and patch before a provider sees it. Booleans become
    1/0, as ``json_extract`` reads them.
    """
    for step in steps:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return int(node) if isinstance(node, bool) else node


def field_values(spec: ContainerSpec, body: Mapping[str, Any]) -> list[Any]:
    """The field columns' values for a whole body, in ``field_columns(spec)`` order."""
    if not isinstance(body, dict):
        body = dict(body)
    layout = _layout(spec)
    if layout.plain is not None:
        return list(map(body.get, layout.plain))
    if layout.tops is not None:
        # One look-up a field instead of a walk (a job's insert has nine of them).
        return [int(v) if v is True or v is False else v for v in map(body.get, layout.tops)]
    return [_value_at(body, steps) for steps in layout.steps]


def patch_columns(spec: ContainerSpec, patch: Patch) -> tuple[tuple[str, ...], list[Any]]:
    """The field columns a patch changes and their new values.

    A set top-level key assigns the columns of the declared fields under it (from
    the Python value: ``lease`` set to a dict assigns ``lease.expires_at``); a
    removed key sets them NULL. Other columns are not assigned at all, so SQLite
    leaves the indexes built only on them untouched.
    """
    roots = spec.declared_roots
    if roots.isdisjoint(patch.set) and (not patch.remove or roots.isdisjoint(patch.remove)):
        return (), []
    by_root = _layout(spec).by_root
    cols: list[str] = []
    values: list[Any] = []
    for key, value in patch.set.items():
        for col, steps in by_root.get(key, ()):
            cols.append(col)
            values.append(_value_at({key: value}, steps))
    for key in patch.remove:
        for col, _ in by_root.get(key, ()):
            cols.append(col)
            values.append(None)
    return tuple(cols), values


def _index_sql(
    spec: ContainerSpec, name: str, cols: Sequence[str], where: str = ""
) -> tuple[str, str]:
    # The condition is part of the name: a changed one is a new index (created) and
    # the old one is stale (dropped by the migration).
    digest = hashlib.sha256("|".join([*cols, *([where] if where else [])]).encode()).hexdigest()
    index = f"ix_{spec.name}_{name}_{digest[:12]}"
    create = f'CREATE INDEX IF NOT EXISTS "{index}" ON {table(spec)} ({", ".join(cols)})'
    return index, create + (f" WHERE {where}" if where else "")


def _literal(value: Scalar) -> str:
    """A SQL literal of a declared field's value, as its column holds it (bool as 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def partial_where(spec: ContainerSpec, index: Index) -> str:
    """The WHERE clause of a partial index ("" for a full one).

    SQLite uses a partial index only for a query whose WHERE implies it: a
    ``col = 'v'`` term by the same equality (a bound parameter counts: SQLite
    re-plans the statement when its value changes), ``(col = 'a' OR col = 'b')``
    by either equality, a ``col IS NOT NULL`` term by
    any comparison on the column, which the query compiler always emits for a
    filtered or sorted field. A ``Not`` condition is ``col <> 'v'``, which only that
    very term implies: the query compiler adds it beside an ``eq`` filter on the
    column to another value (``_implied``).
    """
    terms: list[str] = []
    for name, condition in index.where:
        if isinstance(condition, Not):
            terms.append(f"{column(spec, name)} <> {_literal(condition.value)}")
            continue
        col, values = column(spec, name), allowed(condition)
        ors = " OR ".join(f"{col} = {_literal(v)}" for v in values)
        # Several values as OR terms, not IN: SQLite sees that ``col = 'v'`` implies
        # an OR holding that very term, but not that it implies an IN list.
        terms.append(ors if len(values) == 1 else f"({ors})")
    if index.sparse:
        # id and the partition key are never NULL (and no query compares them here).
        terms += [
            f"{column(spec, n)} IS NOT NULL"
            for n in index.names
            if n not in ("id", spec.partition_key)
        ]
    return " AND ".join(terms)


def _indexes(spec: ContainerSpec) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index the spec asks for."""
    out = [_index_sql(spec, "id", ["id", "pk"])] if spec.id_order else []
    for index in spec.indexes:
        cols = [f"{column(spec, n)} {d.upper()}" for n, d in index.fields]
        used = {column(spec, n) for n in index.names}
        tail = [c for c in ("id", "pk") if c not in used]
        where = partial_where(spec, index)
        out.append(_index_sql(spec, "f", cols + tail, where))
        if index.per_partition and index.names[0] != spec.partition_key:
            inner = ["pk", *cols, *([] if "id" in used else ["id"])]
            out.append(_index_sql(spec, "p", inner, where))
    return out


def index_names(spec: ContainerSpec) -> set[str]:
    """The names of the indexes ``schema_sql`` creates: any other ``ix_<name>_…`` is stale."""
    return {name for name, _ in _indexes(spec)}


def field_columns(spec: ContainerSpec) -> tuple[str, ...]:
    """The field column names of a spec, in ``field_values`` order."""
    return _layout(spec).columns


def backfill_sql(spec: ContainerSpec, paths: Sequence[str]) -> str:
    """One UPDATE filling the columns of ``paths`` from every stored body (a migration)."""
    sets = ", ".join(f"{field_column(p)} = json_extract(body, '$.{p}')" for p in paths)
    return f"UPDATE {table(spec)} SET {sets}"


TOO_LARGE = "fleet: document too large"
"""The message of the size trigger's ``RAISE(ABORT, …)``: a patch made the body too large."""


def size_trigger(spec: ContainerSpec) -> tuple[str, str]:
    """(name, CREATE TRIGGER statement) of the guard on a patched body's size.

    A patch is applied inside SQLite (``patch_sql``), so Python never sees the new
    body: this trigger aborts the one UPDATE that would make a body larger than
    the spec allows, and the statement writes nothing. It used to be a second
    ``json_set`` of the same patch in the UPDATE's WHERE, which cost more than
    the patch itself (docs/benchmarks.md: coordinator CPU per job 0.89x). The limit
    is part of the name: a changed one is a new trigger, the old one stale.
    """
    name = f"sz_{spec.name}_{spec.max_document_bytes}"
    return name, (
        f'CREATE TRIGGER IF NOT EXISTS "{name}" BEFORE UPDATE OF body ON {table(spec)} '
        f"WHEN length(CAST(NEW.body AS BLOB)) > {int(spec.max_document_bytes)} "
        f"BEGIN SELECT RAISE(ABORT, '{TOO_LARGE}'); END"
    )


def schema_sql(spec: ContainerSpec) -> list[str]:
    """Statements that create the container's table and indexes; each is idempotent.

    Each declared index becomes ``(fields..., id, pk)``: equality filters on a
    prefix, then the sort fields, then the tie-breakers, so a filtered, ordered
    top-k is a seek plus k steps in either direction. Unless it already leads
    with the partition key (or is declared ``per_partition=False``), a second copy
    ``(pk, fields..., id)`` serves the same query inside one partition without
    walking the other partitions' entries.
    An update touches an index only when it assigns one of the index's columns;
    ``(id, pk)`` serves the default id order across partitions and is never touched
    by an update (a spec without ``id_order`` has none: the primary key serves the
    id order inside one partition, the only one its queries may ask for).
    The field columns have no declared type (no affinity), so they hold exactly
    what ``json_extract`` would return: integers stay integers, reals reals.
    """
    fields = "".join(f"{c}, " for c in field_columns(spec))
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table(spec)} ("
        f"pk TEXT NOT NULL, id TEXT NOT NULL, etag TEXT NOT NULL, body TEXT NOT NULL, {fields}"
        "PRIMARY KEY (pk, id))"
    ]
    return statements + [sql for _, sql in _indexes(spec)] + [size_trigger(spec)[1]]


def sql_patchable(patch: Patch) -> bool:
    """True when every patched name is addressable by a SQLite JSON path."""
    return all(_PLAIN_KEY.match(k) for k in (*patch.set, *patch.remove))


@lru_cache(maxsize=256)
def _patch_text(
    name: str, n_set: int, n_remove: int, with_etag: bool, cols: tuple[str, ...]
) -> str:
    new = "body"
    if n_remove:
        new = f"json_remove({new}{', ?' * n_remove})"
    if n_set:
        new = f"json_set({new}{', ?, json(?)' * n_set})"
    cond = " AND etag = ?" if with_etag else ""
    assign = "".join(f", {c} = ?" for c in cols)
    # An oversized result is the size trigger's (``size_trigger``): it aborts this
    # statement, which then writes nothing.
    return (
        f"UPDATE {name} SET body = {new}, etag = ?{assign} "
        f"WHERE pk = ? AND id = ?{cond} RETURNING body"
    )


def patch_sql(
    spec: ContainerSpec,
    doc_id: str,
    partition_key: str,
    expected_etag: str | None,
    patch: Patch,
    new_etag: str,
) -> Compiled:
    """One UPDATE applying ``patch`` inside SQLite: no read, and atomic by construction.

    The body is patched by ``json_set``/``json_remove``; the field columns the
    patch changes are assigned from Python (``patch_columns``), the others not.
    """
    new_params: list[Any] = [f'$."{k}"' for k in patch.remove]
    for key, value in patch.set.items():
        new_params += [f'$."{key}"', _json(value)]
    cols, values = patch_columns(spec, patch)
    params: list[Any] = [*new_params, new_etag, *values, partition_key, doc_id]
    if expected_etag is not None:
        params.append(expected_etag)
    sql = _patch_text(
        table(spec), len(patch.set), len(patch.remove), expected_etag is not None, cols
    )
    return Compiled(sql, tuple(params))


def _json(value: Any) -> str:
    # orjson, like documents.dumps, so the patched text (and its size) is the same
    # byte for byte as the body apply_patch would make.
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a plain string
        raise InvalidRequestError(f"patch value is not JSON-serialisable: {exc}") from exc


def _where(
    spec: ContainerSpec, plan: QueryPlan, compared: Sequence[str] = (), pinned: Sequence[str] = ()
) -> tuple[list[str], list[Any]]:
    """The filter and partition conditions; ``compared`` names sort fields the caller compares.

    A document lacking a sort field is left out of an ordered query: ``IS NOT NULL``
    on each sort column that no condition already compares with a (never NULL)
    value. Only there: on a column that also has ``=`` SQLite would take the
    ``IS NOT NULL`` as the range to seek and sort what it found.

    ``pinned`` names fields the caller fixes with ``=`` (a keyset branch): a range
    filter on one of them is written ``+col <= ?``, which SQLite checks but never
    seeks on. Otherwise, with a partial index, it may seek the range instead of
    the equality and sort what it found.
    """
    conds: list[str] = []
    params: list[Any] = []
    if plan.partition_key is not None:
        conds.append("pk = ?")
        params.append(plan.partition_key)
    for f in plan.where:
        cond = _filter(spec, f, params)
        conds.append("+" + cond if f.field in pinned and f.op not in ("eq", "in") else cond)
    conds += _implied(spec, plan.where)
    if plan.explicit_order:
        skip = {*compared, *(f.field for f in plan.where)}
        cols = (column(spec, n) for n, _ in plan.sort if n not in skip)
        conds += [f"{c} IS NOT NULL" for c in cols if c not in ("id", "pk")]
    return conds, params


def _implied(spec: ContainerSpec, where: Sequence[Filter]) -> list[str]:
    """``col <> 'v'`` beside each ``eq`` filter on ``col`` to another value than ``v``.

    The filter implies it, but SQLite proves a query's WHERE implies a partial
    index's only term by term (``partial_where``): written out, it lets the query
    use an index whose ``Not("v")`` condition leaves out the documents holding
    ``v``. A literal, so the statement text does not change with the filter's value.
    """
    excluded = _layout(spec).excluded
    if not excluded:
        return []
    return [
        f"{column(spec, f.field)} <> {_literal(v)}"
        for f in where
        if f.op == "eq" and f.field in excluded
        for v in excluded[f.field]
        if f.value != v
    ]


def _filter(spec: ContainerSpec, f: Filter, params: list[Any]) -> str:
    col = column(spec, f.field)
    if f.op == "eq" and f.field in _layout(spec).conditions and "\x00" not in str(f.value):
        # Inline, not bound: to judge whether ``col = ?`` implies a partial index's
        # ``col = 'v'``, SQLite reads the bound value and then re-plans the statement
        # on every run (sqlite3VdbeSetVarmask), which doubled a claim query's cost.
        # Such fields are few-valued (a status), so the statement texts stay few.
        assert not isinstance(f.value, tuple)
        return f"{col} = {_literal(f.value)}"
    if f.op == "in":
        assert isinstance(f.value, tuple)
        params.extend(bind(v) for v in f.value)
        return f"{col} IN ({', '.join('?' * len(f.value))})"
    params.append(bind(f.value))
    return f"{col} {_CMP[f.op]} ?"


def _order(plan: QueryPlan, spec: ContainerSpec, depth: int = 0) -> str:
    # ORDER BY only what equalities leave open: a term an equality fixes adds
    # nothing to the order, and left out it cannot make SQLite sort the matches.
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
    head = f"SELECT id, pk, etag, body FROM {table(spec)}"
    limit, limit_params = (" LIMIT ?", (plan.fetch,)) if plan.fetch else ("", ())
    if plan.after is None:
        base, base_params = _where(spec, plan)
        where = f" WHERE {' AND '.join(base)}" if base else ""
        sql = f"{head}{where} ORDER BY {_order(plan, spec)}{limit}"
        return [Compiled(sql, (*base_params, *limit_params))]
    branches: list[Compiled] = []
    for depth in range(len(plan.sort) - 1, -1, -1):
        conds, params = _where(
            spec,
            plan,
            [n for n, _ in plan.sort[: depth + 1]],
            [n for n, _ in plan.sort[:depth]],
        )
        for (name, _), value in zip(plan.sort[:depth], plan.after, strict=False):
            conds.append(f"{column(spec, name)} = ?")
            params.append(bind(value))
        name, direction = plan.sort[depth]
        conds.append(f"{column(spec, name)} {'>' if direction == 'asc' else '<'} ?")
        params.append(bind(plan.after[depth]))
        sql = f"{head} WHERE {' AND '.join(conds)} ORDER BY {_order(plan, spec, depth)}{limit}"
        branches.append(Compiled(sql, (*params, *limit_params)))
    return branches
