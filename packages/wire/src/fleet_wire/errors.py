"""The root both clients' exception trees stand on, and how they wait before a retry."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .answers import Answered

__all__ = ["WireError", "retry_after", "retry_wait"]


class WireError(Exception):
    """A request to the coordinator did not do what was asked.

    The message defaults to the subclass's docstring; ``status``, ``code`` and
    ``details`` are those of the SPEC error shape when the coordinator answered.
    """

    retry_after: float | None = None
    """Seconds the coordinator asked to wait (``Retry-After`` on 429/503), when it said."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = str(self.args[0])
        self.status = status
        self.code = code
        self.details: dict[str, Any] = details or {}


def retry_after(response: Answered) -> float | None:
    """The answer's ``Retry-After`` in seconds; ``None`` when absent, an HTTP date or not finite."""
    value = response.headers.get("retry-after")
    try:
        seconds = None if value is None else float(value)
    except ValueError:  # an HTTP date (a proxy's): back off as usual
        return None
    if seconds is None or not math.isfinite(seconds):
        return None  # "inf" waited for ever, "nan" not at all (float() takes both)
    return max(seconds, 0.0)


def retry_wait(
    exc: Exception, unavailable: type[WireError], wait_max: float | None = None
) -> bool | float:
    """A stamina ``on=`` answer: retry ``unavailable`` only, after its ``Retry-After`` if any.

    The ``Retry-After`` wait is capped at ``wait_max``, the longest wait of the caller's
    backoff: stamina waits whatever this returns, past its own cap and the call's
    time budget, so a proxy answering ``Retry-After: 3600`` froze the caller for an hour.
    """
    if not isinstance(exc, unavailable):
        return False
    if exc.retry_after is None:
        return True
    return exc.retry_after if wait_max is None else min(exc.retry_after, wait_max)
