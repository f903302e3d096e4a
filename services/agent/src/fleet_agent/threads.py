"""``run_in_daemon_thread``: a sync handler in a thread the process does not wait for.

Python cannot stop a thread. ``asyncio.to_thread`` runs a call in the loop's
default executor, whose threads are joined at exit twice over: ``asyncio.run``
shuts the executor down and waits for it, and ``concurrent.futures`` joins its
workers when the interpreter exits. A sync handler still running when the
shutdown's grace period ends had its job released, and then kept the agent
process up until it returned — forever, for a stuck one.

So sync handlers run in daemon threads, which the process does not wait for.
Cancelling the awaiting task abandons the call: its job is handled as any
cancelled handler's, the return value or exception it ends with is dropped, and
its thread runs on until the call returns or the process exits. A thread that
finishes a call waits for the next one (``_IDLE_SECONDS``, at most ``_MAX_IDLE``
threads waiting): starting a thread per job cost ~120 µs of CPU a call against
~70 for ``asyncio.to_thread`` (docs/benchmarks.md, "Twelfth session"); a thread
still busy with an abandoned call is never handed another.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

__all__ = ["run_in_daemon_thread"]

_T = TypeVar("_T")


async def run_in_daemon_thread(fn: Callable[..., _T], *args: Any, name: str | None = None) -> _T:
    """``fn(*args)`` in a new daemon thread, in the current context; cancelling abandons it.

    The context is copied as ``asyncio.to_thread`` copies it (the run's span stays current).
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()  # the run's span, for spans the handler opens

    def settle(outcome: Callable[[], None]) -> None:
        if not answer.done():  # else the caller stopped waiting (cancelled)
            outcome()

    def target() -> None:
        outcome: Callable[[], None]
        try:
            outcome = functools.partial(answer.set_result, context.run(fn, *args))
        except BaseException as exc:  # SystemExit too: the handler's failure (worker.py)
            outcome = functools.partial(answer.set_exception, exc)
        # RuntimeError: the loop is closed, the worker long gone; nobody wants the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    _Pooled.run_in_one(target, name)
    return await answer


_IDLE_SECONDS = 60.0
"""How long a thread with no call waits for one before it ends."""
_MAX_IDLE = 64
"""Threads waiting for a call at most; one that finishes a call beyond them ends."""


class _Pooled(threading.Thread):
    """A daemon thread that runs calls one after another while it is given them."""

    _idle: ClassVar[list[_Pooled]] = []  # the threads waiting for a call, this process's
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], str | None]] = queue.SimpleQueue()

    @classmethod
    def run_in_one(cls, call: Callable[[], None], name: str | None) -> None:
        """Run ``call`` in a waiting thread, or in a new one if none waits."""
        with cls._lock:
            thread = cls._idle.pop() if cls._idle else None
        if thread is None:
            thread = cls()
            thread.start()
        thread._calls.put((call, name))

    def run(self) -> None:
        while True:
            try:
                call, name = self._calls.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self in self._idle:
                        self._idle.remove(self)
                        return
                continue  # taken just now: its call is on the way
            if name is not None:
                self.name = name  # as py-spy and faulthandler show the thread
            call()
            with self._lock:
                if len(self._idle) >= _MAX_IDLE:
                    return
                self._idle.append(self)
