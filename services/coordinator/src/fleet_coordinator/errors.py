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
    └── UnavailableError          503 the store cannot be reached

Datastore errors are translated by ``store_error``, at the one boundary where the
services meet the store (``services/boundary.py: GuardedContainer``).
"""

from __future__ import annotations

from typing import Any

from fleet_datastore import BatchError, DatastoreError, DocumentTooLargeError

__all__ = [
    "BadRequestError",
    "ConflictError",
    "CoordinatorError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationFailedError",
    "store_error",
]


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


class UnavailableError(CoordinatorError):
    """The store is unavailable; retry later."""

    status = 503
    code = "store_unavailable"


def store_error(exc: DatastoreError) -> CoordinatorError:
    """The ``CoordinatorError`` a store failure answers: 413 for a too-large document, else 503."""
    cause = exc.cause if isinstance(exc, BatchError) else exc
    if isinstance(cause, DocumentTooLargeError):
        return PayloadTooLargeError("the job document would exceed the store's limit")
    # Expected outcomes (not found, lost races) are handled where they happen; whatever
    # reaches here means the store could not do its part, which a retry may fix.
    return UnavailableError(f"store error: {type(cause).__name__}")
