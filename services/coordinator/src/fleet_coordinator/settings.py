"""The coordinator's settings, read once from the environment (prefix ``FLEET_``).

Every check a setting can be given without opening the store happens here, when
``Settings`` is built: ``serve`` turns a ``ValidationError`` into one line per
wrong variable (``problems``) and stops before anything starts. What only the
store can tell (its shard count) is ``SettingError``, raised while it opens.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from fleet_datastore import CosmosConfig, InvalidRequestError, check_store_url
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SettingError", "Settings", "problems"]

ENV_PREFIX = "FLEET_"

_HEADER_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""Visible ASCII, inner spaces allowed: what every HTTP client sends as a header value
and the server reads back unchanged (the ``fleet`` client checks its token the same way)."""


class SettingError(Exception):
    """A setting the process cannot start with; the message names the variable."""


def _invalid(message: str) -> PydanticCustomError:
    # A custom error, so the message is ours alone (a ValueError's gets "Value error, ").
    return PydanticCustomError("invalid_setting", message)


class Settings(BaseSettings):
    """Everything a coordinator replica needs to know; see SPEC.md "Running the service"."""

    # NaN and infinity are refused as such: "nan" was reported as breaking a bound
    # ("must be ≤ 3600"), which hid that it is not a number at all.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)

    store_url: str = "sqlite:///var/fleet.db"
    cosmos_endpoint: str = Field(default="", validate_default=True)
    cosmos_key: str = Field(default="", repr=False, validate_default=True)
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

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        try:
            check_store_url(url)
        except InvalidRequestError as exc:
            raise _invalid(str(exc)) from None
        return url

    @field_validator("cosmos_endpoint", "cosmos_key")
    @classmethod
    def _set_for_cosmos(cls, value: str, info: ValidationInfo) -> str:
        # Left empty, the Cosmos SDK failed only once the lifespan tried to connect,
        # with a 140-line traceback that never said which setting was missing.
        if not str(info.data.get("store_url", "")).startswith("cosmos:"):
            return value
        if not value:
            raise _invalid("must be set when FLEET_STORE_URL is cosmos://")
        if info.field_name == "cosmos_endpoint":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _invalid(
                    "must be an http(s) URL, e.g. https://<account>.documents.azure.com:443/"
                )
        return value

    @field_validator("admin_token")
    @classmethod
    def _presentable(cls, token: str) -> str:
        # Whitespace around the token (the newline a secret file ends with) is dropped,
        # as the ``fleet`` client drops it from the same variable: no HTTP client sends
        # it, since a header value's surrounding whitespace is not part of it. Empty
        # means unset (a token is generated); anything else no header carries as the
        # server reads it would be a token nobody can ever present.
        stripped = token.strip()
        if token and not stripped:
            raise _invalid("is blank (only whitespace); unset it to have one generated")
        if stripped and not _HEADER_TEXT.fullmatch(stripped):
            raise _invalid(
                "holds a character an HTTP header does not carry as is "
                "(only visible ASCII and inner spaces)"
            )
        return stripped

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


_SECRET = {name for name, field in Settings.model_fields.items() if field.repr is False}
"""Settings whose value no message shows (the admin token, the Cosmos key)."""


_SAID = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be ≥ {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be ≤ {le}",
    "finite_number": "must be a finite number",
    "float_parsing": "must be a number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false (or 1/0, yes/no, on/off)",
}
"""Pydantic's commonest errors in the words of the settings table (docs/operations.md)."""


def _plain(value: Any) -> Any:
    """``60`` for ``60.0``, as the settings table writes bounds."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def problems(error: ValidationError) -> list[str]:
    """One line per wrong setting: its variable, what is wrong and the value given.

    A pydantic error names the field (``default_lease_seconds``), while whoever set
    it knows the variable. The values of secrets are never shown.
    """
    lines = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        said = _SAID.get(item["type"])
        bounds = {k: _plain(v) for k, v in item.get("ctx", {}).items()}
        message = said.format(**bounds) if said else str(item["msg"])
        given: Any = item.get("input")
        shown = (
            repr(given[:200]) + " …" if isinstance(given, str) and len(given) > 200 else repr(given)
        )
        if field in _SECRET:
            message += " (value not shown)"
        elif shown not in message:  # a store URL's own message quotes it already
            message += f" (got {shown})"
        lines.append(f"{variable}: {message}")
    return lines
