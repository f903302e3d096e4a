"""The one boundary where ``azure.*`` and ``aiohttp`` errors become ``DatastoreError``.

Every call into the Cosmos SDK runs inside ``translated()``; nothing from the
driver escapes it. Status codes map to the most specific public type::

    400 -> InvalidRequestError         404 -> NotFoundError
    409 -> AlreadyExistsError          412 -> PreconditionFailedError
    413 -> DocumentTooLargeError       batch failure -> BatchError(index, cause)
    429 (after the SDK's retries), 408, 5xx, connection errors, timeouts,
    and anything unexpected -> StoreUnavailableError
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from azure.core.exceptions import AzureError, HttpResponseError
from azure.cosmos.exceptions import CosmosBatchOperationError

from ..errors import (
    AlreadyExistsError,
    BatchError,
    DatastoreError,
    DocumentTooLargeError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)

__all__ = ["error_for_status", "translated"]

_BY_STATUS: dict[int, type[DatastoreError]] = {
    400: InvalidRequestError,
    404: NotFoundError,
    409: AlreadyExistsError,
    412: PreconditionFailedError,
    413: DocumentTooLargeError,
}


def error_for_status(status: int | None, detail: str = "") -> DatastoreError:
    """The public error for a Cosmos HTTP status (unknown statuses count as unavailable)."""
    kind = _BY_STATUS.get(status or 0, StoreUnavailableError)
    base = (kind.__doc__ or "").strip()
    return kind(f"{base} (Cosmos DB {status}{': ' + detail if detail else ''})")


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "http_error_message", None) or getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(exc).__name__


@contextmanager
def translated() -> Iterator[None]:
    """Run SDK calls inside this block; their errors leave it as ``DatastoreError``."""
    try:
        yield
    except DatastoreError:
        raise
    except CosmosBatchOperationError as exc:
        cause = error_for_status(exc.status_code, _first_line(exc))
        raise BatchError(exc.error_index or 0, cause) from exc
    except HttpResponseError as exc:  # CosmosHttpResponseError and its subclasses
        raise error_for_status(exc.status_code, _first_line(exc)) from exc
    except (TimeoutError, AzureError, aiohttp.ClientError, OSError) as exc:
        # ServiceRequestError / ServiceResponseError (refused, reset), the SDK's
        # CosmosClientTimeoutError and raw transport errors: the store is not answering.
        raise StoreUnavailableError(
            f"Cosmos DB is unavailable: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
