"""``run_in_daemon_thread``: a sync handler in a thread the process does not wait for.

Python cannot stop a thread. ``asyncio.to_thread`` runs a call in the loop's
default executor, whose threads are joined at exit twice over: ``asyncio.run``
shuts the executor down and waits for it, and ``concurrent.futures`` joins its
workers when the interpreter exits. A sync handler still running when the
shutdown's grace period ends had its job released, and then kept the agent
process up until it returned — forever, for a stuck one.

So each sync handler gets a daemon thread of its own. Cancelling the awaiting
task abandons the thread: its job is handled as any cancelled handler's, the
return value or exception it ends with is dropped, and the thread runs on until
it returns or the process exits, which does not wait for it. A thread costs its
start (tens of µs) per sync job; reused threads would be an executor's, which is
exactly what is joined at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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

    threading.Thread(target=target, name=name, daemon=True).start()
    return await answer
