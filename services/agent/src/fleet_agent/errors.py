"""The agent's exceptions: one root, a few subclasses a worker can act on.

::

    AgentError                    root of everything this package raises
    ├── CoordinatorUnavailable    connection refused / reset, timeout, 429/502/503/504 — retried
    ├── Unauthorized              401 or 403: a wrong, revoked or admin token
    ├── LeaseLost                 409 lease_lost: the caller no longer holds that epoch
    ├── RequestRejected           any other 4xx (400, 404, 409, 413, 422) with its code
    └── JobFailed                 raised by a handler: fail the job (retryable or not)

HTTP answers and httpx errors become these in ``raise_for_answer`` and
``translate_transport_errors``, the client's one boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

__all__ = [
    "AgentError",
    "CoordinatorUnavailable",
    "JobFailed",
    "LeaseLost",
    "RequestRejected",
    "Unauthorized",
    "raise_for_answer",
    "translate_transport_errors",
]


class AgentError(Exception):
    """The agent could not do what was asked."""

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


class CoordinatorUnavailable(AgentError):
    """The coordinator cannot be reached or its store is unavailable; retry later."""


class Unauthorized(AgentError):
    """The coordinator refused the agent token."""


class LeaseLost(AgentError):
    """The agent no longer holds this lease (expired, reaped, or taken by another claim)."""


class RequestRejected(AgentError):
    """The coordinator rejected the request."""


class JobFailed(AgentError):
    """A handler's way to fail its job; ``retryable=False`` fails it for good."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# 429: too many long-polls of this agent waiting on the replica (retry after a pause).
_UNAVAILABLE = {429, 502, 503, 504}


def raise_for_answer(response: httpx.Response) -> None:
    """Raise the ``AgentError`` matching a non-2xx answer (SPEC error shape)."""
    if response.is_success:
        return
    status = response.status_code
    code, message, details = _error_fields(response)
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": details}
    text = f"{status} {code}: {message}"
    if status in _UNAVAILABLE:
        raise CoordinatorUnavailable(text, **kwargs)
    if status in (401, 403):
        raise Unauthorized(text, **kwargs)
    if status == 409 and code == "lease_lost":
        raise LeaseLost(text, **kwargs)
    if status >= 500:  # SPEC allows no 500; treat a broken proxy or server as unavailable
        raise CoordinatorUnavailable(text, **kwargs)
    raise RequestRejected(text, **kwargs)


def _error_fields(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"]), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        return "http_error", response.reason_phrase or "unexpected answer", {}


@contextmanager
def translate_transport_errors(url: str) -> Iterator[None]:
    """Turn httpx transport errors (refused, reset, timeout) into ``CoordinatorUnavailable``."""
    try:
        yield
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise CoordinatorUnavailable(f"cannot reach the coordinator at {url}: {reason}") from exc
