"""The hot path: the agent endpoints and enqueues without FastAPI's per-request machinery.

A claim, heartbeat, complete, fail, release or enqueue spends about as much CPU
in FastAPI's routing, dependency solving and response validation as in the
coordinator's own work (measured in ``docs/benchmarks.md``). ``HotPath`` sits in
front of the router and serves these requests *when they are well-formed*: it
matches the path with one regular expression, parses the body with ``json.loads``
as Starlette's ``Request.json`` does (so huge integers, NaN and the like reach the
same checks), validates it with the same pydantic model, authenticates with the same service
call, runs **the very endpoint function** FastAPI would run, and maps the
coordinator's errors with the same ``error_response``.

Everything else is handed to FastAPI unchanged, with the body it already read
replayed: any other route or method, a body that is empty, not JSON, not
``application/json`` or invalid for the model, and a missing, unknown or wrong-role
token. Nothing has been written at that point, so FastAPI's answer (the 400, 401,
403 or 422 of SPEC.md, in its exact shape) is the answer, and the two paths cannot
disagree on what a bad request gets. The OpenAPI schema still comes from the
FastAPI routes, which remain the documented contract; the API test suite runs
through this path for every well-formed request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Response
from fleet_datastore import Document
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CoordinatorError
from ..services import Coordinator, authenticate
from . import routes_jobs, routes_leases
from .deps import bearer_token, is_admin
from .errors import error_response
from .models import (
    BatchCreate,
    ClaimRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    JobCreate,
    ReleaseRequest,
    ReportRequest,
)

__all__ = ["HotPath"]

_JOB_ACTION = re.compile(r"/v1/jobs/([^/]+)/(heartbeat|complete|fail|release)")
_JSON_HEADERS = [(b"content-type", b"application/json")]

Run = Callable[[Coordinator, Document | None, Any, str], Awaitable[tuple[int, BaseModel]]]


@dataclass(frozen=True, slots=True)
class _Route:
    """One hot route: its template (for metrics), caller role, body model and runner."""

    path: str
    agent: bool  # an agent's token; else the admin token
    model: type[BaseModel]
    run: Run


async def _claim(co: Coordinator, agent: Document | None, body: Any, _: str) -> tuple[int, Any]:
    assert agent is not None
    return 200, await routes_leases.claim(body, agent, co)


async def _reports(co: Coordinator, agent: Document | None, body: Any, _: str) -> tuple[int, Any]:
    assert agent is not None
    return 200, await routes_leases.reports(body, agent, co)


def _on_job(endpoint: Callable[..., Awaitable[BaseModel]]) -> Run:
    """A runner for ``endpoint(job_id, body, agent, co)``, one of the lease calls."""

    async def run(co: Coordinator, agent: Document | None, body: Any, job_id: str) -> Any:
        assert agent is not None
        return 200, await endpoint(job_id, body, agent, co)

    return run


async def _create(co: Coordinator, _: Document | None, body: Any, __: str) -> Any:
    response = Response(status_code=201)
    out = await routes_jobs.create_job(body, co, response)
    return response.status_code, out


async def _create_batch(co: Coordinator, _: Document | None, body: Any, __: str) -> Any:
    return 201, await routes_jobs.create_jobs(body, co)


_EXACT = {
    "/v1/claims": _Route("/v1/claims", True, ClaimRequest, _claim),
    "/v1/jobs": _Route("/v1/jobs", False, JobCreate, _create),
    "/v1/jobs/batch": _Route("/v1/jobs/batch", False, BatchCreate, _create_batch),
    "/v1/reports": _Route("/v1/reports", True, ReportRequest, _reports),
}
_ACTIONS = {
    name: _Route(f"/v1/jobs/{{job_id}}/{name}", True, model, _on_job(endpoint))
    for name, model, endpoint in (
        ("heartbeat", HeartbeatRequest, routes_leases.heartbeat),
        ("complete", CompleteRequest, routes_leases.complete),
        ("fail", FailRequest, routes_leases.fail),
        ("release", ReleaseRequest, routes_leases.release),
    )
}


def _route(path: str) -> tuple[_Route, str] | None:
    route = _EXACT.get(path)
    if route is not None:
        return route, ""
    match = _JOB_ACTION.fullmatch(path)
    if match is None:
        return None
    return _ACTIONS[match.group(2)], match.group(1)


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The first Authorization and Content-Type header values."""
    auth = ctype = None
    for name, value in scope["headers"]:
        if name == b"authorization" and auth is None:
            auth = value
        elif name == b"content-type" and ctype is None:
            ctype = value
    return auth, ctype


def _is_json(ctype: bytes | None) -> bool:
    # FastAPI parses a missing content type as JSON too; anything unusual goes to it.
    return ctype is None or ctype.split(b";")[0].strip().lower() == b"application/json"


class _RouteTag:
    """What GuardMiddleware reads from ``scope["route"]`` for the latency metric."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_TAGS = {r.path: _RouteTag(r.path) for r in (*_EXACT.values(), *_ACTIONS.values())}


class HotPath:
    """Serve well-formed hot requests directly; hand everything else to FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _route(scope["path"]) if scope["type"] == "http" else None
        if found is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route, job_id = found
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)  # joined once: `+=` per chunk is quadratic in the body
        if not await self._serve(scope, route, job_id, body, send):
            await self.app(scope, _replay(body, receive), send)

    async def _serve(
        self, scope: Scope, route: _Route, job_id: str, raw: bytes, send: Send
    ) -> bool:
        """Answer the request, or return False (having sent nothing) to hand it to FastAPI."""
        header, ctype = _headers(scope)
        token = None if header is None else bearer_token(header.decode("latin-1"))
        if token is None or not raw or not _is_json(ctype):
            return False
        try:
            parsed = route.model.model_validate(json.loads(raw))
        except (ValueError, RecursionError, ValidationError):  # JSONDecodeError: a ValueError
            return False
        co: Coordinator = scope["app"].state.coordinator
        agent: Document | None = None
        if route.agent:
            agent = await authenticate(co, token)
            if agent is None:
                return False
        elif not is_admin(co, token):
            return False
        scope["route"] = _TAGS[route.path]
        try:
            status, out = await route.run(co, agent, parsed, job_id)
        except CoordinatorError as exc:
            await error_response(exc.status, exc.code, exc.message, exc.details)(
                scope, _no_body, send
            )
            return True
        payload = out.__pydantic_serializer__.to_json(out, by_alias=True)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then the real channel."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
