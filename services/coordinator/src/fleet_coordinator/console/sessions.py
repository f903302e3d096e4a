"""Console sessions: held in the store, so every replica sees a sign-in and a sign-out.

Signing in exchanges the admin token for a random session id, set as an
HttpOnly, SameSite=Strict cookie (Secure under https) with an expiry. The store
keeps only ``sha256(session id)`` (a reader of the store cannot take over a
session), the expiry and the session's CSRF token; signing out deletes that
document, which revokes the session on every replica at once. A console page
costs one point read for its session: people, not agents, use the console.

The cookie carries the session id and its HMAC under a key derived from the admin
token (``cookie_of``): a cookie nobody signed in for is refused on its MAC, before
any store read. Without it, every request with a made-up cookie, which needs no
token at all, cost a point read (on Cosmos DB, request units of the container that
also authenticates agents), as made-up agent ids did before their budget. Replicas
share the admin token, so every replica checks every cookie; changing the token
ends every session.

A session nobody signs out of stays in the store past its end; each sign-in
deletes up to ``PURGE_PAGE`` of those, oldest first (``purge_expired``), so
the ended sessions never outnumber what sign-ins leave behind. Deleting an
ended session is idempotent, so replicas purging at once never conflict.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fleet_datastore import NotFoundError, Query, eq

from ..services import Coordinator

__all__ = [
    "COOKIE",
    "cookie_of",
    "SESSION_SECONDS",
    "Session",
    "end_session",
    "find_session",
    "purge_expired",
    "same_token",
    "start_session",
]

COOKIE = "fleet_console"
SESSION_SECONDS = 8 * 3600
"""A session lasts a working day; then the person signs in again."""
SESSIONS_PARTITION = "sessions"
"""The partition of session documents in the ``agents`` container."""
PURGE_PAGE = 50
"""Ended sessions one sign-in deletes at most (it adds one)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in console session: its CSRF token and when it ends."""

    doc_id: str
    csrf: str
    expires_at: float


def _doc_id(session_id: str) -> str:
    return "s." + hashlib.sha256(session_id.encode()).hexdigest()


def _mac(co: Coordinator, session_id: str) -> str:
    # A key of its own, derived from the admin token: the token itself never keys anything else.
    key = hashlib.sha256(b"fleet console session\0" + co.settings.admin_token.encode()).digest()
    digest = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cookie_of(co: Coordinator, session_id: str) -> str:
    """The cookie value of a session: its id and the id's MAC (``id.mac``)."""
    return f"{session_id}.{_mac(co, session_id)}"


def _session_id(co: Coordinator, cookie: str | None) -> str | None:
    """The session id a cookie carries when its MAC is right, else None (nothing read)."""
    if not cookie or len(cookie) > 100:
        return None
    session_id, _, mac = cookie.rpartition(".")
    if not session_id or not same_token(mac, _mac(co, session_id)):
        return None
    return session_id


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(given.encode(), expected.encode())


async def start_session(co: Coordinator) -> tuple[str, Session]:
    """Create a session; return its cookie value (the id is never stored) and the session."""
    session_id = secrets.token_urlsafe(32)
    session = Session(
        doc_id=_doc_id(session_id),
        csrf=secrets.token_urlsafe(32),
        expires_at=co.clock.now() + SESSION_SECONDS,
    )
    body = {
        "id": session.doc_id,
        "pk": SESSIONS_PARTITION,
        "kind": "session",
        "csrf": session.csrf,
        "expires_at": session.expires_at,
        "created_at": co.clock.now(),
    }
    await co.agents.create(body)
    co.log.info("coordinator.console.signed_in")
    await purge_expired(co)
    return cookie_of(co, session_id), session


async def purge_expired(co: Coordinator) -> int:
    """Delete up to ``PURGE_PAGE`` sessions past their end, oldest first; return how many.

    Every session lasts ``SESSION_SECONDS`` from its creation, so in ``created_at``
    order the ended ones come first and the first live one ends the walk.
    """
    query = Query(
        where=[eq("kind", "session")],
        order_by=["created_at"],
        partition_key=SESSIONS_PARTITION,
        limit=PURGE_PAGE,
    )
    now = co.clock.now()
    purged = 0
    for doc in (await co.agents.query(query)).items:
        if float(doc.body["expires_at"]) > now:
            break
        purged += await co.agents.delete(doc.id, SESSIONS_PARTITION)
    return purged


async def find_session(co: Coordinator, cookie: str | None) -> Session | None:
    """The live session of a cookie value, or None (forged, signed out or expired)."""
    session_id = _session_id(co, cookie)
    if session_id is None:
        return None  # not a cookie this coordinator set: no store read
    doc_id = _doc_id(session_id)
    try:
        doc = await co.agents.get(doc_id, SESSIONS_PARTITION)
    except NotFoundError:
        return None
    body = doc.body
    if body.get("kind") != "session":
        return None
    if float(body["expires_at"]) <= co.clock.now():
        await co.agents.delete(doc_id, SESSIONS_PARTITION)
        return None
    return Session(doc_id=doc_id, csrf=str(body["csrf"]), expires_at=float(body["expires_at"]))


async def end_session(co: Coordinator, session: Session) -> None:
    """Sign out: delete the session document, revoking it on every replica."""
    await co.agents.delete(session.doc_id, SESSIONS_PARTITION)
    co.log.info("coordinator.console.signed_out")
