"""The SQLite provider (``sqlite:///path/to/file.db``): the durable embedded default.

- One table per container, ``PRIMARY KEY (pk, id)``, the body as JSON text, and a
  random etag per write, so etags are unique across processes sharing the file.
- ``update_if_match`` is one ``UPDATE … WHERE pk=? AND id=? AND etag=?`` that
  applies the patch inside SQLite (``json_set``/``json_remove``): the compare and
  the write are one statement under SQLite's write lock, so any number of
  threads or processes race safely; nothing is read first.
- WAL journal (readers never block the writer), a 30 s busy timeout, and
  ``synchronous=NORMAL``: in WAL mode a commit survives a killed process, and
  only an OS crash or power loss can drop the last commits. ``?synchronous=full``
  (or ``extra``) on the URL makes every commit survive power loss too.
- Blocking calls run on two worker threads, each owning one connection: one for
  writes (so a process never contends with itself for the write lock) and one
  for reads (so queries and writes overlap). sqlite3 objects never cross threads.
- ``sqlite3`` errors are translated in one place, ``translated()``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from ..backend import PreparedOp
from ..batch import CreateOp, DeleteOp, PatchOp, ReadOp, ReplaceOp, UpsertOp
from ..documents import PreparedDocument, apply_patch
from ..errors import (
    AlreadyExistsError,
    BatchError,
    DatastoreError,
    DocumentTooLargeError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
    UnknownContainerError,
)
from ..model import CONFLICT, NOT_FOUND, ContainerSpec, Document, Patch, UpdateResult
from ..query import QueryPlan
from .sqlite_sql import count_sql, patch_sql, query_branches, schema_sql, sql_patchable, table

__all__ = ["BUSY_TIMEOUT_SECONDS", "SqliteBackend", "translated"]

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a statement waits for another connection's write lock before failing."""

_SYNCHRONOUS = ("normal", "full", "extra")
T = TypeVar("T")


@contextmanager
def translated() -> Iterator[None]:
    """Turn sqlite3 and file-system errors into ``DatastoreError`` subclasses: the one boundary."""
    try:
        yield
    except DatastoreError:
        raise
    except sqlite3.OperationalError as exc:
        # Locked past the busy timeout, I/O errors, unopenable or read-only files.
        if "no such table" in str(exc):
            raise UnknownContainerError(f"sqlite: {exc}") from exc
        raise StoreUnavailableError(f"sqlite: {exc}") from exc
    except (sqlite3.DatabaseError, OSError) as exc:
        # Not a database, corrupt, disk full, cannot create the directory.
        raise StoreUnavailableError(f"sqlite: {exc}") from exc
    except sqlite3.Error as exc:
        raise DatastoreError(f"sqlite: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"text is not encodable as UTF-8: {exc}") from exc


def _etag() -> str:
    return os.urandom(8).hex()


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT: take the write lock up front, ROLLBACK on any error."""
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


def _document(doc_id: str, pk: str, etag: str, body: str) -> Document:
    return Document(doc_id, pk, etag, json.loads(body))


def _get(conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str) -> Document:
    sql = f"SELECT etag, body FROM {table(spec)} WHERE pk = ? AND id = ?"
    rows = conn.execute(sql, (pk, doc_id)).fetchall()
    if not rows:
        raise NotFoundError(f"document {doc_id!r} not found in partition {pk!r}")
    return _document(doc_id, pk, rows[0][0], rows[0][1])


def _etag_of(conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str) -> str | None:
    sql = f"SELECT etag FROM {table(spec)} WHERE pk = ? AND id = ?"
    rows = conn.execute(sql, (pk, doc_id)).fetchall()
    return str(rows[0][0]) if rows else None


def _insert(conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument) -> Document:
    etag = _etag()
    sql = (
        f"INSERT INTO {table(spec)} (pk, id, etag, body) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING"
    )
    if conn.execute(sql, (doc.partition_key, doc.id, etag, doc.raw)).rowcount == 0:
        raise AlreadyExistsError(f"document {doc.id!r} already exists")
    return Document(doc.id, doc.partition_key, etag, doc.body)


def _upsert(conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument) -> Document:
    etag = _etag()
    sql = (
        f"INSERT INTO {table(spec)} (pk, id, etag, body) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (pk, id) DO UPDATE SET etag = excluded.etag, body = excluded.body"
    )
    conn.execute(sql, (doc.partition_key, doc.id, etag, doc.raw))
    return Document(doc.id, doc.partition_key, etag, doc.body)


def _mismatch(
    conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str, etag: str | None
) -> DatastoreError:
    """Why a conditional statement matched no row: missing, or the etag moved on."""
    current = _etag_of(conn, spec, doc_id, pk)
    if current is None:
        return NotFoundError(f"document {doc_id!r} not found in partition {pk!r}")
    if etag is not None and current != etag:
        return PreconditionFailedError(f"document {doc_id!r} has changed (etag mismatch)")
    return DocumentTooLargeError(f"patched document {doc_id!r} exceeds the size limit")


def _replace(
    conn: sqlite3.Connection, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
) -> Document:
    new_etag = _etag()
    sql = f"UPDATE {table(spec)} SET body = ?, etag = ? WHERE pk = ? AND id = ?"
    params: tuple[str, ...] = (doc.raw, new_etag, doc.partition_key, doc.id)
    if etag is not None:
        sql, params = sql + " AND etag = ?", (*params, etag)
    if conn.execute(sql, params).rowcount == 0:
        raise _mismatch(conn, spec, doc.id, doc.partition_key, etag)
    return Document(doc.id, doc.partition_key, new_etag, doc.body)


def _delete(
    conn: sqlite3.Connection, spec: ContainerSpec, doc_id: str, pk: str, etag: str | None
) -> bool:
    sql = f"DELETE FROM {table(spec)} WHERE pk = ? AND id = ?"
    params: tuple[str, ...] = (pk, doc_id)
    if etag is not None:
        sql, params = sql + " AND etag = ?", (*params, etag)
    if conn.execute(sql, params).rowcount:
        return True
    error = _mismatch(conn, spec, doc_id, pk, etag)
    if isinstance(error, PreconditionFailedError):
        raise error
    return False


def _patch(
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
    rows = conn.execute(compiled.sql, compiled.params).fetchall()
    if not rows:
        raise _mismatch(conn, spec, doc_id, pk, etag)
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
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")  # the read and the write must see one version
    try:
        current = _get(conn, spec, doc_id, pk)
        if etag is not None and current.etag != etag:
            raise PreconditionFailedError(f"document {doc_id!r} has changed (etag mismatch)")
        new = apply_patch(spec, current.body, patch)
        sql = f"UPDATE {table(spec)} SET body = ?, etag = ? WHERE pk = ? AND id = ?"
        conn.execute(sql, (new.raw, new_etag, pk, doc_id))
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return Document(doc_id, pk, new_etag, new.body)


def _update_if_match(
    conn: sqlite3.Connection,
    spec: ContainerSpec,
    doc_id: str,
    pk: str,
    etag: str,
    patch: Patch,
) -> UpdateResult:
    try:
        return UpdateResult.won(_patch(conn, spec, doc_id, pk, etag, patch))
    except NotFoundError:
        return NOT_FOUND
    except PreconditionFailedError:
        return CONFLICT


def _batch_op(
    conn: sqlite3.Connection, spec: ContainerSpec, pk: str, op: Any, doc: PreparedDocument | None
) -> Document | None:
    if isinstance(op, CreateOp) and doc is not None:
        return _insert(conn, spec, doc)
    if isinstance(op, ReplaceOp) and doc is not None:
        return _replace(conn, spec, doc, op.etag)
    if isinstance(op, UpsertOp) and doc is not None:
        return _upsert(conn, spec, doc)
    if isinstance(op, DeleteOp):
        if not _delete(conn, spec, op.id, pk, op.etag):
            raise NotFoundError(f"document {op.id!r} not found in partition {pk!r}")
        return None
    if isinstance(op, PatchOp):
        return _patch(conn, spec, op.id, pk, op.etag, op.patch)
    if isinstance(op, ReadOp):
        return _get(conn, spec, op.id, pk)
    raise InvalidRequestError(f"not a batch operation: {op!r}")


def _batch(
    conn: sqlite3.Connection, spec: ContainerSpec, pk: str, ops: Sequence[PreparedOp]
) -> list[Document | None]:
    results: list[Document | None] = []
    with _immediate(conn):
        for index, (op, doc) in enumerate(ops):
            try:
                results.append(_batch_op(conn, spec, pk, op, doc))
            except DatastoreError as exc:
                raise BatchError(index, exc) from exc
    return results


def _query(conn: sqlite3.Connection, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
    docs: list[Document] = []
    for branch in query_branches(spec, plan):
        params = branch.params
        if plan.fetch is not None:
            params = (*params[:-1], plan.fetch - len(docs))
        docs += [_document(*row) for row in conn.execute(branch.sql, params).fetchall()]
        if plan.fetch is not None and len(docs) >= plan.fetch:
            break
    return docs


def _count(conn: sqlite3.Connection, spec: ContainerSpec, plan: QueryPlan) -> int:
    compiled = count_sql(spec, plan)
    return int(conn.execute(compiled.sql, compiled.params).fetchall()[0][0])


def _ensure(conn: sqlite3.Connection, spec: ContainerSpec) -> None:
    # DDL inside one write transaction: two processes declaring the same container
    # at once take turns, and IF NOT EXISTS makes the second a no-op.
    with _immediate(conn):
        for statement in schema_sql(spec):
            conn.execute(statement)


class _Worker:
    """One thread owning one connection; every call on it passes through ``translated()``."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with translated():
            if self._conn is None:
                raise StoreUnavailableError("the SQLite store is not open")
            return fn(self._conn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on this worker's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)

    async def connect(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Open the connection on the worker thread, where it will be used."""

        def _open() -> None:
            with translated():
                self._conn = connect()

        await asyncio.get_running_loop().run_in_executor(self._pool, _open)

    async def close(self) -> None:
        """Close the connection on its thread and stop the thread."""

        def _close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                with translated():
                    conn.close()

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        finally:
            self._pool.shutdown(wait=False)


def _parse_path(path: str) -> tuple[str, str]:
    """Split ``file.db?synchronous=full`` into the file path and the synchronous level."""
    path, _, query = path.partition("?")
    synchronous = "normal"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "synchronous" or value.lower() not in _SYNCHRONOUS:
            raise InvalidRequestError(
                f"unknown sqlite URL option {key}={value!r}: only synchronous=normal|full|extra"
            )
        synchronous = value.lower()
    if not path:
        raise InvalidRequestError("sqlite needs a file path")
    return path, synchronous


class SqliteBackend:
    """A ``Backend`` on one SQLite file, safe to share between threads and processes."""

    def __init__(self, path: str) -> None:
        self.path, self.synchronous = _parse_path(path)
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, cached_statements=512
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def _w(self) -> _Worker:
        if self._writer is None:
            raise StoreUnavailableError("the SQLite store is not open")
        return self._writer

    @property
    def _r(self) -> _Worker:
        if self._reader is None:
            raise StoreUnavailableError("the SQLite store is not open")
        return self._reader

    async def open(self) -> None:
        """Create the file's directory and open the writer and reader connections."""
        self._writer = _Worker("fleet-sqlite-writer")
        self._reader = self._writer
        try:
            await self._writer.connect(self._connect)
            if self.path != ":memory:":  # each :memory: connection is its own database
                self._reader = _Worker("fleet-sqlite-reader")
                await self._reader.connect(self._connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        workers = {id(w): w for w in (self._writer, self._reader) if w is not None}
        self._writer = self._reader = None
        for worker in workers.values():
            await worker.close()

    async def ping(self) -> None:
        """Run ``SELECT 1``."""
        await self._r.run(lambda conn: conn.execute("SELECT 1").fetchall())

    async def ensure_container(self, spec: ContainerSpec) -> None:
        """Create the container's table and indexes if missing; idempotent across processes."""
        await self._w.run(_ensure, spec)

    async def create(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert; AlreadyExistsError if the id exists in that partition."""
        return await self._w.run(_insert, spec, doc)

    async def get(self, spec: ContainerSpec, doc_id: str, partition_key: str) -> Document:
        """Read; NotFoundError if missing."""
        return await self._r.run(_get, spec, doc_id, partition_key)

    async def replace(
        self, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
    ) -> Document:
        """Overwrite; NotFoundError if missing, PreconditionFailedError on etag mismatch."""
        return await self._w.run(_replace, spec, doc, etag)

    async def upsert(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert or overwrite."""
        return await self._w.run(_upsert, spec, doc)

    async def delete(
        self, spec: ContainerSpec, doc_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Remove; False if it was missing, PreconditionFailedError on etag mismatch."""
        return await self._w.run(_delete, spec, doc_id, partition_key, etag)

    async def update_if_match(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        """Apply ``patch`` in one conditional UPDATE if the stored etag is ``expected.etag``."""
        return await self._w.run(
            _update_if_match, spec, doc_id, partition_key, expected.etag, patch
        )

    async def batch(
        self, spec: ContainerSpec, partition_key: str, ops: Sequence[PreparedOp]
    ) -> list[Document | None]:
        """Run all operations in one IMMEDIATE transaction; BatchError and ROLLBACK on failure."""
        return await self._w.run(_batch, spec, partition_key, ops)

    async def query(self, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
        """Up to ``plan.fetch`` matches after ``plan.after``, in ``plan.sort`` order."""
        return await self._r.run(_query, spec, plan)

    async def count(self, spec: ContainerSpec, plan: QueryPlan) -> int:
        """How many documents match ``plan.where`` (and partition)."""
        return await self._r.run(_count, spec, plan)

