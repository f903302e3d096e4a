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

from contextlib import AbstractContextManager
from typing import Any

import httpx
from fleet_wire import UNAVAILABLE_STATUSES, error_answer, transport_errors

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


def raise_for_answer(response: httpx.Response) -> None:
    """Raise the ``AgentError`` matching a non-2xx answer (SPEC error shape)."""
    if response.is_success:
        return
    error = error_answer(response)
    status, code = error.status, error.code
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": error.details}
    if status in UNAVAILABLE_STATUSES:
        raise CoordinatorUnavailable(error.text, **kwargs)
    if status in (401, 403):
        raise Unauthorized(error.text, **kwargs)
    if status == 409 and code == "lease_lost":
        raise LeaseLost(error.text, **kwargs)
    if status >= 500:  # SPEC allows no 500; treat a broken proxy or server as unavailable
        raise CoordinatorUnavailable(error.text, **kwargs)
    raise RequestRejected(error.text, **kwargs)


def translate_transport_errors(url: str) -> AbstractContextManager[None]:
    """Turn httpx transport errors (refused, reset, timeout) into ``CoordinatorUnavailable``."""
    return transport_errors(url, CoordinatorUnavailable)
