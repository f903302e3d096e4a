"""The exceptions of the datastore package.

Every error a store raises is a ``DatastoreError``; provider errors (``sqlite3``,
``azure.*``, ``aiohttp``) are translated at one boundary inside each provider and
never leave the package::

    DatastoreError
    ├── NotFoundError              the document does not exist
    ├── AlreadyExistsError         create() with an id that is taken
    ├── PreconditionFailedError    the etag condition did not hold
    ├── InvalidRequestError        bad input; nothing was written
    │   ├── DocumentTooLargeError
    │   ├── UnknownContainerError
    │   └── InvalidContinuationError
    ├── BatchError                 one batch operation failed; nothing was written
    └── StoreUnavailableError      the store cannot be reached or keeps throttling

``update_if_match`` does not raise for a lost race or a missing document: it
returns an ``UpdateResult`` so the compare-and-swap loop reads as data.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "BatchError",
    "BatchTooLargeError",
    "DatastoreError",
    "DocumentTooLargeError",
    "InvalidContinuationError",
    "InvalidRequestError",
    "NotFoundError",
    "PreconditionFailedError",
    "StoreUnavailableError",
    "UnknownContainerError",
]


class DatastoreError(Exception):
    """The datastore failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class NotFoundError(DatastoreError):
    """The document does not exist."""


class AlreadyExistsError(DatastoreError):
    """A document with this id already exists in this partition."""


class PreconditionFailedError(DatastoreError):
    """The document's etag no longer matches the one given."""


class InvalidRequestError(DatastoreError):
    """The request is invalid; nothing was written."""


class DocumentTooLargeError(InvalidRequestError):
    """The document is larger than the store accepts."""


class BatchTooLargeError(InvalidRequestError):
    """The documents of one batch are larger together than a batch may carry.

    Nothing was written. Split the batch (each part is still atomic), or write a
    document alone when it exceeds the bound by itself.
    """


class UnknownContainerError(InvalidRequestError):
    """No container of that name was declared on this store."""


class InvalidContinuationError(InvalidRequestError):
    """The continuation token is malformed or belongs to another query."""


class BatchError(DatastoreError):
    """An operation of a transactional batch failed; the batch wrote nothing."""

    def __init__(self, index: int, cause: DatastoreError) -> None:
        super().__init__(f"batch operation {index} failed: {cause}")
        self.index = index
        self.cause = cause


class StoreUnavailableError(DatastoreError):
    """The store cannot be reached, timed out, or kept throttling past the retry budget."""
