"""The guard in front of the app: callers, bodies, latency, and the last-resort catch.

One plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` spawns tasks per
request and costs several times a bare endpoint's overhead). For each request:

1. **Route**: the rule of the route FastAPI will pick (``api/limits.py``): its role
   and its body limit, both derived from the app's own routes.
2. **Caller**: on a route that needs a token, ``authorize`` decides 401/403 before a
   byte of the body is read, so a stranger cannot make the coordinator read, buffer
   or parse anything; more than one ``Authorization`` header is 400.
3. **Body**: a declared ``Content-Length`` over the limit is 413 at once, a body in
   a content coding (``Content-Encoding`` other than ``identity``) 415, since nothing
   here decodes one, and so is a JSON route's body under another ``Content-Type``
   (400 under two); otherwise the
   body is read chunk by chunk and refused with 413 as soon as it passes the limit,
   chunked or not. No store request, lock or thread is held while a body arrives,
   and the whole body must arrive within ``FLEET_BODY_TIMEOUT_SECONDS`` (else 408).
4. **Text**: invalid UTF-8 or a lone-surrogate escape is refused (``api/unicode.py``),
   in the body and in the path's and query's percent-escapes. (``NaN`` and the
   infinities are refused further in, in front of the parser that reads them:
   ``RefuseJsonConstants``.)
5. **Headers**: answers under a given prefix get its headers (the console's security
   headers under ``/ui``: ``app.py``), the guard's own refusals and 500s included; its
   refusals there are answered by the prefix's own error page when one is given (the
   console's), with the same status and headers.
6. **App**: the body is handed on as one message (the hot path and FastAPI read it
   as usual); a claim that may long-poll is cancelled if its caller disconnects
   (``api/disconnects.py``), which frees its long-poll slot at once. A crash is a
   defect: logged with an error id and its traceback (never the body or a header),
   answered 500 ``internal_error`` with that id.

A refusal sent before the body was read carries ``Connection: close``: the server
then closes the connection instead of reading the rest of the body to reuse it
(under ``serve``, after draining what still comes for a bounded time, so that the
client reads the answer rather than a reset: ``protocol.py``'s lingering close).

The lifespan passes through too: a start the app refused on a setting is reported
without Starlette's traceback (``_brief_refusal``). Here, since the guard already
tells scopes apart, a request pays nothing for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fleet_datastore import Document
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CoordinatorError
from ..metrics import Metrics
from ..services import Coordinator
from ..settings import Settings
from .deps import Role, authorize
from .disconnects import may_long_poll, run_until_disconnect
from .errors import ErrorPage, error_response
from .limits import REMEMBERED_PATH, RouteRule, RouteRules
from .literals import NOT_JSON_VALUES, constant_problem
from .unicode import escapes_problem, unicode_problem

__all__ = [
    "ADMITTED",
    "BODY_COMPLETE",
    "REFUSED_CALLER",
    "SERVED_METHODS",
    "Admitted",
    "GuardMiddleware",
    "HeadAsGet",
    "RefuseJsonConstants",
    "crash_response",
    "guarded_headers",
    "replay_body",
]

ADMITTED = "fleet.admitted"
"""The scope key under which the guard leaves what it decided for the layers inside it."""

REFUSED_CALLER = "fleet.refused_caller"
"""Scope key under which the direct answers leave the caller they refused (``api/direct.py``).

The guard answers with that refusal instead of deciding again: for an agent
token, deciding is a store read when the agent is not cached, and a made-up one
never is (``UnknownAgents``).
"""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose routes take a body (FastAPI parses none on the others)."""

SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""Methods the latency metric is labelled with by name; any other is ``other``."""

BODY_COMPLETE = "fleet.body_complete"
"""Scope key ``serve``'s protocol sets once the request's last byte is parsed.

