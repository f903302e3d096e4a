"""``CosmosConfig``: where the Cosmos provider connects; apart so neither imports the other."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InvalidRequestError

__all__ = ["CosmosConfig"]


@dataclass(frozen=True)
class CosmosConfig:
    """Where the Cosmos provider connects: endpoint, key, database."""

    endpoint: str
    key: str
    database: str = "fleet"

    def __repr__(self) -> str:
        return f"CosmosConfig(endpoint={self.endpoint!r}, database={self.database!r}, key=***)"

    @classmethod
    def from_env(cls) -> CosmosConfig:
        """Read ``FLEET_COSMOS_ENDPOINT``, ``FLEET_COSMOS_KEY`` and ``FLEET_COSMOS_DATABASE``."""
        endpoint = os.environ.get("FLEET_COSMOS_ENDPOINT", "")
        key = os.environ.get("FLEET_COSMOS_KEY", "")
        if not endpoint or not key:
            raise InvalidRequestError(
                "cosmos:// needs FLEET_COSMOS_ENDPOINT and FLEET_COSMOS_KEY to be set"
            )
        return cls(endpoint, key, os.environ.get("FLEET_COSMOS_DATABASE", "fleet"))
