"""fleet_datastore: JSON document containers with one conditional-write contract.

Open a store by URL (``memory://``, ``sqlite:///file.db``, ``cosmos://``), declare
containers with a ``ContainerSpec``, and write with ``update_if_match``: of any
number of writers racing with the same etag, exactly one wins.
"""

from .batch import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
    BatchOp,
    CreateOp,
    DeleteOp,
    PatchOp,
    ReadOp,
    ReplaceOp,
    UpsertOp,
)
from .container import Container
from .errors import (
    AlreadyExistsError,
    BatchError,
    BatchTooLargeError,
    DatastoreError,
    DocumentTooLargeError,
    InvalidContinuationError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
    UnknownContainerError,
)
from .factory import CosmosConfig, check_store_url, store_from_url
from .model import (
    ASC,
    DESC,
    MAX_DOCUMENT_BYTES,
    ContainerSpec,
    Direction,
    Document,
    FieldType,
    Index,
    Not,
    Outcome,
    Patch,
    UpdateResult,
)
from .query import Filter, Page, Query, eq, ge, gt, in_, le, lt
from .store import DocumentStore

__all__ = [
    "ASC",
    "DESC",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPERATIONS",
    "MAX_DOCUMENT_BYTES",
    "AlreadyExistsError",
    "BatchError",
    "BatchTooLargeError",
    "BatchOp",
    "Container",
    "ContainerSpec",
    "CosmosConfig",
    "CreateOp",
    "DatastoreError",
    "DeleteOp",
    "Direction",
    "Document",
    "DocumentStore",
    "DocumentTooLargeError",
    "FieldType",
    "Filter",
    "Index",
    "InvalidContinuationError",
    "InvalidRequestError",
    "Not",
    "NotFoundError",
    "Outcome",
    "Page",
    "Patch",
    "PatchOp",
    "PreconditionFailedError",
    "Query",
    "ReadOp",
    "ReplaceOp",
    "StoreUnavailableError",
    "UnknownContainerError",
    "UpdateResult",
    "UpsertOp",
    "check_store_url",
    "eq",
    "ge",
    "gt",
    "in_",
    "le",
    "lt",
    "store_from_url",
]
