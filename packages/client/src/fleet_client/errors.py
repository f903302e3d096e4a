"""The client's exceptions: one root, and the subclasses a caller acts on.

::

    FleetError                    root of everything this package raises
    ├── CoordinatorUnavailable    connection refused / reset, timeout, 429/502/503/504
    ├── Unauthorized              401 or 403: a missing, wrong or agent token
    ├── ServerError               500 internal_error: a coordinator bug, never retried
    └── RequestRejected           any other 4xx, with .status, .code and .details
        ├── NotFound              404: no such job, agent or schedule
        └── Conflict              409: the state does not allow it (already_terminal, …)

``raise_for_answer`` is the one place an answer becomes one of these; transport
errors are translated by ``fleet_wire.transport_errors``.
"""

from __future__ import annotations

from typing import Any

from fleet_wire import UNAVAILABLE_STATUSES, Answered, WireError, error_answer, retry_after

__all__ = [
    "Conflict",
    "CoordinatorUnavailable",
    "FleetError",
    "NotFound",
    "RequestRejected",
    "ServerError",
    "Unauthorized",
    "raise_for_answer",
]


class FleetError(WireError):
    """The coordinator could not do what was asked."""


class CoordinatorUnavailable(FleetError):
    """The coordinator cannot be reached or its store is unavailable; retry later."""


class Unauthorized(FleetError):
    """The coordinator refused the token (missing, unknown, or not the admin token)."""


class ServerError(FleetError):
    """The coordinator failed on a bug (500); retrying would repeat it."""


class RequestRejected(FleetError):
    """The coordinator rejected the request."""


class NotFound(RequestRejected):
    """No such job, agent or schedule."""


class Conflict(RequestRejected):
    """The resource's state does not allow the request (or an idempotency key was reused)."""


_BY_STATUS: dict[int, type[FleetError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    500: ServerError,
}


def raise_for_answer(response: Answered) -> None:
    """Raise the ``FleetError`` matching a non-2xx answer (SPEC error shape)."""
    if 200 <= response.status_code < 300:
        return
    error = error_answer(response)
    fields: dict[str, Any] = {"status": error.status, "code": error.code, "details": error.details}
    if error.status in UNAVAILABLE_STATUSES:
        unavailable = CoordinatorUnavailable(error.text, **fields)
        unavailable.retry_after = retry_after(response)
        raise unavailable
    kind = _BY_STATUS.get(error.status, RequestRejected if error.status < 500 else ServerError)
    raise kind(error.text + _fields_named(error.details), **fields)


_NAMED = 3
"""Invalid fields a message names; ``.details`` holds them all."""


def _fields_named(details: dict[str, Any]) -> str:
    """`` (body.max_attempts: Input should be …)`` from a 422's ``details.errors``, or ``""``.

    "the request is invalid" alone leaves a person to guess which field; the
    coordinator says which (location and message, never the input).
    """
    errors = details.get("errors")
    if not isinstance(errors, list):
        return ""
    named = []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("loc"), list):
            where = ".".join(str(part) for part in error["loc"])
            named.append(f"{where}: {error.get('msg', 'invalid')}")
    if not named:
        return ""
    more = f"; {len(named) - _NAMED} more" if len(named) > _NAMED else ""
    return f" ({'; '.join(named[:_NAMED])}{more})"
