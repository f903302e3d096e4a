"""The agent's exceptions: one root, a few subclasses a worker can act on.

::

    AgentError                    root of everything this package raises
    ├── CoordinatorUnavailable    connection refused / reset, timeout, 429/502/503/504 — retried,
    │                             after the answer's ``Retry-After`` when it has one
    ├── ServerError               500 internal_error: a coordinator bug, never retried
    ├── Unauthorized              401 or 403: a wrong, revoked or admin token
    ├── LeaseLost                 409 lease_lost: the caller no longer holds that epoch
    ├── RequestRejected           any other 4xx (400, 404, 409, 413, 422) with its code
    └── JobFailed                 raised by a handler: fail the job (retryable or not)

HTTP answers and transport errors (the standard library's ``OSError``s from the
agent's own connections, or httpx's) become these in
``raise_for_answer`` and ``translate_transport_errors``, the client's one boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fleet_wire import (
    UNAVAILABLE_STATUSES,
    Answered,
    WireError,
    error_answer,
    retry_after,
    retry_wait,
    transport_errors,
)

__all__ = [
    "AgentError",
    "CoordinatorUnavailable",
    "JobFailed",
    "LeaseLost",
    "RequestRejected",
    "ServerError",
    "Unauthorized",
    "raise_for_answer",
    "redact_url",
    "retry_unavailable",
    "translate_transport_errors",
]


class AgentError(WireError):
    """The agent could not do what was asked."""


class CoordinatorUnavailable(AgentError):
    """The coordinator cannot be reached or its store is unavailable; retry later."""


class ServerError(AgentError):
    """The coordinator failed on a bug (500 ``internal_error``); retrying would repeat it."""


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


def raise_for_answer(response: Answered) -> None:
    """Raise the ``AgentError`` matching a non-2xx answer (SPEC error shape)."""
    if 200 <= response.status_code < 300:
        return
    error = error_answer(response)
    status, code = error.status, error.code
    kwargs: dict[str, Any] = {"status": status, "code": code, "details": error.details}
    if status in UNAVAILABLE_STATUSES:
        unavailable = CoordinatorUnavailable(error.text, **kwargs)
        unavailable.retry_after = retry_after(response)
        raise unavailable
    if status in (401, 403):
        raise Unauthorized(error.text, **kwargs)
    if status == 409 and code == "lease_lost":
        raise LeaseLost(error.text, **kwargs)
    if status == 500:  # SPEC: a defect answers 500 and is not retried as an outage
        raise ServerError(error.text, **kwargs)
    if status > 500:  # 501, 505, …: a broken proxy in front, not the coordinator's answer
        raise CoordinatorUnavailable(error.text, **kwargs)
    raise RequestRejected(error.text, **kwargs)


def redact_url(url: str) -> str:
    """``url`` fit for a log line or a message: credentials (``user:password@``) masked.

    Parsed by hand, not by ``urlsplit``: it raises on some malformed URLs, and a URL
    that is to be shown in an error message may well be malformed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}{sep}***@{authority.rpartition('@')[2]}{rest[end:]}"


@contextmanager
def translate_transport_errors(url: str) -> Iterator[None]:
    """Turn transport errors (refused, reset, timeout) into ``CoordinatorUnavailable``."""
    try:
        with transport_errors(url, CoordinatorUnavailable):  # httpx's
            yield
    # The agent's own connections (connections.py): refused, reset, TLS, a broken
    # answer, and TimeoutError (an OSError) when the request's time passes (only this
    # block's request can raise one here: an outer deadline cancels instead).
    except OSError as exc:
        reason = str(exc) or type(exc).__name__
        raise CoordinatorUnavailable(f"cannot reach the coordinator at {url}: {reason}") from exc


def retry_unavailable(exc: Exception, wait_max: float | None = None) -> bool | float:
    """Stamina's ``on=``: retry ``CoordinatorUnavailable`` only, after its ``Retry-After``
    (at most ``wait_max``)."""
    return retry_wait(exc, CoordinatorUnavailable, wait_max)
