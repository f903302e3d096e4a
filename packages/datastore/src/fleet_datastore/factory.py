"""``store_from_url(url)``: pick a provider by URL scheme, importing it only when used."""

from __future__ import annotations

from urllib.parse import urlsplit

from .cosmos_config import CosmosConfig
from .errors import InvalidRequestError
from .store import DocumentStore

__all__ = ["CosmosConfig", "check_store_url", "store_from_url"]


def check_store_url(url: str) -> str:
    """The scheme of a URL ``store_from_url`` accepts; InvalidRequestError for any other.

    Opens nothing, so a setting can be checked before anything starts.
    """
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme == "sqlite":
        _sqlite_path(url)
    elif scheme not in ("memory", "cosmos"):
        raise InvalidRequestError(
            f"unknown store URL scheme in {url!r}: use memory, sqlite or cosmos"
        )
    return scheme


def _sqlite_path(url: str) -> str:
    path = url[len("sqlite://") :]
    if path.startswith("/") and not path.startswith("//"):
        path = path[1:]  # sqlite:///rel/x.db -> rel/x.db; sqlite:////abs/x.db -> /abs/x.db
    elif path.startswith("//"):
        path = path[1:]
    if not path or path.endswith("/"):
        raise InvalidRequestError(f"sqlite URL needs a file path: {url!r}")
    return path


def store_from_url(url: str, *, cosmos: CosmosConfig | None = None) -> DocumentStore:
    """A store for ``memory://``, ``sqlite:///path/to/file.db`` or ``cosmos://``; not yet open.

    ``cosmos://`` takes its endpoint, key and database from ``cosmos`` or else
    from the ``FLEET_COSMOS_*`` environment variables.
    """
    scheme = check_store_url(url)
    if scheme == "memory":
        from .providers.memory import MemoryBackend

        return DocumentStore(MemoryBackend(), url)
    if scheme == "sqlite":
        from .providers.sqlite import SqliteBackend

        return DocumentStore(SqliteBackend(_sqlite_path(url)), url)
    from .providers.cosmos import CosmosBackend

    return DocumentStore(CosmosBackend(cosmos or CosmosConfig.from_env()), url)
