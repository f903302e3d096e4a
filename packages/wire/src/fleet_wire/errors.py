"""The root both clients' exception trees stand on, and how they wait before a retry."""

from __future__ import annotations

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
    """The answer's ``Retry-After`` in seconds; ``None`` when absent or an HTTP date."""
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(float(value), 0.0)
    except ValueError:  # an HTTP date (a proxy's): back off as usual
        return None


def retry_wait(exc: Exception, unavailable: type[WireError]) -> bool | float:
    """A stamina ``on=`` answer: retry ``unavailable`` only, after its ``Retry-After`` if any."""
    if not isinstance(exc, unavailable):
        return False
    return True if exc.retry_after is None else exc.retry_after
