"""A small per-replica cache of documents this replica read or wrote last.

It saves store requests, never correctness: every write that starts from a
cached document is conditional on its etag, so a stale entry costs one
conflict and a re-read. Decisions that would not write (a rejection, a no-op)
are never answered from the cache; the callers re-read first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from fleet_datastore import Document

from ..domain import JobState
from ..store import CODEC_KEY, CODEC_STAMP, job_from_doc

__all__ = ["DocCache", "JobStates"]


class DocCache:
    """Newest-first documents by id, bounded in size and optionally in age."""

    def __init__(self, max_items: int, ttl_seconds: float | None = None) -> None:
        self._items: OrderedDict[str, tuple[Document, float]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl_seconds

    def get(self, doc_id: str) -> Document | None:
        """The cached document, or None if absent or older than the time limit."""
        entry = self._items.get(doc_id)
        if entry is None:
            return None
        doc, stored = entry
        if self._ttl is not None and time.monotonic() - stored > self._ttl:
            del self._items[doc_id]
            return None
        return doc

    def put(self, doc: Document) -> None:
        """Remember ``doc`` as the newest known version."""
        if self._max <= 0:
            return
        self._items[doc.id] = (doc, time.monotonic())
        self._items.move_to_end(doc.id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def evict(self, doc_id: str) -> None:
        """Forget a document (deleted, or known to be stale)."""
        self._items.pop(doc_id, None)


class JobStates:
    """Job documents decoded, by id and etag: decoded once, however many steps read them.

    An etag names one stored version of a document (every write draws a new one),
    so the ``JobState`` of an ``(id, etag)`` never changes. A claim decodes each
    candidate to check it, then again to lease it, and the completion decodes
    what the lease wrote: ``remember`` records the state a write stored, so the
    next step starts from it. Bounded: cleared when full.

    A body stamped with this version's ``CODEC_STAMP`` is known to be stored
    exactly as ``job_to_doc`` encodes its state (every job write of this version
    leaves such a body, on this replica or another), so the next write over it can
    take its patch from the two states (``written``, ``store.job_patch``): a
    completion over the lease this replica wrote, and a claim over the body its
    candidate query read. A body without the stamp, or with another version's, may
    differ from its state's encoding, and is patched the long way.
    """

    def __init__(self, max_items: int = 4096) -> None:
        self._items: dict[tuple[str, str], JobState] = {}
        self._max = max_items

    def of(self, doc: Document) -> JobState:
        """The domain value of a stored job document."""
        key = (doc.id, doc.etag)
        state = self._items.get(key)
        if state is None:
            state = job_from_doc(doc.body)
            self._put(key, state)
        return state

    def remember(self, doc: Document, state: JobState) -> None:
        """``doc`` was just written from ``state`` (``job_to_doc``): its decoding."""
        self._put((doc.id, doc.etag), state)

    def written(self, doc: Document) -> JobState | None:
        """The state whose exact encoding ``doc``'s body is (stamped by this codec), else None."""
        if doc.body.get(CODEC_KEY) != CODEC_STAMP:
            return None
        return self.of(doc)

    def _put(self, key: tuple[str, str], state: JobState) -> None:
        if len(self._items) >= self._max:
            self._items.clear()
        self._items[key] = state
