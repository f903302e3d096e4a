"""The SQLite provider (``sqlite:///path/to/file.db``): the durable embedded default.

- One table per container, ``PRIMARY KEY (pk, id)``, the body as JSON text, and a
  random etag per write, so etags are unique across processes sharing the file.
- Each declared field also has a plain column beside the body, written from
  Python on every write; indexes and queries use those columns, so SQLite never
  parses a body to maintain an index (``sqlite_sql``). ``ensure_container``
  migrates a table of an older layout (``sqlite_ops.ensure``).
- ``update_if_match`` is one ``UPDATE … WHERE pk=? AND id=? AND etag=?`` that
  writes ``expected``'s body with the patch applied in Python (an etag names one
  stored version, so that body is the stored one whenever the condition holds):
  the compare and the write are one statement under SQLite's write lock, so any
  number of threads or processes race safely; nothing is read first. A batch's
  ``PatchOp``, which brings no body to start from, is applied inside SQLite
  (``json_set``/``json_remove``).
- WAL journal (readers never block the writer), a 30 s busy timeout (counted
  for each write from when it was made, however many groups wait before it), and
  ``synchronous=NORMAL``: in WAL mode a commit survives a killed process, and
  only an OS crash or power loss can drop the last commits. ``?synchronous=full``
  (or ``extra``) on the URL makes every commit survive power loss too.
- Three connections. Two worker threads own one each: the writer (with group
  commit) and the reader; they wait for another process's write lock with the
  busy timeout. The third (``_Inline``) runs point reads, small queries and
  writes on the event loop's own thread, saving the thread hop, which costs
  more than a small statement: its busy timeout is zero, so a write finding
  the lock taken fails in ``BEGIN IMMEDIATE`` before doing anything and goes to
  the writer thread, and a call past a VM-step budget is interrupted, rolled
  back and redone on a worker, so the loop never waits. Counts and large or
  unbounded queries stay on the reader thread. A lock keeps each inline call to
  one thread; the workers' connections never leave their threads.
- A new file gets ``PRAGMA page_size = PAGE_SIZE`` (2048): a commit writes each
  page it dirtied to the WAL, and a job write dirties a page per index it
  touches, so smaller pages make commits cheaper. An existing file keeps its own.
- ``sqlite3`` errors are translated in one place, ``translated()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import orjson

from ..backend import PreparedOp
from ..documents import PreparedDocument
from ..errors import (
    DatastoreError,
    DocumentTooLargeError,
    InvalidRequestError,
    StoreUnavailableError,
    UnknownContainerError,
)
from ..model import ContainerSpec, Document, Patch, UpdateResult
from ..query import QueryPlan
from . import sqlite_ops as stmt
from .sqlite_sql import TOO_LARGE

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "PAGE_SIZE",
    "WAL_CHECKPOINT_PAGES",
    "SqliteBackend",
    "translated",
]

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a write waits for another connection's write lock before failing (503).

Counted from when the write was made: the writer thread's groups queue one behind
another while the lock is taken, and each group waits only as long as its oldest
write has left (``_Worker._in_time``)."""

BUSY_SLACK_SECONDS = 0.1
"""How far the writer's busy timeout may stay above what a group has left: the
``PRAGMA`` that lowers it is run only past this, so a group that waits for
nothing (nearly all) costs one clock read and no statement."""

WAL_CHECKPOINT_PAGES = 4000
"""WAL pages between automatic checkpoints (SQLite's default is 1000)."""

MIN_FREE_BYTES = 1 << 20
"""Free space (for the process's user) under which ``ping`` says the disk is full: SQLite
fails a commit that cannot grow the WAL (SQLITE_FULL), and a megabyte is a few hundred
job writes at most."""

FULL_SECONDS = 10.0
"""How long after a write failed with SQLITE_FULL ``ping`` still fails (the write path
records the failure only: a success costs nothing). What ``statvfs`` does not see, a
quota or ``PRAGMA max_page_count``, so shows for this long after each failed write."""

LOCK_HELD_SECONDS = BUSY_TIMEOUT_SECONDS
"""How long ``ping`` may find the write lock taken by another connection, at every
ping, before it fails: as long as a write waits for it before failing (503)."""

