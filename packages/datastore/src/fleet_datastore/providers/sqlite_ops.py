"""Statements of the SQLite provider, each run on one connection inside a worker thread.

These functions are synchronous and take the connection first; ``sqlite.py``
runs them off the event loop and translates driver errors around every call.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from ..backend import PreparedOp
from ..batch import CreateOp, DeleteOp, PatchOp, ReadOp, ReplaceOp, UpsertOp
from ..documents import PreparedDocument, apply_patch, loads
from ..errors import (
    AlreadyExistsError,
    BatchError,
    DatastoreError,
    DocumentTooLargeError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
)
from ..model import CONFLICT, NOT_FOUND, ContainerSpec, Document, Patch, UpdateResult
from ..query import QueryPlan
from .sqlite_sql import (
    TOO_LARGE,
    backfill_sql,
    count_sql,
    field_column,
    field_columns,
    field_values,
    index_names,
    insert_rows_sql,
    insert_sql,
    patch_columns,
    patch_sql,
    query_branches,
    schema_sql,
    size_trigger,
    sql_patchable,
    table,
)

__all__ = [
    "batch",
    "count",
    "delete",
    "ensure",
    "get",
    "insert",
    "patch_document",
    "query",
    "replace",
    "run_group",
    "update_if_match",
    "upsert",
]


_ETAGS_AHEAD = 64
"""Etags drawn from the OS at once: one ``os.urandom`` call was ~1.5 µs of every write."""

_etags: deque[str] = deque()
# A forked child must not hand out the etags its parent will: etags are unique
# across processes (docs/datastore.md), and a compare-and-swap relies on it.
os.register_at_fork(after_in_child=_etags.clear)


def _draw(count: int) -> list[str]:
    """``count`` fresh etags, 8 random bytes each as hex, from one ``os.urandom`` call."""
    text = os.urandom(8 * count).hex()
    return [text[i : i + 16] for i in range(0, 16 * count, 16)]


def _etag() -> str:
    """A fresh etag; ``popleft`` is atomic, so threads never share one."""
    while True:
        try:
            return _etags.popleft()
        except IndexError:
            _etags.extend(_draw(_ETAGS_AHEAD))


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT: take the write lock up front, ROLLBACK on any error.

    Inside a transaction already (a group commit of the writer thread) it is a
    savepoint instead, so the block stays all-or-nothing within the group.
    """
    if conn.in_transaction:
        conn.execute("SAVEPOINT fleet_nested")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO fleet_nested")
                conn.execute("RELEASE fleet_nested")
            raise
        conn.execute("RELEASE fleet_nested")
        return
    # IMMEDIATE, not DEFERRED: a deferred transaction that reads and then writes
    # fails at once (SQLITE_BUSY_SNAPSHOT) if another process wrote in between.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (I/O error, full disk)
            conn.execute("ROLLBACK")
        raise


