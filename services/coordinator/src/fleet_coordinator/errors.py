"""The coordinator's exceptions: one root, each subclass carrying its HTTP status and code.

::

    CoordinatorError              500-free root; ``status`` and ``code`` say how to answer
    ├── BadRequestError           400 malformed request
    ├── UnauthorizedError         401 missing or unknown token
    ├── ForbiddenError            403 the token's role may not do this
    ├── NotFoundError             404 unknown resource
    ├── ConflictError             409 state conflict (``lease_lost``, ``already_terminal`` …)
    ├── PayloadTooLargeError      413
    ├── ValidationFailedError     422
    ├── TooManyRequestsError      429 a per-agent limit (``too_many_long_polls``); retry later
    └── UnavailableError          503 the store cannot be reached

Datastore errors are translated by ``store_error``, at the one boundary where the
services meet the store (``services/boundary.py: GuardedContainer``): an unavailable
store is 503, a document too large 413. Any other exception, a store error no service
expected included, is a defect: the API's guard logs it with an error id and its
traceback and answers 500 ``internal_error`` (``api/middleware.py``), so a bug is never
disguised as an outage that clients would retry.
"""

from __future__ import annotations

from typing import Any

from fleet_datastore import (
    BatchError,
    DatastoreError,
    DocumentTooLargeError,
    StoreUnavailableError,
)

__all__ = [
    "MAX_CAUSE_CHARS",
    "STORE_UNAVAILABLE",
    "BadRequestError",
    "ConflictError",
    "CoordinatorError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationFailedError",
    "store_error",
]

STORE_UNAVAILABLE = "the store is unavailable; retry later"
"""The message of a 503 for a store failure: the same whatever failed (see ``reason``)."""

MAX_CAUSE_CHARS = 500
"""How much of a store error's text a log line carries (a Cosmos DB answer can be long)."""


class CoordinatorError(Exception):
    """The coordinator refused or could not complete a request."""

    status = 500
    code = "internal"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, **details: Any
    ) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = str(self.args[0])
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details

    @property
    def reason(self) -> str:
        """What went wrong, for the logs: the message, unless a subclass knows more."""
        return self.message


class BadRequestError(CoordinatorError):
    """The request is malformed."""

    status = 400
    code = "bad_request"


class UnauthorizedError(CoordinatorError):
    """A valid bearer token is required."""

    status = 401
    code = "unauthorized"


class ForbiddenError(CoordinatorError):
    """This token's role may not do that."""

    status = 403
    code = "forbidden"


class NotFoundError(CoordinatorError):
    """No such resource."""

    status = 404
    code = "not_found"


class ConflictError(CoordinatorError):
    """The resource's state does not allow this."""

    status = 409
    code = "conflict"


class PayloadTooLargeError(CoordinatorError):
    """The request or payload is too large."""

    status = 413
    code = "payload_too_large"


class ValidationFailedError(CoordinatorError):
    """The request is well-formed but invalid."""

    status = 422
    code = "validation_error"


class TooManyRequestsError(CoordinatorError):
    """The caller has too many requests of this kind in progress; retry later."""

    status = 429
    code = "too_many_requests"


class UnavailableError(CoordinatorError):
    """The store is unavailable; retry later."""

    status = 503
    code = "store_unavailable"

    def __init__(
        self, message: str | None = None, *, cause: str | None = None, **details: Any
    ) -> None:
        super().__init__(message, **details)
        self.cause = cause

    @property
    def reason(self) -> str:
        """The store error's own text (``database or disk is full``), else the message.

        For the logs only, never for the answer: the store's text can name a file, a
        host or an account, none of which a client needs to retry.
        """
        return self.cause or self.message


def store_error(exc: DatastoreError) -> CoordinatorError | None:
    """The ``CoordinatorError`` a store failure answers (413, 503), or None for a defect.

    Expected outcomes (not found, lost races) are handled where they happen; an
    outage is 503 because a retry may succeed; anything else is left as it is, for
    the API's guard to answer 500.
    """
    cause = exc.cause if isinstance(exc, BatchError) else exc
    if isinstance(cause, DocumentTooLargeError):
        return PayloadTooLargeError("the job document would exceed the store's limit")
    if isinstance(cause, StoreUnavailableError):
        # The client learns that it may retry; the operator, from the logs, why.
        return UnavailableError(STORE_UNAVAILABLE, cause=str(exc)[:MAX_CAUSE_CHARS])
    return None
