"""The console's state-changing forms (POST): sign-in, sign-out, and every operator action.

Each action is a plain HTML form, so the console works with JavaScript off,
and answers 303 to the page it came from. Every form but sign-in carries the
session's CSRF token and is refused with 403, changing nothing, without it
(checked before anything is read or written). Each action calls the same
service function as its API endpoint.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import Field, ValidationError

from ..api.deps import Co, is_admin
from ..api.models import BulkRetryRequest
from ..api.queries import DECIMAL
from ..domain import JobStatus
from ..errors import ConflictError, NotFoundError
from ..services import (
    bulk_retry,
    cancel_job,
    delete_agent,
    drain_agent,
    retry_job,
    set_paused,
    settle_departed,
)
from ..store.listing import JobFilter
from .sessions import COOKIE, SESSION_SECONDS, Session, end_session, same_token, start_session
from .web import (
    Forbidden,
    console_of,
    page,
    read_form,
    redirect,
    require_csrf,
    require_session,
)

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

SessionDep = Annotated[Session, Depends(require_session)]
QueuePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
BULK_LIMIT = 1000


class _BulkRetryForm(BulkRetryRequest):
    """The API's bulk retry fields as the failed page's form sends them: the limit as text."""

    limit: Annotated[int, Field(ge=1, le=BULK_LIMIT), DECIMAL] = 100


SIGNIN_COOKIE = "fleet_signin"


def _signin_form(request: Request, *, status: int = 200, error: str | None = None) -> Response:
    # The sign-in form has no session yet, so its CSRF token is a double submit: a
    # random value both in a SameSite=Strict cookie and in the form, which another
    # site can neither read nor set.
    token = secrets.token_urlsafe(24)
    answer = page(
        request, "signin.html", session=None, status=status, error=error, signin_csrf=token
    )
    _set_cookie(answer, request, SIGNIN_COOKIE, token, max_age=3600)
    return answer


def _set_cookie(
    answer: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int,
    expires: int | None = None,
) -> None:
    # Both cookies of the console: HttpOnly, SameSite=Strict, under /ui only (SPEC),
    # and so is every header that ends one (``_drop_cookie``).
    answer.set_cookie(
        name,
        value,
        max_age=max_age,
        expires=expires,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _drop_cookie(answer: Response, request: Request, name: str) -> None:
    # With the attributes it was set with: Starlette's delete_cookie defaults to
    # SameSite=Lax without HttpOnly or Secure, so the console's own answers carried a
    # weaker cookie header than SPEC's, and over https one without Secure.
    _set_cookie(answer, request, name, "", max_age=0, expires=0)  # Expires for old clients


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    """The sign-in form."""
    return _signin_form(request)


@router.post("/signin")
async def signin(request: Request, co: Co) -> Response:
    """Exchange the admin token for a session cookie; rate-limited per client address."""
    client = request.client.host if request.client else "unknown"
    if not console_of(request).limiter.allow(client):
        co.log.warning("coordinator.console.signin_limited", client=client)
        error = "Too many sign-in attempts. Wait a minute and try again."
        return _signin_form(request, status=429, error=error)
    form = await read_form(request)
    if not same_token(form.get("csrf", ""), request.cookies.get(SIGNIN_COOKIE) or "\0"):
        raise Forbidden("sign-in without its form token")
    # The token is compared and forgotten: never logged, echoed or put in a URL.
    if not is_admin(co, form.get("token", "").strip()):
        co.log.info("coordinator.console.signin_refused", client=client)
        return _signin_form(request, status=401, error="That is not the admin token.")
    cookie, _ = await start_session(co)
    answer = redirect("/ui/")
    _drop_cookie(answer, request, SIGNIN_COOKIE)
    _set_cookie(answer, request, COOKIE, cookie, max_age=SESSION_SECONDS)
    return answer


@router.post("/signout")
async def signout(request: Request, co: Co, session: SessionDep) -> Response:
    """End the session on every replica and drop the cookie."""
    require_csrf(session, await read_form(request))
    await end_session(co, session)
    answer = redirect("/ui/signin")
    _drop_cookie(answer, request, COOKIE)
    return answer


@router.post("/queues/{queue}/{action}")
async def queue_action(
    request: Request, queue: QueuePath, action: str, co: Co, session: SessionDep
) -> Response:
    """Pause or resume a queue."""
    require_csrf(session, await read_form(request))
    if action not in ("pause", "resume"):
        raise NotFoundError(f"no action {action!r}")
    await set_paused(co, queue, action == "pause")
    console_of(request).stats.set_paused(queue, action == "pause")
    return redirect("/ui/queues")


@router.post("/jobs/{job_id}/{action}")
async def job_action(
    request: Request, job_id: str, action: str, co: Co, session: SessionDep
) -> Response:
    """Cancel or retry one job; a refusal (already terminal, not failed) is shown on its page."""
    require_csrf(session, await read_form(request))
    if action not in ("cancel", "retry"):
        raise NotFoundError(f"no action {action!r}")
    target = f"/ui/jobs/{quote(job_id, safe='')}"
    try:
        await (cancel_job if action == "cancel" else retry_job)(co, job_id)
    except ConflictError as exc:
        return redirect(f"{target}?{urlencode({'refused': exc.code})}")
    return redirect(target)


@router.post("/failed/retry")
async def failed_retry(request: Request, co: Co, session: SessionDep) -> Response:
    """Retry the oldest failed (or cancelled) jobs of the page's filter, up to the limit."""
    form = await read_form(request)
    require_csrf(session, form)
    status = JobStatus.CANCELLED if form.get("status") == "cancelled" else JobStatus.FAILED
    match = JobFilter(queue=form.get("queue") or None, kind=form.get("kind") or None)
    # A limit left empty is the API's default; any other is read as a query integer is
    # (decimal digits only: ``5_0``, ``+5`` or ``5.0`` are not read as numbers) and
    # bounded as the API's (``5000`` is refused, no longer clamped to 1000 unseen).
    text = form.get("limit") or "100"
    filters = {"queue": match.queue, "kind": match.kind, "status": status.value, "limit": text}
    try:
        request_fields = _BulkRetryForm.model_validate(filters)
    except ValidationError as exc:
        # What the API's bulk retry refuses is refused here too (422, nothing retried):
        # such a filter matched no job, and the failed page it redirected to refused it.
        raise RequestValidationError(exc.errors()) from exc
    done = await bulk_retry(co, match, status, request_fields.limit)
    query = {k: v for k, v in (("queue", match.queue), ("kind", match.kind)) if v}
    query["status"] = status.value
    query["retried"] = str(len(done))
    return redirect(f"/ui/failed?{urlencode(query)}")


@router.post("/agents/{agent_id}/{action}")
async def agent_action(
    request: Request, agent_id: str, action: str, co: Co, session: SessionDep
) -> Response:
    """Drain or delete an agent (a delete releases its leases, as the API's does)."""
    require_csrf(session, await read_form(request))
    if action == "drain":
        await drain_agent(co, agent_id)
    elif action == "delete":
        await settle_departed(co, await delete_agent(co, agent_id))
    else:
        raise NotFoundError(f"no action {action!r}")
    return redirect("/ui/agents")
