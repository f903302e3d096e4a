"""``PausedQueues``: one replica's copy of which queues are paused (owned by ``Coordinator``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleet_datastore import Document

__all__ = ["PausedQueues"]


@dataclass
class PausedQueues:
    """This replica's view of which queues are paused, and of every queue it knows of."""

    paused: frozenset[str] = frozenset()
    known: frozenset[str] = frozenset()

    def unpaused(self, queues: Sequence[str] | None, local: Iterable[str]) -> Sequence[str] | None:
        """The queues a claim may look at: ``queues`` minus the paused ones.

        ``None`` (every queue) stays ``None`` while nothing is paused; otherwise it
        becomes every known queue that is not paused. A queue first enqueued on
        another replica since the last refresh is then missing for at most one
        reaper interval, only while some queue is paused.
        """
        if not self.paused:
            return queues
        if queues is None:
            return tuple(sorted((self.known | frozenset(local)) - self.paused))
        return tuple(q for q in queues if q not in self.paused)

    def mark(self, queue: str, paused: bool) -> None:
        """Note a pause or resume this replica has just written."""
        self.known |= {queue}
        self.paused = self.paused | {queue} if paused else self.paused - {queue}

    def update(self, markers: list[Document]) -> bool:
        """Take the stored markers as the truth; True when a queue was resumed."""
        known = frozenset(str(d.body["name"]) for d in markers)
        paused = frozenset(str(d.body["name"]) for d in markers if d.body.get("paused"))
        resumed = bool(self.paused - paused)
        self.paused, self.known = paused, known
        return resumed