FILE_CHECK_SECONDS = 1.0
"""How often an open store checks that its file is still the one at its path (one
``stat``): once it is not, writes are refused (``SqliteBackend.check_file``)."""

PAGE_SIZE = 2048
"""``PRAGMA page_size`` of a new file (set before its first page is written; a file keeps its own).

Measured in the drain (3 runs each, medians, coordinator CPU per job against 4096):
--concurrency 1: 1024 and 2048 both 0.89x; --concurrency 10: 1024 0.84x, 2048 0.81x.
Indexed top-10 queries at 200k documents are unchanged; 6 KB bodies read 4 % slower
at 2048 and 15 % at 1024, hence 2048."""

_SYNCHRONOUS = ("normal", "full", "extra")
T = TypeVar("T")
_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
    bool,
    float,
]
"""A worker's call: loop, future, function, arguments, groupable, and the deadline
(``time.monotonic()``) by which it must have the write lock (``math.inf``: none)."""


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn sqlite3 and file-system errors into ``DatastoreError`` subclasses: the one boundary."""
    try:
        yield
    except DatastoreError:
        raise
    except sqlite3.Error as exc:
        if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
            raise UnknownContainerError(f"sqlite: {exc}") from exc
        if isinstance(exc, sqlite3.IntegrityError) and str(exc) == TOO_LARGE:
            # The size trigger, the backstop behind ``prepare``/``apply_patch``: it
            # aborted its statement, which wrote nothing.
            raise DocumentTooLargeError("sqlite: the document is over the size limit") from exc
        # Locked past the busy timeout, I/O error, disk full, read-only or unopenable
        # file (OperationalError); not a database or corrupt (plain DatabaseError).
        if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError) or (
            type(exc) is sqlite3.DatabaseError
        ):
            raise StoreUnavailableError(f"sqlite: {exc}") from exc
        raise DatastoreError(f"sqlite: {exc}") from exc
    except OSError as exc:  # the file's directory cannot be created
        raise StoreUnavailableError(f"sqlite: {exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate in a bound string
        raise InvalidRequestError(f"text is not encodable as UTF-8: {exc}") from exc
    except orjson.JSONDecodeError as exc:  # a body damaged by something other than us
        raise DatastoreError(f"sqlite: a stored document is not valid JSON: {exc}") from exc


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        _settle(future, ok, value)


def _translate(exc: BaseException) -> BaseException:
    """The exception ``translated()`` turns ``exc`` into."""
    try:
        with translated():
            raise exc
    except BaseException as translated_exc:
        return translated_exc


INLINE = True
"""Run point reads, small queries and writes on the event loop's thread when nothing waits."""

GROUP_MAX = 64
"""Most writes one group commit takes from the writer's queue."""


class _Worker:
    """A thread owning one connection: calls queue up to it, results return to the loop.

    Lighter than ``run_in_executor`` (no concurrent Future and condition variable
    per call): for a small UPDATE the thread hop, not SQLite, is most of the cost.
    Every call runs inside ``translated()``.

    A ``grouping`` worker (the writer) runs the writes that queued up while it
    was busy as one transaction (``sqlite_ops.run_group``): one COMMIT and one
    hop back to the event loop for the lot instead of one each. A write that
    finds the queue empty runs alone, as before, so grouping adds no latency.
    """

    def __init__(self, name: str, *, grouping: bool = False) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._grouping = grouping
        self._busy = BUSY_TIMEOUT_SECONDS  # the connection's busy timeout, as last set
        threading.Thread(target=self._main, name=name, daemon=True).start()

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            group, after = [job], None
            if self._grouping and job[4]:
                group, after = self._drain(group)
            if len(group) == 1:
                self._run_one(group[0])
            else:
                self._run_group(group)
            if after is None:
                continue
            if after[0] is None:
                break  # close() queued its sentinel behind the group
            self._run_one(after[0])  # a call that may not share a transaction

    def _drain(self, group: list[_Job]) -> tuple[list[_Job], tuple[_Job | None] | None]:
        """More groupable writes already queued behind the first, and what stopped the drain."""
        while len(group) < GROUP_MAX:
            try:
                more = self._jobs.get_nowait()
            except queue.Empty:
                return group, None
            if more is None or not more[4]:
                return group, (more,)
            group.append(more)
        return group, None

    def _in_time(self, group: list[_Job]) -> list[_Job]:
        """The writes of ``group`` still within their deadline; the others fail now.

        Writes queue here while a group waits for another process's lock, and each
        group used to wait the whole busy timeout anew: a write made just after a
        group began waited up to twice the timeout. A write past its deadline now
        fails at once with the busy timeout's own error (503), and the connection's
        busy timeout is lowered to what the oldest write left has left. Only the
        writer thread counts deadlines: the reader never waits for the write lock.
        """
        now = time.monotonic()
        first = min(job[5] for job in group)
        if first <= now:
            late = [job for job in group if job[5] <= now]
            group = [job for job in group if job[5] > now]
            for loop, future, *_ in late:
                busy = _translate(sqlite3.OperationalError("database is locked"))
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                    loop.call_soon_threadsafe(_settle, future, False, busy)
            if not group:
                return group
            first = min(job[5] for job in group)
        left = first - now
        wait = BUSY_TIMEOUT_SECONDS if left >= BUSY_TIMEOUT_SECONDS - BUSY_SLACK_SECONDS else left
        if self._conn is not None and (wait > self._busy or wait < self._busy - BUSY_SLACK_SECONDS):
            # SQLite's busy handler gives up once its sleeps add up to this.
            with contextlib.suppress(sqlite3.Error):  # the call then says what is wrong
                self._conn.execute(f"PRAGMA busy_timeout = {max(1, math.floor(wait * 1000))}")
                self._busy = wait
        return group

    def _run_one(self, job: _Job) -> None:
        if self._grouping and not self._in_time([job]):
            return
        loop, future, fn, args, _, _ = job
        try:
            with translated():
                ok, value = True, fn(self._conn, *args)
        except BaseException as exc:
            ok, value = False, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(_settle, future, ok, value)

    def _run_group(self, group: list[_Job]) -> None:
        assert self._conn is not None
        group = self._in_time(group)
        if len(group) <= 1:
            if group:
                self._run_one(group[0])
            return
        try:
            with translated():
                outcomes = stmt.run_group(self._conn, [(job[2], job[3]) for job in group])
        except BaseException as exc:
            outcomes = [(False, exc)] * len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(group, outcomes, strict=True):
            if not ok and not isinstance(value, DatastoreError):
                value = _translate(value)
            by_loop.setdefault(job[0], []).append((job[1], ok, value))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    def hand(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float,
        groupable: bool = True,
    ) -> None:
        """Queue a call whose caller already awaits ``future`` (from ``_Inline``).

        A write is ``groupable``; a checkpoint is not: inside a group's transaction
        SQLite refuses it. ``deadline``: when the write's busy timeout ends.
        """
        if self._closed:
            _settle(future, False, StoreUnavailableError("the SQLite store is closed"))
            return
        self._jobs.put((loop, future, fn, args, groupable, deadline))

    def _submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        groupable: bool = False,
        deadline: float = math.inf,
    ) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args, groupable, deadline))
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on this worker's thread, alone."""
        if self._closed:
            raise StoreUnavailableError("the SQLite store is closed")
        return await self._submit(fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Like ``run``, for a write that may share a transaction with others queued with it.

        It waits for another process's lock at most ``BUSY_TIMEOUT_SECONDS`` from now.
        """
        if self._closed:
            raise StoreUnavailableError("the SQLite store is closed")
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS  # vDSO: no system call
        return await self._submit(fn, args, groupable=True, deadline=deadline)

    def _open(self, _: None, connect: Callable[[], sqlite3.Connection]) -> None:
        self._conn = connect()

    def _close(self, conn: sqlite3.Connection | None) -> None:
        self._conn = None
        if conn is not None:
            conn.close()

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Open the connection on the worker thread, where it will be used."""
        await self.run(self._open, connect)

    async def close(self) -> None:
        """Close the connection after the calls already queued, then end the thread."""
        if self._closed:
            return
        self._closed = True  # calls made from now on fail at once instead of waiting forever
        done = self._submit(self._close, ())
        self._jobs.put(None)
        await done


INLINE_STEP_INSTRUCTIONS = 1000
"""SQLite VM instructions between two calls of the inline connection's progress handler."""

INLINE_BUDGET_STEPS = 200
"""Progress-handler calls an inline call may take (~200,000 VM instructions, a few ms)
before it is interrupted, rolled back and handed to a worker thread."""

INLINE_QUERY_MAX = 200
"""Largest ``plan.fetch`` of a query run on the event loop; larger and unbounded
queries, and every count, run on the reader thread."""

INLINE_CHECKPOINT_COMMITS = 500
"""Inline write commits between two checkpoints queued to the writer thread (the inline
connection never checkpoints itself: a checkpoint writes pages and syncs files)."""

_BUSY_OR_INTERRUPTED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_INTERRUPT)
_AUTOCOMMIT: frozenset[Callable[..., Any]] = frozenset({stmt.insert, stmt.upsert})
"""Writes of one statement that read nothing after it: alone in their turn, each runs as
its own transaction (``_Inline._autocommit``); ``update_if_match`` reads after a miss."""
_Write = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _hand_over(exc: BaseException) -> bool:
    """Whether an inline call failed only for want of the lock or of its budget (nothing done)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code or 0) & 0xFF in _BUSY_OR_INTERRUPTED


class _Elsewhere(enum.Enum):
    """What ``_Inline.read`` returns when it did not run the call (a worker must)."""

    RUN = "run elsewhere"


class _Inline:
    """A connection used on the event loop's own thread: no thread hop when nothing waits.

    Its busy timeout is zero, so a write that finds the write lock taken (by this
    process's writer thread or another process) fails at once in ``BEGIN
    IMMEDIATE``, before doing anything, and goes to the writer thread, which waits
    with the 30 s timeout. A call running past ``INLINE_BUDGET_STEPS`` (the
    progress handler) is interrupted and rolled back and goes to a worker thread
    too, so the loop is never held long. Writes made in one turn of the loop (an
    ``asyncio.gather`` of them) are queued until the end of that turn
    (``call_soon``) and committed together, each in its own savepoint, as the
    writer thread's group commit does; an insert alone in its turn commits as its
    own statement (``_autocommit``). The lock keeps the connection to one
    thread at a time (a store used from loops on two threads: the other one's
    calls go to the workers); every call, inline or not, ends with no
    transaction open, and nothing awaits inside one.
    """

    def __init__(self, conn: sqlite3.Connection, writer: _Worker) -> None:
        self._conn = conn
        self._writer = writer
        self._lock = threading.Lock()
        self._steps = 0
        self._armed = False
        self._queued: list[_Write] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commits = 0
        self._checkpointing = False  # a checkpoint is handed to the writer thread
        self._restarting = False  # ... and it is the RESTART: inline writes queue behind it
        conn.set_progress_handler(self._progress, INLINE_STEP_INSTRUCTIONS)

    def _progress(self) -> bool:
        self._steps += 1
        return self._armed and self._steps > INLINE_BUDGET_STEPS

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """``fn(conn, *args)`` under the budget.

        Only there: SQLite may call the handler after a statement's end, so an
        interrupt of a COMMIT could come after the commit took effect, and an
        interrupted ROLLBACK would leave the transaction open.
        """
        self._armed = True
        try:
            return fn(self._conn, *args)
        finally:
            self._armed = False

    def read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T | Literal[_Elsewhere.RUN]:
        """``fn(conn, *args)``, or ``_Elsewhere.RUN``: run it on the reader instead."""
        if not self._lock.acquire(blocking=False):
            return _Elsewhere.RUN
        try:
            self._steps = 0
            with translated():
                try:
                    return self._call(fn, args)
                except sqlite3.OperationalError as exc:
                    if _hand_over(exc):
                        return _Elsewhere.RUN
                    raise
        finally:
            self._lock.release()

    def write(self, fn: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T] | None:
        """Queue a write for the end of this loop turn; None: use the writer thread.

        Every write waits for the end of its turn, even alone: it yields to the
        loop once, as a hand-off to the writer thread did, and the writes of one
        turn (an ``asyncio.gather``) commit together. (Committing a lone write at
        once saved no CPU in the drain; its different interleavings exposed a claim
        bug, since fixed: docs/benchmarks.md, "SQLite on the event loop's thread".)
        """
        loop = asyncio.get_running_loop()
        if self._restarting:
            # Queued behind the RESTART checkpoint on the writer thread: committing here
            # meanwhile would race it for the write lock, which it polls for and can lose
            # for as long as the loop keeps writing.
            return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread is using the connection: never wait on the loop
        try:
            if self._queued and self._loop is not loop:
                return None
            if not self._queued:
                self._loop = loop
                loop.call_soon(self.flush)
            future: asyncio.Future[T] = loop.create_future()
            self._queued.append((future, fn, args))
        finally:
            self._lock.release()
        return future

    def flush(self) -> None:
        """Commit the queued writes together, or hand them to the writer thread."""
        self._lock.acquire()  # at most one other thread's inline call, within its budget
        try:
            queued, self._queued, loop = self._queued, [], self._loop
            self._loop = None
            writes = [w for w in queued if not w[0].done()]  # a cancelled caller's is not run
            if not writes or loop is None:
                return
            try:
                outcomes = self._commit(writes)
            except Exception as exc:
                # Even a ROLLBACK can fail on a damaged file. Raised from this callback,
                # it would reach only the loop's handler, and every write queued here
                # would wait forever: each caller gets it instead.
                outcomes = [(False, exc)] * len(writes)
        finally:
            self._lock.release()
        if outcomes is None:
            # Made this turn: their busy timeout runs from now, one clock read for all.
            deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
            for future, fn, args in writes:
                self._writer.hand(loop, future, fn, args, deadline)
            return
        for (future, _, _), (ok, value) in zip(writes, outcomes, strict=True):
            if not ok and not isinstance(value, DatastoreError):
                value = _translate(value)
            _settle(future, ok, value)
        self._committed(loop)

    def _committed(self, loop: asyncio.AbstractEventLoop) -> None:
        self._commits += 1
        if self._commits < INLINE_CHECKPOINT_COMMITS or self._checkpointing:
            return
        # One checkpoint queued at a time: a loop committing faster than the writer
        # thread gets the GIL would otherwise queue one per interval, for nothing.
        self._commits, self._checkpointing = 0, True
        self._hand_checkpoint(loop, restart=False)

    def _hand_checkpoint(self, loop: asyncio.AbstractEventLoop, *, restart: bool) -> None:
        """Hand the writer thread a PASSIVE copy, or the RESTART that inline writes wait for."""
        self._restarting = restart
        done: asyncio.Future[None] = loop.create_future()
        done.add_done_callback(functools.partial(self._checkpointed, loop))
        fn = _restart_wal if restart else _copy_frames
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        self._writer.hand(loop, done, fn, (), deadline, groupable=False)

    def _checkpointed(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        # Nobody awaits it; a failed checkpoint is retried after the next commits.
        was_restart, self._restarting = self._restarting, False
        if not done.cancelled():
            done.exception()
        if not was_restart and not done.cancelled():
            # Only the frames committed while the copy ran are left: the RESTART copies
            # those and starts the WAL over, so inline writes wait for a few pages, not
            # for the whole interval's. (A complete PASSIVE copy alone did not get the WAL
            # started over by the next write in the tests; RESTART does it itself.)
            self._hand_checkpoint(loop, restart=True)
            return
        self._checkpointing = False

    def _commit(self, writes: list[_Write]) -> list[tuple[bool, Any]] | None:
        """Run the writes in one transaction; None if it could not start or ran out of budget."""
        conn, alone = self._conn, len(writes) == 1
        if alone and writes[0][1] in _AUTOCOMMIT:
            return self._autocommit(writes[0][1], writes[0][2])
        self._steps = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # a damaged file: DatabaseError, not OperationalError
            if _hand_over(exc):
                return None
            return [(False, exc)] * len(writes)
        outcomes: list[tuple[bool, Any]] = []
        try:
            for _, fn, args in writes:
                # A lone write, or one of one statement, needs no savepoint: see run_group.
                guarded = not alone and fn not in stmt.ONE_STATEMENT
                if guarded:
                    conn.execute("SAVEPOINT fleet_call")
                try:
                    outcomes.append((True, self._call(fn, args)))
                except Exception as exc:
                    if _hand_over(exc) or not conn.in_transaction:
                        raise  # out of budget, or SQLite rolled it all back (I/O error)
                    if alone:
                        conn.execute("ROLLBACK")
                    elif guarded:
                        conn.execute("ROLLBACK TO fleet_call")
                    outcomes.append((False, exc))
                if guarded:
                    conn.execute("RELEASE fleet_call")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _hand_over(exc):
                return None
            if not isinstance(exc, Exception):
                raise
            return [(False, exc)] * len(writes)
        return outcomes

    def _autocommit(
        self, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> list[tuple[bool, Any]] | None:
        """A lone insert as its own transaction (SQLite's autocommit); None: hand it over.

        Its one statement takes the write lock, writes and commits, as ``BEGIN
        IMMEDIATE``, the insert and ``COMMIT`` did in three statements (~15.8k
        instructions a one-call enqueue, 1.9 %: docs/benchmarks.md, "Twenty-fourth
        session"); the same file locks and WAL frames. It runs outside the step
        budget: its commit happens inside the statement, and SQLite may call the
        progress handler after that, so an interrupt could report a written document
        as failed and redo it on the writer thread ("Eighteenth session"). One row's
        insert is bounded, as the ``COMMIT`` it replaces, also unbudgeted, was. The
        lock taken elsewhere (busy timeout 0) fails it at once, before it writes
        anything: it goes to the writer thread. A refused insert (the id exists, the
        size trigger) changed nothing, and no transaction is left open either way.
        """
        conn = self._conn
        try:
            return [(True, fn(conn, *args))]
        except Exception as exc:
            if conn.in_transaction:  # a failed statement ends its own; never left open
                conn.execute("ROLLBACK")
            if _hand_over(exc):
                return None
            return [(False, exc)]

    def close(self) -> None:
        """Commit what is queued, then close the connection."""
        self.flush()
        with self._lock:
            self._conn.close()


def _copy_frames(conn: sqlite3.Connection) -> None:
    """Copy the WAL's frames into the database without blocking writers (PASSIVE).

    The first half of an inline connection's checkpoint, on the writer thread:
    inline commits go on meanwhile; frames committed while it ran are left for
    ``_restart_wal``.
    """
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _restart_wal(conn: sqlite3.Connection) -> None:
    """Copy the frames left and have the next write start the WAL over (RESTART).

    The second half, after ``_copy_frames``. PASSIVE alone never
    finished while the loop kept committing (every commit lands after it began),
    so SQLite never started the WAL over and it grew without bound: 35 MB a
    thousand jobs in ``python -m bench soak``. RESTART holds the write lock until
    every frame is copied and no reader needs the WAL. Inline writes meanwhile
    queue on this thread behind it (``_Inline.write``), so the loop never waits,
    and the WAL stays within the frames of ``INLINE_CHECKPOINT_COMMITS`` commits.
    With the copy done first, they wait for the pages of the commits made during
    the copy only (a RESTART alone held them ~23 ms per 500 commits in the drain).
    """
    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, retrying while another process holds the lock it needs."""
    # Switching to WAL needs an exclusive lock and SQLite answers "locked" at once,
    # without its busy handler, when processes open a fresh file together.
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


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


def _is_full(exc: sqlite3.Error) -> bool:
    """Whether SQLite said the database or the disk is full (SQLITE_FULL)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL


def _read_and_try_the_lock(conn: sqlite3.Connection) -> bool:
    """Read the schema's first row; whether the write lock was free (taken and let go).

    ``BEGIN IMMEDIATE`` with no wait takes the lock a writer needs and ``ROLLBACK``
    lets it go at once, writing nothing. The reader's connection does it, whose
    busy timeout is set to 0 for the try: a reader never waits for the lock.
    """
    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY:
            raise
        return False
    else:
        conn.execute("ROLLBACK")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {math.floor(BUSY_TIMEOUT_SECONDS * 1000)}")
    return True


class SqliteBackend:
    """A ``Backend`` on one SQLite file, safe to share between threads and processes."""

    expires_documents = False
    """Documents stay until deleted; ``ContainerSpec.default_ttl`` is a Cosmos DB setting."""
    local = True
    """Calls run in this process: the time they take is its CPU's."""

    def __init__(self, path: str) -> None:
        self.path, self.synchronous = _parse_path(path)
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        self._inline: _Inline | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened
        # Why writes are refused while the file at the path is not the one opened (it
        # was deleted or replaced: ``check_file``), else None; read by every write.
        self._gone: str | None = None
        self._watch: asyncio.Task[None] | None = None
        self._full_at = -math.inf  # when a write last failed with SQLITE_FULL (monotonic)
        self._locked_since: float | None = None  # since when ``ping`` finds the lock taken

    def _connect(self, inline: bool = False) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=0 if inline else BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            cached_statements=512,
            check_same_thread=not inline,  # _Inline's lock keeps it to one thread at a time
        )
        try:
            # Only a new, empty file takes it (before WAL, which writes the first page).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            _enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # A checkpoint costs two fsyncs under NORMAL; every 4000 pages (~16 MB of
            # WAL) instead of SQLite's 1000 makes them a quarter as frequent per write.
            # The inline connection leaves them to the writer thread (_Inline.flush).
            pages = 0 if inline else WAL_CHECKPOINT_PAGES
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
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
        writer = _Worker("fleet-sqlite-writer", grouping=True)
        # Each :memory: connection is its own database, so there reads share the writer.
        reader = writer if self.path == ":memory:" else _Worker("fleet-sqlite-reader")
        try:
            await writer.open(self._connect)
            if reader is not writer:
                await reader.open(self._connect)
        except BaseException:
            await writer.close()
            await reader.close()
            raise
        if INLINE and reader is not writer:
            try:
                conn = await writer.run(lambda _: self._connect(inline=True))
            except BaseException:
                await writer.close()
                await reader.close()
                raise
            self._inline = _Inline(conn, writer)
        self._writer, self._reader = writer, reader
        self._file = self._identity()
        if self._file is not None:
            self._watch = asyncio.create_task(self._watch_file(), name="fleet-sqlite-file")

    async def _watch_file(self) -> None:
        """``check_file`` every ``FILE_CHECK_SECONDS`` while the store is open."""
        while True:
            await asyncio.sleep(FILE_CHECK_SECONDS)
            self.check_file()

    def check_file(self) -> None:
        """Refuse writes while the file at the path is not the one opened (one ``stat``).

        A file deleted (or replaced) under an open store still takes its writes, into
        an inode nobody can open again: each was acknowledged and lost at the next
        restart. The check runs on a timer and at every ``ping``, not per write: a
        ``stat`` per commit would cost more than the rest of a small write's system
        calls. A write can so be lost for at most ``FILE_CHECK_SECONDS`` after the
        file goes. Not for good: a file moved back (the same inode) takes writes again.
        """
        if self._file is None:
            return
        found = self._identity()
        if found == self._file:
            self._gone = None
        else:
            self._gone = (
                f"sqlite: {self.path} was deleted or replaced while open; restart to use it"
            )

    def _identity(self) -> tuple[int, int] | None:
        """The file at the path (device, inode); None for ``:memory:`` or no file there."""
        if self.path == ":memory:":
            return None
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    async def close(self) -> None:
        """Commit the inline writes queued, close every connection; safe to call twice."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        workers = {id(w): w for w in (self._writer, self._reader) if w is not None}
        self._writer = self._reader = None
        for worker in workers.values():
            await worker.close()

    async def ping(self) -> None:
        """Fail where writes would: the file, the write lock, the disk (docs/operations.md).

        - The schema's first row is read: ``SELECT 1`` reads no page, so a damaged or
          emptied file answered it (``/readyz`` said ready while every request got 503).
        - The file opened is still the one at the path: one deleted or replaced while
          open would take writes into the old file, which a restart never sees again;
          from this check (or the timer's) on, writes are refused (``check_file``).
        - The write lock: a read goes through it (WAL), so a lock held by another
          process for minutes left the store "ready" while every write failed.
        - The disk: ``statvfs``, and a write that failed with SQLITE_FULL recently.

        Four statements, a ``stat`` and a ``statvfs``, at most once a second per replica
        (``/readyz`` shares one ping a second); nothing is added to a write but the
        failure path's check of its cause.
        """
        lock_free = await self._r.run(_read_and_try_the_lock)
        self.check_file()
        if self._gone is not None:
            raise StoreUnavailableError(self._gone)
        # 1. The write lock: taken by another connection now and at every ping since
        #    more than a write's busy timeout ago, so writes are failing (503).
        now = time.monotonic()
        if lock_free:
            self._locked_since = None
        else:
            if self._locked_since is None:
                self._locked_since = now
            since = self._locked_since
            if now - since >= LOCK_HELD_SECONDS:
                raise StoreUnavailableError(
                    f"sqlite: another connection has held the write lock of {self.path} "
                    f"for {now - since:.0f} s at least"
                )
        # 2. The disk: nearly no space left, or a write failed for it a moment ago.
        if now - self._full_at < FULL_SECONDS:
            raise StoreUnavailableError(f"sqlite: a write to {self.path} found the disk full")
        if self.path != ":memory:" and hasattr(os, "statvfs"):  # not on Windows
            try:
                disk = os.statvfs(Path(self.path).parent)
            except OSError:
                return  # the directory went: ``check_file`` has said so already
            if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
                raise StoreUnavailableError(
                    f"sqlite: the disk holding {self.path} has under {MIN_FREE_BYTES} bytes free"
                )

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write: inline at the end of this loop turn, else on the writer thread."""
        if self._gone is not None:
            raise StoreUnavailableError(self._gone)  # it would be acknowledged, then lost
        try:
            if self._inline is not None:
                future = self._inline.write(fn, args)
                if future is not None:
                    return await future
            return await self._w.write(fn, *args)
        except StoreUnavailableError as exc:
            # For ``ping``: a full disk shows only when a write fails for it.
            cause = exc.__cause__
            if isinstance(cause, sqlite3.Error) and _is_full(cause):
                self._full_at = time.monotonic()
            raise

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """A short read: inline, else (lock taken, over budget, another thread) on the reader."""
        if self._inline is not None:
            value = self._inline.read(fn, args)
            if value is not _Elsewhere.RUN:
                return value
        return await self._r.run(fn, *args)

    async def ensure_container(self, spec: ContainerSpec) -> None:
        """Create the container's table and indexes if missing; idempotent across processes."""
        await self._w.run(stmt.ensure, spec)

    async def create(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert; AlreadyExistsError if the id exists in that partition."""
        return await self._write(stmt.insert, spec, doc)

    async def get(self, spec: ContainerSpec, doc_id: str, partition_key: str) -> Document:
        """Read; NotFoundError if missing."""
        return await self._read(stmt.get, spec, doc_id, partition_key)

    async def replace(
        self, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
    ) -> Document:
        """Overwrite; NotFoundError if missing, PreconditionFailedError on etag mismatch."""
        return await self._write(stmt.replace, spec, doc, etag)

    async def upsert(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert or overwrite."""
        return await self._write(stmt.upsert, spec, doc)

    async def delete(
        self, spec: ContainerSpec, doc_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Remove; False if it was missing, PreconditionFailedError on etag mismatch."""
        return await self._write(stmt.delete, spec, doc_id, partition_key, etag)

    async def update_if_match(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        """Write ``expected`` patched, in one conditional UPDATE, if the stored etag is its etag."""
        return await self._write(stmt.update_if_match, spec, doc_id, partition_key, expected, patch)

    async def batch(
        self, spec: ContainerSpec, partition_key: str, ops: Sequence[PreparedOp]
    ) -> list[Document | None]:
        """Run all operations in one IMMEDIATE transaction; BatchError and ROLLBACK on failure."""
        return await self._write(stmt.batch, spec, partition_key, ops)

    async def query(self, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
        """Up to ``plan.fetch`` matches after ``plan.after``, in ``plan.sort`` order."""
        if plan.fetch is not None and plan.fetch <= INLINE_QUERY_MAX:
            return await self._read(stmt.query, spec, plan)
        return await self._r.run(stmt.query, spec, plan)

    async def count(self, spec: ContainerSpec, plan: QueryPlan) -> int:
        """How many documents match ``plan.where`` (and partition)."""
        return await self._r.run(stmt.count, spec, plan)
