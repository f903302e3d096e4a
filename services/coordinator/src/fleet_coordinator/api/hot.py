"""The hot path: well-formed POSTs served without FastAPI's per-request machinery.

A claim, report, heartbeat, complete, fail, release or enqueue spends about as
much CPU in FastAPI's routing, dependency solving and response validation as in
the coordinator's own work (measured in ``docs/benchmarks.md``). ``HotPath`` sits
in front of the router and serves a request *when it is well-formed*. What it
serves, and how, it reads from the app's own routes on the first request — no
second table of paths, models or roles: every ``POST`` route whose parameters it
can supply (path parameters, one pydantic body, the coordinator, the agent
token's document or the admin token as a router dependency, a ``Response``) and
whose response options are the defaults. For such a route it matches the path
with the route's own regular expression, in the router's order, parses the
body to the values ``json.loads`` gives Starlette's ``Request.json``, validates it
with the route's body model, takes the caller the guard outside has already
authenticated for the route's role (``Admitted``: the guard read the body and
checked the token, so neither happens twice), runs
**the route's endpoint function** and maps the coordinator's errors with the
same ``error_response``.

Everything else is handed to FastAPI unchanged, with the body the guard read
replayed: any other route or method, a body that is empty, not JSON, not
``application/json`` or invalid for the model (a body holding ``NaN`` or an
infinity, which FastAPI's ``json.loads`` would read, is answered 400 on the way:
``api/literals.py``). (A missing, unknown or
wrong-role token never gets here: the guard answers it.) Nothing has been
written at that point, so FastAPI's answer (the 400 or 422 of SPEC.md, in its
exact shape) is the answer, and the two paths cannot disagree on what a bad
request gets. A route renamed or added in a router is served hot (or not) by
the same rules with no change here.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import CoordinatorError
from ..services import Coordinator
from .deps import Role, get_coordinator, require_admin, require_agent
from .errors import error_response
from .limits import MATCHES_KEPT, REMEMBERED_PATH
from .literals import refuse_constant
from .middleware import ADMITTED, Admitted
from .models import READ_FROM_JSON

__all__ = ["HotAnswer", "HotPath", "HotRoutes", "answer_hot"]

_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _loads(raw: bytes) -> Any:
    """The body as Starlette's ``Request.json`` (``json.loads``) reads it, or an error.

    orjson, ~10x cheaper, reads the same values with two differences: an integer
    past 64 bits becomes a float (which would pass where FastAPI refuses it: 422),
    and it refuses what ``json.loads`` takes (NaN, 1e400, a lone surrogate, a BOM),
    so that such a body goes to FastAPI, which answers it. A run of 19 digits,
    anywhere (a string too), sends the body to ``json.loads``.
    """
    if _LONG_NUMBER.search(raw) is None:
        return orjson.loads(raw)
    # NaN and the infinities refused as orjson refuses them: such a body goes on to
    # its 400 (``middleware.RefuseJsonConstants``), never served as a value.
    return json.loads(raw, parse_constant=refuse_constant)


_READ_APART = re.compile(rb"NaN|Infinity|[0-9]{19}|[0-9][eE][+-]?[0-9]{3}")
"""Where pydantic's own JSON parser could read a body otherwise than ``_loads``: it
takes NaN and the infinities, and an exponent past the doubles' range (1e400, 1.8e308)
as an infinity, all of which orjson refuses; a run of 19 digits is ``_loads``'s
``json.loads`` case. Such a body (or a string merely holding one of them) is read by
``_loads``."""


def _validate(route: _Route, raw: bytes) -> BaseModel:
    """The route's body model from ``raw``, as ``model.model_validate(_loads(raw))`` makes it.

    For a model whose fields read JSON's values alike in both of pydantic's modes
    (``route.from_json``), straight from the bytes with ``model_validate_json``: no dicts
    and lists built and then read again (~1.5 µs a job of a batch enqueue on a slow host).
    Its parser refuses what orjson takes (nesting past ~200 levels, which ``_loads``
    reads to 1,020): any refusal is tried again the usual way, so a body is served,
    or handed to FastAPI, exactly as before.
    """
    model = route.model
    assert model is not None
    if route.from_json and _READ_APART.search(raw) is None:
        try:
            return model.model_validate_json(raw)
        except (ValueError, RecursionError):  # ValidationError: a ValueError
            pass
    return model.model_validate(_loads(raw))


_JSON_HEADERS = [(b"content-type", b"application/json")]
_DEFAULT_OPTIONS = {
    "response_model_include": None,
    "response_model_exclude": None,
    "response_model_exclude_unset": False,
    "response_model_exclude_defaults": False,
    "response_model_exclude_none": False,
}


@dataclass(frozen=True, slots=True)
class _Route:
    """A POST route of the app as the hot path sees it; ``endpoint`` None: FastAPI serves it."""

    path: str  # the template, which the latency metric is labelled with
    regex: re.Pattern[str]
    convert: dict[str, Callable[[str], Any]]
    endpoint: Callable[..., Any] | None = None
    role: Role | None = None  # the token the route's dependencies check
    model: type[BaseModel] | None = None
    body: str = ""
    agent: str | None = None  # the parameter taking the agent document
    co: str | None = None
    response: str | None = None
    status: int = 200
    from_json: bool = False  # the body validated from its bytes (``_validate``)


def _hot(context: Any) -> _Route:
    """The route as served hot, or without an endpoint when it asks for more than we supply."""
    convert = {k: c.convert for k, c in context.param_convertors.items()}
    plain = _Route(context.path, context.path_regex, convert)
    dependant = context.dependant
    if dependant is None or len(dependant.body_params) != 1:
        return plain
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        return plain
    special = (
        "request_param_name",
        "websocket_param_name",
        "http_connection_param_name",
        "background_tasks_param_name",
        "security_scopes_param_name",
    )
    if any(getattr(dependant, name, None) for name in special):
        return plain  # asks for what only FastAPI supplies
    if not inspect.iscoroutinefunction(context.endpoint):
        return plain  # FastAPI runs a plain def in a worker thread
    if any(getattr(context, k, v) != v for k, v in _DEFAULT_OPTIONS.items()):
        return plain
    model = dependant.body_params[0].field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return plain
    agent = co = None
    role: Role | None = None
    for dep in dependant.dependencies:
        if dep.call is get_coordinator and dep.name:
            co = dep.name
        elif dep.call is require_agent:
            agent, role = dep.name, Role.AGENT
        elif dep.call is require_admin and dep.name is None:
            role = Role.ADMIN
        else:
            return plain
    if role is None or (role is Role.AGENT and agent is None):
        return plain  # only authenticated routes are served here
    return _Route(
        context.path,
        context.path_regex,
        convert,
        endpoint=context.endpoint,
        role=role,
        model=model,
        body=dependant.body_params[0].name,
        agent=agent,
        co=co,
        response=dependant.response_param_name,
        status=context.status_code or 200,
        from_json=model in READ_FROM_JSON,
    )


def _post_routes(app: FastAPI) -> list[_Route]:
    """The app's POST routes in the router's order (the first match wins, as in Starlette)."""
    return [
        _hot(context)
        for context in iter_route_contexts(app.router.routes)
        if "POST" in (context.methods or ())
    ]


def _is_json(ctype: bytes | None) -> bool:
    # FastAPI parses a body without a content type as no JSON at all (its default
    # ``strict_content_type``: a browser may send one cross-site without a preflight),
    # so that goes to it, as does anything but plain ``application/json``.
    return ctype is not None and ctype.split(b";")[0].strip().lower() == b"application/json"


@dataclass(frozen=True, slots=True)
class HotAnswer:
    """A hot request's answer: status, headers (lower-case names) and body, all encoded."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class HotRoutes:
    """The app's POST routes as the hot path serves them, matched by path (remembered)."""

    def __init__(self) -> None:
        self._routes: list[_Route] | None = None
        # Called for paths up to REMEMBERED_PATH only (``match`` checks the length).
        self._match = functools.lru_cache(MATCHES_KEPT)(self._first)

    def match(self, app: FastAPI, path: str) -> tuple[_Route, dict[str, Any]] | None:
        """The route serving ``POST path`` hot and its path parameters (None: FastAPI's)."""
        if len(path) <= REMEMBERED_PATH:
            return self._match(app, path)
        return self._first(app, path)

    def _first(self, app: FastAPI, path: str) -> tuple[_Route, dict[str, Any]] | None:
        """The first POST route matching ``path`` and its path parameters (None: FastAPI's)."""
        routes = self._routes
        if routes is None:
            routes = self._routes = _post_routes(app)
        for route in routes:
            found = route.regex.match(path)
            if found is not None:
                if route.endpoint is None:
                    return None
                params = {k: route.convert[k](v) for k, v in found.groupdict().items()}
                return route, params
        return None