A request that fits one read (nearly every one) has it before its task first runs:
its whole body is buffered, so the guard reads it without a deadline around a read
that cannot wait. Without the key (another server, a body still arriving) the read
has the ``FLEET_BODY_TIMEOUT_SECONDS`` deadline.
"""


class Admitted:
    """What the guard learned of a request it let through (``scope[ADMITTED]``).

    The hot path (``api/hot.py``) serves from it instead of reading the body and
    authenticating the caller a second time: ``role`` is the role the guard checked
    the token for (None on a route that needs none) and ``agent`` the calling agent's
    document when that role is ``AGENT``.
    """

    __slots__ = ("agent", "body", "content_type", "role")

    def __init__(
        self, body: bytes, content_type: bytes | None, role: Role | None, agent: Document | None
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.role = role
        self.agent = agent


class _RefusedError(Exception):
    """A request refused before the app saw it; ``response`` is the answer.

    ``unread`` when the body may not have been read to its end: the answer then closes
    the connection rather than let the server read the rest of it.
    """

    def __init__(self, response: JSONResponse, *, unread: bool = True) -> None:
        self.response = response
        self.unread = unread


def _brief_refusal(scope: Scope, send: Send) -> Send:
    """The lifespan's ``send``, without the traceback of a start refused on a setting.

    Starlette reports a failed start with the exception's traceback, which uvicorn
    logs as one line dozens of lines long; the lifespan (``app.py``) has already logged
    a refused setting as one ``coordinator.start_refused`` event saying what to change,
    and set ``start_refused`` on the app's state.
    """
    state = scope["app"].state

    async def brief(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed" and getattr(state, "start_refused", False):
            message = {**message, "message": ""}
        await send(message)

    return brief


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """The coordinator serves no WebSocket endpoint: a handshake gets 404 in the error shape.

    Handed to the app, it got Starlette's bare close, which uvicorn answers with a 403
    and no body at all, whatever the path (``/healthz`` with ``Upgrade: websocket``).
    """
    await receive()  # websocket.connect
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close"})  # the server can only refuse: a bare 403
        return
    answer = error_response(404, "not_found", "this coordinator serves no WebSocket endpoint")
    await send(
        {
            "type": "websocket.http.response.start",
            "status": answer.status_code,
            "headers": answer.raw_headers,
        }
    )
    await send({"type": "websocket.http.response.body", "body": answer.body})


class HeadAsGet:
    """Serve ``HEAD`` as the ``GET`` of the same path, as RFC 9110 asks of every server.

    Load balancers and uptime checks probe ``/healthz`` with ``HEAD``; the routes
    declare ``GET`` only, so it was a 405. The layers inside see a ``GET`` (a copy of
    the scope: the server keeps its own, and so sends the status and headers of the
    answer without its body). Authentication and limits are the ``GET``'s.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class RefuseJsonConstants:
    """Answer 400 for a body holding ``NaN`` or an infinity, in front of FastAPI's parser.

    FastAPI reads a body with ``json.loads``, which takes those literals that JSON has
    not (``api/literals.py``). This layer sits right in front of the framework, so only
    the requests it parses pay the search: the hot path answers its own from orjson's
    parse, which refuses them, and hands the rest on through here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            admitted: Admitted | None = scope.get(ADMITTED)
            if admitted is not None and admitted.body:
                details = constant_problem(admitted.body, admitted.content_type)
                if details is not None:
                    answer = error_response(400, "bad_request", NOT_JSON_VALUES, details)
                    await answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class GuardMiddleware:
    """Refuse callers, oversized bodies and invalid text early; time requests; catch defects."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        metrics: Metrics,
        headers_under: tuple[str, Sequence[tuple[bytes, bytes]]] | None = None,
        page_under: ErrorPage | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        # (prefix, headers): added to every answer under the prefix that lacks them.
        self._prefix, self._headers = headers_under or ("", ())
        self._prefix_dir = self._prefix + "/"
        # Answers for a refusal under the prefix instead of the error shape (the console's
        # page); a 500 keeps the shape: a defect's answer should not depend on more code.
        self._page = page_under
        self.log = structlog.get_logger("fleet_coordinator")
        self._rules: RouteRules | None = None

    def rules(self, app: FastAPI) -> RouteRules:
        """The route rules, built on the first request (when every route is included)."""
        if self._rules is None:
            self._rules = RouteRules(app, self.settings.max_payload_bytes)
        return self._rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = _brief_refusal(scope, send)
            await self.app(scope, receive, send)
            return
        begin = time.perf_counter()
        rules, path = self.rules(scope["app"]), scope["path"]
        if len(path) <= REMEMBERED_PATH:  # RouteRules.match, without a frame of its own
            rule = rules.remembered(scope["method"], path)
        else:
            rule = rules.first(scope["method"], path)
        started = False
        under = self._prefix and (path == self._prefix or path.startswith(self._prefix_dir))
        extra = self._headers if under else None

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra is not None:
                    headers = list(message.get("headers", []))
                    names = {name for name, _ in headers}
                    message["headers"] = headers + [h for h in extra if h[0] not in names]
            await send(message)

        try:
            admitted = await self._admit(scope, receive, rule)
            if admitted is None:
                return  # the client went away before sending its body
            scope[ADMITTED] = admitted
            body = admitted.body
            if may_long_poll(scope, body):  # its wait ends when the caller hangs up
                await run_until_disconnect(self.app, scope, body, receive, tracked)
            else:
                await self.app(scope, replay_body(body, receive), tracked)
        except _RefusedError as refused:
            answer: Response = refused.response
            if under and self._page is not None:
                answer = self._page(Request(scope), refused.response)
            if refused.unread:
                answer.headers["connection"] = "close"
            await answer(scope, receive, tracked)
        except Exception as exc:
            crash = crash_response(self.log, scope.get("method"), scope.get("path"), exc)
            if not started:
                await crash(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", rule.path)
            elapsed = time.perf_counter() - begin
            method = scope["method"]
            if method not in SERVED_METHODS:
                # httptools parses ~34 methods (PROPFIND, MKCOL, …): each answered 405 on
                # each path would make a histogram series of its own, for callers with no
                # token, at no cost to them.
                method = "other"
            self.metrics.labelled(self.metrics.latency, method, route).observe(elapsed)

    async def _admit(self, scope: Scope, receive: Receive, rule: RouteRule) -> Admitted | None:
        """The whole body and the caller once caller, size and text pass; ``_RefusedError`` else."""
        auth, auths, ctype, ctypes, length, coding, encoding = guarded_headers(scope["headers"])
        agent = None
        if rule.role is not None:
            if auths > 1:
                # Authorization is a singleton (RFC 9110): which of several counts would
                # be up to each reader, and a proxy that appends one could pick it.
                message = "more than one Authorization header: send exactly one"
                raise _RefusedError(error_response(400, "bad_request", message))
            header = None if auth is None else auth.decode("latin-1")
            try:
                refused: CoordinatorError | None = scope.pop(REFUSED_CALLER, None)
                if refused is not None:
                    raise refused
                agent = await authorize(scope["app"].state.coordinator, header, rule.role)
            except CoordinatorError as exc:
                if exc.status == 503:  # the agent's document could not be read
                    co: Coordinator = scope["app"].state.coordinator
                    co.unavailable.answered(scope["method"], rule.path, exc.reason)
                raise _RefusedError(
                    error_response(exc.status, exc.code, exc.message, exc.details)
                ) from None
        raw_path, query = scope.get("raw_path") or b"", scope.get("query_string", b"")
        if b"%" in raw_path or b"%" in query:  # else nothing to decode (httptools: ASCII)
            escapes = escapes_problem(raw_path, query)
            if escapes is not None:
                raise _RefusedError(error_response(escapes.status, escapes.code, escapes.message))
        if coding is not None and coding.strip().lower() != b"chunked":
            # httptools reads the chunks and ignores any coding under them (a gzip'd body
            # would be read as it is): refused, with 400, not RFC 9112's 501 (SPEC: no
            # input gets a 5xx but 503).
            raise _RefusedError(error_response(400, "bad_request", "unsupported transfer coding"))
        if length is not None:
            if not length.isdigit():
                raise _RefusedError(error_response(400, "bad_request", "invalid Content-Length"))
            if int(length) > rule.body_limit:
                raise _RefusedError(_too_large(rule.body_limit))
        if encoding is not None and (coding is not None or (length is not None and int(length))):
            # Nothing here decompresses: a gzip'd body was read as text (400 "not UTF-8"),
            # and a plain one labelled gzip was served as if the label were not there.
            raise _RefusedError(_unsupported_coding(encoding))
        if rule.json_body and (coding is not None or (length is not None and int(length))):
            _check_json_media(ctype, ctypes)
        try:
            if scope.get(BODY_COMPLETE):
                # Parsed whole already (protocol.py): the read cannot wait, so no
                # deadline (asyncio.timeout was 2.8 % of a one-call enqueue's instructions).
                body = await _read(receive, rule.body_limit)
            else:
                async with asyncio.timeout(self.settings.body_timeout_seconds):
                    body = await _read(receive, rule.body_limit)
        except TimeoutError:
            raise _RefusedError(
                error_response(408, "request_timeout", "the body did not arrive in time")
            ) from None
        if body is None:
            return None
        if body:
            problem = unicode_problem(body, ctype)
            if problem is not None:
                raise _RefusedError(
                    error_response(problem.status, problem.code, problem.message, problem.details),
                    unread=False,
                )
        return Admitted(body, ctype, rule.role, agent)


def guarded_headers(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[bytes | None, int, bytes | None, int, bytes | None, bytes | None, bytes | None]:
    """The headers the guard decides on: authorization and how many, content type and how
    many, length, transfer coding and content coding.

    The first ``Authorization`` and ``Content-Type`` count (as Starlette reads them),
    the last ``Content-Length`` and ``Transfer-Encoding``; the guard refuses a request
    whose route needs a token when ``Authorization`` comes more than once, and a JSON
    body under more than one ``Content-Type``. The content coding is the last
    ``Content-Encoding`` naming one other than ``identity`` (None: the body is sent as
    it is).
    """
    auth = ctype = length = coding = encoding = None
    auths = ctypes = 0
    for name, value in headers:
        if name == b"authorization":
            auths += 1
            if auth is None:
                auth = value
        elif name == b"content-type":
            ctypes += 1
            if ctype is None:
                ctype = value
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            coding = value
        elif name == b"content-encoding" and not _identity(value):
            encoding = value
    return auth, auths, ctype, ctypes, length, coding, encoding


def _check_json_media(ctype: bytes | None, ctypes: int) -> None:
    """Refuse a JSON route's body sent as anything but JSON, before it is read.

    FastAPI reads a body as JSON only under ``application/json`` or ``application/*+json``
    and answers any other (``curl -d`` sends a form's type) with a 422 about a missing
    object that does not say why. Two types: which one counts would be up to each reader.
    """
    if ctypes > 1:
        message = "more than one Content-Type header: send exactly one"
        raise _RefusedError(error_response(400, "bad_request", message))
    media = b"" if ctype is None else ctype.split(b";")[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return
    sent = "none" if ctype is None else repr(ctype.decode("latin-1").strip()[:64])
    message = f"the body must be JSON, sent with Content-Type: application/json (got {sent})"
    raise _RefusedError(error_response(415, "unsupported_media_type", message))


def _identity(value: bytes) -> bool:
    """Whether a ``Content-Encoding`` value names no coding but ``identity`` (a list may)."""
    return all(part.strip().lower() in (b"identity", b"") for part in value.split(b","))


def crash_response(log: Any, method: str | None, path: str | None, exc: Exception) -> Any:
    """A defect: logged with a new error id and its traceback, answered 500 with that id.

    Call it inside the ``except`` that caught ``exc`` (the traceback is that one's).
    """
    error_id = uuid.uuid4().hex
    # The path and method only: a body or a header could hold a payload or a token.
    log.exception(
        "coordinator.request.crashed",
        error_id=error_id,
        method=method,
        path=path,
        error=type(exc).__name__,
    )
    return error_response(
        500,
        "internal_error",
        "an internal error; it is logged under this error_id",
        {"error_id": error_id},
    )


def _unsupported_coding(encoding: bytes) -> JSONResponse:
    """415 for a body in a content coding (RFC 9110 §15.5.16: naming the one accepted)."""
    name = encoding.decode("latin-1").strip()[:64]  # a header may be 64 KiB; this is enough
    message = f"Content-Encoding {name!r} is not supported: send the body uncompressed"
    answer = error_response(415, "unsupported_media_type", message, {"content_encoding": name})
    answer.headers["Accept-Encoding"] = "identity"
    return answer


def _too_large(limit: int) -> JSONResponse:
    return error_response(
        413, "payload_too_large", "the request body is too large", {"limit": limit}
    )


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The body, read chunk by chunk; ``_RefusedError`` (413) as soon as it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _RefusedError(_too_large(limit))
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)  # joined once: `+=` per chunk is quadratic


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the body once, then the real channel (disconnects)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
