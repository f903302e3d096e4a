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

Datastore errors are translated in ``translate_store_errors``, the one boundary: an
unavailable store is 503, a document too large 413. Any other exception, a store
error no service expected included, is a defect: the API's guard logs it with an
error id and its traceback and answers 500 ``internal_error`` (``api/middleware.py``),
so a bug is never disguised as an outage that clients would retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fleet_datastore import BatchError, DocumentTooLargeError, StoreUnavailableError

__all__ = [
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
    "translate_store_errors",
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


class TooManyRequestsError(CoordinatorError):
    """The caller has too many requests of this kind in progress; retry later."""

    status = 429
    code = "too_many_requests"


class UnavailableError(CoordinatorError):
    """The store is unavailable; retry later."""

    status = 503
    code = "store_unavailable"


@contextmanager
def translate_store_errors() -> Iterator[None]:
    """Turn the store's outages (503) and size limit (413) into ``CoordinatorError``.

    Expected errors (not found, lost races) are handled where they happen; any other
    store error that reaches here is left as it is: a defect, answered 500.
    """
    try:
        yield
    except BatchError as exc:
        cause = exc.cause
        if isinstance(cause, StoreUnavailableError):
            raise UnavailableError(f"store error: {type(cause).__name__}") from exc
        if isinstance(cause, DocumentTooLargeError):
            raise PayloadTooLargeError("a job document would exceed the store's limit") from exc
        raise
    except DocumentTooLargeError as exc:
        raise PayloadTooLargeError("the job document would exceed the store's limit") from exc
    except StoreUnavailableError as exc:
        # The store could not do its part; a retry may succeed.
        raise UnavailableError(f"store error: {type(exc).__name__}") from exc
