"""The coordinator's settings, read once from the environment (prefix ``FLEET_``)."""

from __future__ import annotations

import secrets

from fleet_datastore import CosmosConfig
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything a coordinator replica needs to know; see SPEC.md "Running the service"."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    store_url: str = "sqlite:///var/fleet.db"
    cosmos_endpoint: str = ""
    cosmos_key: str = Field(default="", repr=False)
    cosmos_database: str = "fleet"
    admin_token: str = Field(default="", repr=False)
    default_lease_seconds: float = Field(default=60.0, gt=0, le=86_400)
    reaper_interval_seconds: float = Field(default=5.0, gt=0, le=3_600)
    max_payload_bytes: int = Field(default=262_144, ge=1_024, le=1_900_000)
    retain_succeeded_seconds: int = Field(default=604_800, ge=1, le=2_147_483_647)
    """How long a succeeded job stays readable before it is deleted."""
    retain_failed_seconds: int = Field(default=2_592_000, ge=1, le=2_147_483_647)
    """How long a failed or cancelled job stays readable before it is deleted."""
    job_shards: int = Field(default=16, ge=1, le=256)
    """How many partitions job documents spread over; fixed for the life of a store."""
    claim_candidates: int = Field(default=16, ge=1, le=1_000)
    """How many candidates one claim query fetches per shard."""
    long_poll_interval_seconds: float = Field(default=0.25, gt=0, le=5)
    """How often a replica's long-polling claims re-poll, together, for other replicas' jobs."""
    reaper_enabled: bool = True
    agent_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    """How long a replica trusts a cached agent document for authentication.

    A token revoked on another replica keeps working for heartbeats for at most
    this long (claims check the stored document with a conditional write).
    """
    ledger_flush_seconds: float = Field(default=0.5, ge=0, le=60)
    """How long an ended lease may wait to leave the agent's ledger with its next claim."""
    job_cache_size: int = Field(default=2_000, ge=0, le=1_000_000)
    """Job documents a replica remembers to skip the read before a conditional write.

    Memory is bounded by this times the largest document (payloads are limited by
    ``max_payload_bytes``); 0 turns the cache off.
    """

    max_long_polls_per_agent: int = Field(default=8, ge=1, le=1_000)
    """Claims with ``wait_seconds > 0`` one agent may have waiting at once on a replica.

    One more is refused at once with 429 ``too_many_long_polls`` and ``Retry-After``.
    """
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """How long a connection may take to send a request's headers (slow senders are cut)."""
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3_600)
    """How long a request's body may take to arrive once its headers are in (else 408)."""

    def ensure_admin_token(self) -> bool:
        """Generate an admin token if none was configured; True when one was generated."""
        if self.admin_token:
            return False
        self.admin_token = secrets.token_urlsafe(32)
        return True

    def cosmos_config(self) -> CosmosConfig | None:
        """The Cosmos connection, when the store URL is ``cosmos://``."""
        if not self.store_url.startswith("cosmos:"):
            return None
        return CosmosConfig(self.cosmos_endpoint, self.cosmos_key, self.cosmos_database)