def run_group(
    conn: sqlite3.Connection, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> list[tuple[bool, Any]]:
    """Run ``fn(conn, *args)`` for each call in one transaction: a group commit.

    Each call runs in its own savepoint (a ``ONE_STATEMENT`` write: in its one
    statement), so a call that fails leaves no trace and the others still commit;
    every call is as conditional as when run alone (the whole group holds the write
    lock). Nothing is reported before the COMMIT, and if the COMMIT fails (or SQLite
    abandons the transaction) every call fails. ``translate`` is applied by the
    caller, around each call's outcome.
    """
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn, args in calls:
            guarded = fn not in ONE_STATEMENT
            if guarded:
                conn.execute("SAVEPOINT fleet_call")
            try:
                outcomes.append((True, fn(conn, *args)))
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole group back (I/O error, full disk)
                if guarded:
                    conn.execute("ROLLBACK TO fleet_call")
                outcomes.append((False, exc))
            if guarded:
                conn.execute("RELEASE fleet_call")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _document(doc_id: str, pk: str, etag: str, body: str) -> Document:
    return Document(doc_id, pk, etag, loads(body))


def get(conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str) -> Document:
    """Read one document; NotFoundError if missing."""
    sql = f"SELECT etag, body FROM {table(spec)} WHERE pk = ? AND id = ?"
    rows = conn.execute(sql, (pk, doc_id)).fetchall()
    if not rows:
        raise NotFoundError(f"document {doc_id!r} not found in partition {pk!r}")
    return _document(doc_id, pk, rows[0][0], rows[0][1])


def _etag_of(conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str) -> str | None:
    sql = f"SELECT etag FROM {table(spec)} WHERE pk = ? AND id = ?"
    rows = conn.execute(sql, (pk, doc_id)).fetchall()
    return str(rows[0][0]) if rows else None


@lru_cache(maxsize=256)
def _replace_text(name: str, cols: tuple[str, ...], with_etag: bool) -> str:
    sets = "".join(f", {c} = ?" for c in cols)
    cond = " AND etag = ?" if with_etag else ""
    return f"UPDATE {name} SET body = ?, etag = ?{sets} WHERE pk = ? AND id = ?{cond}"


def insert(conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument) -> Document:
    """Insert a new document; AlreadyExistsError if its id is taken in its partition."""
    etag = _etag()
    params = (doc.partition_key, doc.id, etag, doc.raw, *field_values(spec, doc.body))
    if conn.execute(insert_sql(spec, upsert=False), params).rowcount == 0:
        raise AlreadyExistsError(f"document {doc.id!r} already exists")
    return Document(doc.id, doc.partition_key, etag, doc.body)


def upsert(conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument) -> Document:
    """Insert or overwrite a document."""
    etag = _etag()
    params = (doc.partition_key, doc.id, etag, doc.raw, *field_values(spec, doc.body))
    conn.execute(insert_sql(spec, upsert=True), params)
    return Document(doc.id, doc.partition_key, etag, doc.body)


def _mismatch(
    conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str, etag: str | None
) -> DatastoreError | None:
    """Why a conditional statement matched no row: missing, the etag moved on, or neither."""
    current = _etag_of(conn, spec, doc_id, pk)
    if current is None:
        return NotFoundError(f"document {doc_id!r} not found in partition {pk!r}")
    if etag is not None and current != etag:
        return PreconditionFailedError(f"document {doc_id!r} has changed (etag mismatch)")
    return None


def replace(
    conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
) -> Document:
    """Overwrite a document (if its etag is ``etag``, when given); raise why not."""
    new_etag = _etag()
    sql = _replace_text(table(spec), field_columns(spec), etag is not None)
    params = (doc.raw, new_etag, *field_values(spec, doc.body), doc.partition_key, doc.id)
    if etag is not None:
        params = (*params, etag)
    if conn.execute(sql, params).rowcount == 0:
        # Matching now but not then: it was created since; missing is the honest answer.
        raise _mismatch(conn, spec, doc.id, doc.partition_key, etag) or NotFoundError(
            f"document {doc.id!r} not found in partition {doc.partition_key!r}"
        )
    return Document(doc.id, doc.partition_key, new_etag, doc.body)


def delete(
    conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str, etag: str | None
) -> bool:
    """Delete a document; False if missing, PreconditionFailedError on etag mismatch."""
    sql = f"DELETE FROM {table(spec)} WHERE pk = ? AND id = ?"
    params: tuple[str, ...] = (pk, doc_id)
    if etag is not None:
        sql, params = sql + " AND etag = ?", (*params, etag)
    if conn.execute(sql, params).rowcount:
        return True
    error = None if etag is None else _mismatch(conn, spec, doc_id, pk, etag)
    if isinstance(error, PreconditionFailedError):
        raise error
    return False


def patch_document(
    conn: sqlite3.Connection,
    spec: ContainerSpec,
    doc_id: str,
    pk: str,
    etag: str | None,
    patch: Patch,
) -> Document:
    """Apply ``patch`` if the stored etag is ``etag`` (any etag when None); raise why not."""
    new_etag = _etag()
    if not sql_patchable(patch):
        return _patch_in_python(conn, spec, doc_id, pk, etag, patch, new_etag)
    compiled = patch_sql(spec, doc_id, pk, etag, patch, new_etag)
    try:
        rows = conn.execute(compiled.sql, compiled.params).fetchall()
    except sqlite3.IntegrityError as exc:
        if str(exc) != TOO_LARGE:
            raise
        # The size trigger aborted the statement: it wrote nothing. Translated here, not
        # only in ``translated()``: inside a batch the error must name its operation.
        raise DocumentTooLargeError(
            f"patched document {doc_id!r} would exceed {spec.max_document_bytes} bytes"
        ) from None
    if not rows:
        raise _mismatch(conn, spec, doc_id, pk, etag) or NotFoundError(
            f"document {doc_id!r} not found in partition {pk!r}"
        )
    return _document(doc_id, pk, new_etag, rows[0][0])


def _patch_in_python(
    conn: sqlite3.Connection,
    spec: ContainerSpec,
    doc_id: str,
    pk: str,
    etag: str | None,
    patch: Patch,
    new_etag: str,
) -> Document:
    """Read, patch in Python, write; under the write lock, for names a JSON path can't spell."""
    if not conn.in_transaction:
        with _immediate(conn):  # the read and the write must see one version
            return _patch_in_python(conn, spec, doc_id, pk, etag, patch, new_etag)
    current = get(conn, spec, doc_id, pk)
    if etag is not None and current.etag != etag:
        raise PreconditionFailedError(f"document {doc_id!r} has changed (etag mismatch)")
    new = apply_patch(spec, current.body, patch)
    # The write lock makes the read and this write one step; the etag check is a backstop.
    sql = _replace_text(table(spec), field_columns(spec), True)
    params = (new.raw, new_etag, *field_values(spec, new.body), pk, doc_id, current.etag)
    if conn.execute(sql, params).rowcount != 1:
        raise PreconditionFailedError(f"document {doc_id!r} has changed (etag mismatch)")
    return Document(doc_id, pk, new_etag, new.body)


def update_if_match(
    conn: sqlite3.Connection,
    spec: ContainerSpec,
    doc_id: str,
    pk: str,
    expected: Document,
    patch: Patch,
) -> UpdateResult:
    """Write ``expected``'s body under ``patch`` if the stored etag is still ``expected.etag``.

    Every write draws a fresh random etag, so a stored etag equal to
    ``expected.etag`` means the stored body is the one ``expected`` was read with:
    the patch is applied to that body here, in Python (``apply_patch``, as the
    memory provider does), and the whole new body is written by one ``UPDATE …
    WHERE pk=? AND id=? AND etag=?``. The etag condition is still the only judge
    of who wins, under SQLite's write lock; nothing is read first. This costs
    0.64x a ``json_set`` of the stored text inside SQLite: no JSON parsed and
    re-serialised there, no ``RETURNING`` body to decode (docs/benchmarks.md).
    Only the field columns under the patched keys are assigned, so the indexes
    on the other columns are left untouched.
    """
    new_etag = _etag()
    try:
        new = apply_patch(spec, expected.body, patch)
    except DocumentTooLargeError:
        # Too large only matters for a write that would have happened.
        mismatch = _mismatch(conn, spec, doc_id, pk, expected.etag)
        if mismatch is None:
            raise
        return NOT_FOUND if isinstance(mismatch, NotFoundError) else CONFLICT
    cols, values = patch_columns(spec, patch)
    sql = _replace_text(table(spec), cols, True)
    params = (new.raw, new_etag, *values, pk, doc_id, expected.etag)
    if conn.execute(sql, params).rowcount == 0:
        mismatch = _mismatch(conn, spec, doc_id, pk, expected.etag)
        return NOT_FOUND if isinstance(mismatch, NotFoundError) else CONFLICT
    return UpdateResult.won(Document(doc_id, pk, new_etag, new.body))


ONE_STATEMENT: frozenset[Callable[..., Any]] = frozenset({update_if_match, insert, upsert})
"""Writes that change the database with one statement at most, and raise after it never.

SQLite undoes a statement that fails (the ABORT conflict resolution: a constraint,
the size trigger) and keeps the transaction, so in a group commit these need no
savepoint of their own: a SAVEPOINT and RELEASE were ~3 µs of a job's two writes at
ten jobs a claim (docs/benchmarks.md). An error that ends the whole transaction
(I/O, a full disk) ends it with or without one.
"""


def _batch_op(
    conn: sqlite3.Connection, spec: ContainerSpec, pk: str, op: Any, doc: PreparedDocument | None
) -> Document | None:
    if isinstance(op, CreateOp) and doc is not None:
        return insert(conn, spec, doc)
    if isinstance(op, ReplaceOp) and doc is not None:
        return replace(conn, spec, doc, op.etag)
    if isinstance(op, UpsertOp) and doc is not None:
        return upsert(conn, spec, doc)
    if isinstance(op, DeleteOp):
        if not delete(conn, spec, op.id, pk, op.etag):
            raise NotFoundError(f"document {op.id!r} not found in partition {pk!r}")
        return None
    if isinstance(op, PatchOp):
        return patch_document(conn, spec, op.id, pk, op.etag, op.patch)
    if isinstance(op, ReadOp):
        return get(conn, spec, op.id, pk)
    raise InvalidRequestError(f"not a batch operation: {op!r}")


ROWS_STEP = 8
"""A multi-row INSERT of ``_creates`` holds a multiple of this many rows, or fewer: a batch
of n creates is at most two statements, and a connection prepares a few dozen texts in all
(preparing a 64-row INSERT costs about as much as running it; each text is prepared once
and cached per connection, where every size up to 100 would each be prepared)."""

ROWS_MAX = 96
"""Most rows of one multi-row INSERT of ``_creates`` (a multiple of ``ROWS_STEP``)."""


def _pieces(count: int) -> Iterator[int]:
    """The row counts of the INSERTs of ``count`` creates: multiples of ROWS_STEP, then the rest."""
    while count >= ROWS_STEP:
        rows = min(ROWS_MAX, count - count % ROWS_STEP)
        yield rows
        count -= rows
    if count:
        yield count


def _creates(
    conn: sqlite3.Connection, spec: ContainerSpec, docs: list[PreparedDocument], first: int
) -> list[Document]:
    """Insert consecutive creates of a batch, as ``insert`` each, all or none of them.

    In multi-row INSERTs (``insert_rows_sql``, ``_pieces``): one bind and one
    ``sqlite3_step`` for up to ``ROWS_MAX`` rows instead of one each (~5 % fewer
    instructions a batch-enqueued job: docs/benchmarks.md, "Twenty-sixth session"). A
    taken id (stored before, or by an earlier create of the same id) fails its
    statement, which SQLite undoes whole; the first create of it whose id is taken is
    the one the per-row path stops at, and the BatchError names it. The rows of an
    earlier statement are undone by the caller's transaction (``batch``'s savepoint).
    """
    etags = _draw(len(docs))
    params = [
        value
        for doc, etag in zip(docs, etags, strict=True)
        for value in (doc.partition_key, doc.id, etag, doc.raw, *field_values(spec, doc.body))
    ]
    width, done = len(params) // len(docs), 0
    try:
        for rows in _pieces(len(docs)):
            sql = insert_rows_sql(spec, rows)
            conn.execute(sql, params[done * width : (done + rows) * width])
            done += rows
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
            raise  # another constraint (the size trigger): as a lone insert raises it
        raise _taken(conn, spec, docs, done, first) from exc
    return [
        Document(doc.id, doc.partition_key, etag, doc.body)
        for doc, etag in zip(docs, etags, strict=True)
    ]


def _taken(
    conn: sqlite3.Connection,
    spec: ContainerSpec,
    docs: list[PreparedDocument],
    start: int,
    first: int,
) -> DatastoreError:
    """The BatchError of the first create from ``start`` on whose id was taken when it ran.

    The rows of ``docs[:start]`` are written (earlier statements): their ids count as
    taken by an earlier create, not as stored before.
    """
    seen = {doc.id for doc in docs[:start]}
    for offset in range(start, len(docs)):
        doc = docs[offset]
        if doc.id in seen or _etag_of(conn, spec, doc.id, doc.partition_key) is not None:
            error = AlreadyExistsError(f"document {doc.id!r} already exists")
            return BatchError(first + offset, error)
        seen.add(doc.id)
    return DatastoreError("sqlite: a batch's creates were refused with their ids free")


def batch(
    conn: sqlite3.Connection, spec: ContainerSpec, pk: str, ops: Sequence[PreparedOp]
) -> list[Document | None]:
    """Run every operation in one IMMEDIATE transaction; on failure BatchError, nothing written.

    Consecutive creates (a batch enqueue holds nothing else) are multi-row INSERTs
    (``_creates``).
    """
    results: list[Document | None] = []
    count = len(ops)
    with _immediate(conn):
        index = 0
        while index < count:
            end = index
            while end < count and type(ops[end][0]) is CreateOp and ops[end][1] is not None:
                end += 1
            if end - index > 1:
                docs = [doc for _, doc in ops[index:end] if doc is not None]
                results += _creates(conn, spec, docs, index)
                index = end
                continue
            op, doc = ops[index]
            try:
                results.append(_batch_op(conn, spec, pk, op, doc))
            except DatastoreError as exc:
                raise BatchError(index, exc) from exc
            index += 1
    return results


def query(conn: sqlite3.Connection, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
    """Run the plan's branches in order until ``plan.fetch`` documents are found."""
    docs: list[Document] = []
    for branch in query_branches(spec, plan):
        params = branch.params
        if plan.fetch is not None:
            params = (*params[:-1], plan.fetch - len(docs))
        docs += [_document(*row) for row in conn.execute(branch.sql, params).fetchall()]
        if plan.fetch is not None and len(docs) >= plan.fetch:
            break
    return docs


def count(conn: sqlite3.Connection, spec: ContainerSpec, plan: QueryPlan) -> int:
    """Count the documents matching the plan's filters and partition."""
    compiled = count_sql(spec, plan)
    return int(conn.execute(compiled.sql, compiled.params).fetchall()[0][0])


def ensure(conn: sqlite3.Connection, spec: ContainerSpec) -> None:
    """Create or migrate the container's table and indexes, under the write lock.

    A table written by an older layout (or for a spec with fewer declared fields)
    gains the missing field columns, filled from the stored bodies; indexes of
    this container the spec no longer asks for (the old ``json_extract``
    expression indexes among them) are dropped, and so are field columns of
    fields no longer declared, so that a field declared again later is filled
    afresh rather than read stale. All of it is one transaction.
    """
    # Two processes declaring the same container at once take turns on the write
    # lock, and the second finds nothing left to do: every step checks first.
    with _immediate(conn):
        statements = schema_sql(spec)
        conn.execute(statements[0])  # CREATE TABLE IF NOT EXISTS, with every field column
        _migrate(conn, spec)
        for statement in statements[1:]:
            conn.execute(statement)


def _migrate(conn: sqlite3.Connection, spec: ContainerSpec) -> None:
    """Bring an existing table to the spec's layout (nothing to do for a new table)."""
    name = table(spec)
    have = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({name})")}
    wanted = [p for p in spec.fields if p != "id" and p != spec.partition_key]
    missing = [p for p in wanted if field_column(p) not in have]
    for path in missing:
        conn.execute(f"ALTER TABLE {name} ADD COLUMN {field_column(path)}")
    if missing:
        conn.execute(backfill_sql(spec, missing))
    keep = index_names(spec)
    prefix = f"ix_{spec.name}_"
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
        (name.strip('"'),),
    ).fetchall()
    for (index,) in rows:
        if str(index).startswith(prefix) and index not in keep:
            conn.execute(f'DROP INDEX "{index}"')
    trigger = size_trigger(spec)[0]
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
        (name.strip('"'),),
    ).fetchall()
    for (stale,) in rows:  # a size trigger of another limit
        if str(stale).startswith(f"sz_{spec.name}_") and stale != trigger:
            conn.execute(f'DROP TRIGGER "{stale}"')
    declared = {field_column(p) for p in wanted}
    for col in sorted(c for c in have if c.startswith("f_") and c not in declared):
        conn.execute(f"ALTER TABLE {name} DROP COLUMN {col}")
