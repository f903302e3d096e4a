"""``LongPolls``: the long-polls waiting per agent on this replica, and their cap (429)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import TooManyRequestsError

__all__ = ["LongPolls"]


class LongPolls:
    """Counts the claims waiting per agent here; one past ``cap`` is refused at once.

    Each waiter re-polls on every wake-up, so one greedy agent could otherwise
    multiply the store's load at will (``FLEET_MAX_LONG_POLLS_PER_AGENT``).
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._waiting: dict[str, int] = {}

    def waiting(self, agent_id: str) -> int:
        """Long-polls of ``agent_id`` waiting on this replica now."""
        return self._waiting.get(agent_id, 0)

    def __len__(self) -> int:
        """Agents with a long-poll waiting here."""
        return len(self._waiting)

    @contextmanager
    def slot(self, agent_id: str) -> Iterator[None]:
        """One of the agent's slots, held for the block; ``TooManyRequestsError`` when none."""
        waiting = self.waiting(agent_id)
        if waiting >= self.cap:
            raise TooManyRequestsError(
                f"this agent already has {waiting} long-polls waiting on this replica",
                code="too_many_long_polls",
                limit=self.cap,
            )
        self._waiting[agent_id] = waiting + 1
        try:
            yield
        finally:
            left = self._waiting[agent_id] - 1
            if left:
                self._waiting[agent_id] = left
            else:
                del self._waiting[agent_id]