async def answer_hot(
    co: Coordinator, route: _Route, params: dict[str, Any], admitted: Admitted
) -> HotAnswer | None:
    """Run the route's endpoint and encode its answer; None (nothing run) hands it to FastAPI.

    The one implementation of serving a route hot: ``HotPath`` below sends its answer
    as ASGI messages, ``serve``'s protocol writes it itself (``api/direct.py``). The
    coordinator's errors are answered here; any other exception is the caller's (a
    defect: the guard, or the direct path, logs it and answers 500).
    """
    raw = admitted.body
    if route.model is None or admitted.role is not route.role:
        return None  # not served here, or the guard checked another role than it needs
    if not raw or not _is_json(admitted.content_type):
        return None
    try:
        parsed = _validate(route, raw)
    except (ValueError, RecursionError, ValidationError):  # JSONDecodeError: a ValueError
        return None
    kwargs = {**params, route.body: parsed}
    if route.agent is not None:
        if admitted.agent is None:
            return None
        kwargs[route.agent] = admitted.agent
    if route.co is not None:
        kwargs[route.co] = co
    response: Response | None = None  # made only for a route that asks for it
    if route.response is not None:
        response = kwargs[route.response] = Response(status_code=route.status)
    assert route.endpoint is not None
    try:
        out = await route.endpoint(**kwargs)
    except CoordinatorError as exc:
        if exc.status == 503:
            co.unavailable.answered("POST", route.path, exc.reason)
        error = error_response(exc.status, exc.code, exc.message, exc.details)
        return HotAnswer(error.status_code, error.raw_headers, bytes(error.body))
    if isinstance(out, Response):
        # Encoded by the endpoint already (convert.Answer): sent as FastAPI sends it.
        return HotAnswer(out.status_code, out.raw_headers, bytes(out.body))
    payload = out.__pydantic_serializer__.to_json(out, by_alias=True)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    status = route.status if response is None else response.status_code
    return HotAnswer(status, headers, payload)


class HotPath:
    """Serve well-formed hot requests directly; hand everything else to FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = HotRoutes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The guard outside has read the body and checked the caller (``Admitted``).
        admitted: Admitted | None = None
        found = None
        if scope["type"] == "http" and scope["method"] == "POST":
            admitted = scope.get(ADMITTED)
            if admitted is not None:
                found = self.routes.match(scope["app"], scope["path"])
        if found is None or admitted is None:
            await self.app(scope, receive, send)
            return
        route, params = found
        answer = await answer_hot(scope["app"].state.coordinator, route, params, admitted)
        if answer is None:
            await self.app(scope, receive, send)  # the guard's receive replays the body
            return
        scope["route"] = route  # GuardMiddleware labels the latency metric with its path
        start = {"type": "http.response.start", "status": answer.status}
        await send({**start, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
