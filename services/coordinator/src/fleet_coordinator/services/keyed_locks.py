"""``KeyedLocks``: one ``asyncio.Lock`` per key, alive only while it is held or awaited.

A conditional-write loop (read, decide, write on the etag read, re-read on a
conflict) gives up after ``MAX_CAS_ATTEMPTS`` conflicts with a 503, since a
document that keeps changing that fast looks like a store in trouble. Writers
of one document within one replica would otherwise race each other to that
bound: ten admins putting one schedule at once lost eight rounds about one time
in fifty. Serialised here, they take turns, each on a fresh read, and only
writers on other replicas can make a loop lose.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """Locks by key; a key's lock is dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, key: str) -> asyncio.Lock:
        """The lock of ``key`` (the same object while anyone holds a reference to it)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock
