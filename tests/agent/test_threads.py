"""``run_in_daemon_thread``: sync handlers in daemon threads that are reused between calls.

A thread that finished its call takes the next one (a thread start per sync job cost
~120 µs of CPU, against ~15 µs for a reused thread), and a thread still busy with a
call whose caller stopped waiting is never handed another.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from fleet_agent.threads import run_in_daemon_thread


async def test_calls_one_after_another_reuse_their_threads() -> None:
    """Fifty calls in turn run in a few threads (before: fifty threads, one a call)."""
    seen: list[threading.Thread] = []
    for _ in range(50):
        seen.append(await run_in_daemon_thread(threading.current_thread))
    distinct = {id(thread): thread for thread in seen}  # the list keeps every one alive
    assert len(distinct) < 10
    assert all(thread.daemon for thread in seen)


async def test_a_thread_busy_with_an_abandoned_call_is_not_handed_another() -> None:
    """Calls made while an abandoned one still runs are answered, each in another thread."""
    started, release = threading.Event(), threading.Event()
    stuck: list[threading.Thread] = []

    def hang() -> str:
        stuck.append(threading.current_thread())
        started.set()
        release.wait(10)  # until the test lets it go (10 s: a guard, not a wait)
        return "too late"

    task = asyncio.create_task(run_in_daemon_thread(hang))
    try:
        assert await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            others = [await run_in_daemon_thread(threading.current_thread) for _ in range(5)]
        assert all(thread is not stuck[0] for thread in others)
        assert stuck[0].is_alive()  # still in the abandoned call
    finally:
        release.set()


async def test_a_call_runs_in_the_callers_context_and_raises_its_exception() -> None:
    """The context is copied as ``asyncio.to_thread`` copies it; an exception comes back."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("the caller's")
    assert await run_in_daemon_thread(var.get) == "the caller's"

    def boom() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        await run_in_daemon_thread(boom)
