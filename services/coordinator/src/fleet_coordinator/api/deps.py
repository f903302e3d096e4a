"""Request dependencies: the coordinator and the caller's role (admin or agent)."""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Annotated

from fastapi import Depends, Request
from fleet_datastore import Document

from ..errors import ForbiddenError, UnauthorizedError
from ..services import Coordinator, authenticate

__all__ = ["AdminAuth", "AgentAuth", "Co", "Role", "authorize", "get_coordinator"]


async def get_coordinator(request: Request) -> Coordinator:
    """The app's coordinator (set up by the lifespan).

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker
    thread, a thread hop on every request for one attribute read.
    """
    co: Coordinator = request.app.state.coordinator
    return co


Co = Annotated[Coordinator, Depends(get_coordinator)]


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_admin(co: Coordinator, token: str) -> bool:
    """Whether ``token`` is the admin token (compared in constant time)."""
    return hmac.compare_digest(token.encode(), co.settings.admin_token.encode())


class Role(Enum):
    """Whose token a route needs."""

    ADMIN = "admin"
    AGENT = "agent"


async def authorize(co: Coordinator, header: str | None, role: Role) -> Document | None:
    """Check an ``Authorization`` value for ``role``: the agent's document for an agent.

    401 for no or unknown tokens, 403 for a known token of the other role. The one
    place that decides, for the route dependencies below and for the guard that
    refuses a caller before reading its body (``api/middleware.py``).
    """
    token = None if header is None else bearer_token(header)
    if token is None:
        raise UnauthorizedError("a bearer token is required")
    if role is Role.ADMIN:
        if is_admin(co, token):
            return None
        if await authenticate(co, token) is not None:
            raise ForbiddenError("this endpoint needs the admin token")
        raise UnauthorizedError("unknown token")
    agent = await authenticate(co, token)
    if agent is not None:
        return agent
    if is_admin(co, token):
        raise ForbiddenError("this endpoint needs an agent token")
    raise UnauthorizedError("unknown or revoked token")


async def require_admin(request: Request, co: Co) -> None:
    """Allow only the admin token: 401 for no or unknown tokens, 403 for agent tokens."""
    await authorize(co, request.headers.get("authorization"), Role.ADMIN)


async def require_agent(request: Request, co: Co) -> Document:
    """The calling agent's document: 401 for no or unknown tokens, 403 for the admin token."""
    agent = await authorize(co, request.headers.get("authorization"), Role.AGENT)
    assert agent is not None  # authorize returns the agent's document for Role.AGENT
    return agent


AdminAuth = Depends(require_admin)
AgentAuth = Annotated[Document, Depends(require_agent)]
