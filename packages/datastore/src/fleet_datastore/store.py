"""``DocumentStore``: a connected provider and the containers declared on it."""

from __future__ import annotations

from types import TracebackType

from .backend import Backend
from .container import Container
from .errors import InvalidRequestError, UnknownContainerError
from .model import ContainerSpec

__all__ = ["DocumentStore"]


class DocumentStore:
    """A document store: open it (``async with``), declare containers, use them."""

    def __init__(self, backend: Backend, url: str) -> None:
        self._backend = backend
        self._containers: dict[str, Container] = {}
        self.url = url

    @property
    def backend(self) -> Backend:
        """The provider behind this store."""
        return self._backend

    @property
    def expires_documents(self) -> bool:
        """Whether this store deletes documents by time to live (``ContainerSpec.default_ttl``)."""
        return self._backend.expires_documents

    @property
    def local(self) -> bool:
        """Whether this store's calls run on this machine's CPU, not over the network."""
        return self._backend.local

    async def open(self) -> DocumentStore:
        """Connect to the store."""
        await self._backend.open()
        return self

    async def close(self) -> None:
        """Release the store's connections."""
        await self._backend.close()

    async def __aenter__(self) -> DocumentStore:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def create_container_if_not_exists(self, spec: ContainerSpec) -> Container:
        """Declare a container, creating it with its indexes if it does not exist yet."""
        if not isinstance(spec, ContainerSpec):
            raise InvalidRequestError("spec must be a ContainerSpec")
        known = self._containers.get(spec.name)
        if known is not None:
            if known.spec != spec:
                raise InvalidRequestError(f"container {spec.name!r} was declared differently")
            return known
        await self._backend.ensure_container(spec)
        container = Container(self._backend, spec)
        self._containers[spec.name] = container
        return container

    def get_container(self, name: str) -> Container:
        """A container declared on this store; UnknownContainerError otherwise."""
        try:
            return self._containers[name]
        except (KeyError, TypeError):
            raise UnknownContainerError(f"no container {name!r} was declared") from None

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the store answers."""
        await self._backend.ping()
