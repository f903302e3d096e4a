"""The one boundary where errors become HTTP answers of the shape SPEC.md requires."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import CoordinatorError
from ..services import Coordinator
from .literals import long_integer_at

__all__ = ["ErrorPage", "error_response", "install_error_handlers", "under"]

_LONG_INTEGER = "integer string conversion"
"""In the message of the ValueError Python's parser raises for an integer past its limit."""

ErrorPage = Callable[[Request, JSONResponse], Response]
"""Answers for an error answer in the SPEC shape, with its status and headers (a page)."""
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

RETRY_AFTER_SECONDS = 2
"""What a 503 or a 429 tells clients to wait before retrying (``Retry-After``)."""
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    429: "too_many_requests",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    """``{"error": {"code", "message", "details"}}`` with ``status``.

    A 401 names the scheme (``WWW-Authenticate``); a 503 (the store is unavailable, the
    only 5xx a client should retry) and a 429 (a per-agent limit) say when to retry
    (``Retry-After``).
    """
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status in (429, 503):
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only location, message and type: echoing the input could leak payloads.
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in exc.errors()
    ]


def _from_coordinator_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CoordinatorError)
    if exc.status == 503:
        co: Coordinator | None = getattr(request.app.state, "coordinator", None)
        if co is not None:
            # The template, not the path: a path holds ids (and is the client's text).
            route = getattr(request.scope.get("route"), "path", "unmatched")
            co.unavailable.answered(request.method, route, exc.reason)
    return error_response(exc.status, exc.code, exc.message, exc.details)


def _from_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "bad_request", "the body is not valid JSON", {"errors": errors})
    return error_response(422, "validation_error", "the request is invalid", {"errors": errors})


def _from_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    unparsed = _unparsed(exc)
    details = None if unparsed is None else _unparsed_details(request, exc)
    answer = error_response(exc.status_code, code, unparsed or str(exc.detail), details)
    if exc.headers:
        answer.headers.update(exc.headers)
    if exc.status_code == 405:
        # RFC 9110 requires ``Allow`` on every 405. Starlette's names the methods of the
        # first route of the path only (``PUT /v1/jobs``: POST, where GET works too).
        answer.headers["Allow"] = ", ".join(_allowed(request))
    return answer


def _unparsed(exc: StarletteHTTPException) -> str | None:
    """Why FastAPI could not parse a body it answers with a bare "error parsing the body".

    Python's JSON parser refuses integers of more than 4,300 digits (a guard against
    slow conversions) and nesting past the recursion limit; orjson, which reads the
    bodies served hot, refuses both earlier, so those bodies reach FastAPI's parser.
    """
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply to parse"
    if isinstance(cause, ValueError) and _LONG_INTEGER in str(cause):
        return "an integer in the body has over 4300 digits: integers must be within ±(2**53-1)"
    return None


def _unparsed_details(request: Request, exc: StarletteHTTPException) -> dict[str, Any] | None:
    """Where the integer of over 4,300 digits is, from the body the guard admitted."""
    # Imported here: the guard's module imports this one.
    from .middleware import ADMITTED

    admitted = request.scope.get(ADMITTED)
    cause = exc.__cause__
    if admitted is None or not (isinstance(cause, ValueError) and _LONG_INTEGER in str(cause)):
        return None
    return long_integer_at(admitted.body)


def _allowed(request: Request) -> list[str]:
    """The methods some route of the app serves at the request's path (routers included)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.router.routes):
        regex = getattr(context.route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(context.methods or ())
    if "GET" in methods:
        methods.add("HEAD")  # served as the GET (``middleware.HeadAsGet``)
    return sorted(methods)


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it (``/ui``, ``/ui/jobs``; not ``/uix``)."""
    return path == prefix or path.startswith(prefix + "/")


def install_error_handlers(
    app: FastAPI, *, pages_under: tuple[str, ErrorPage] | None = None
) -> None:
    """Map every error FastAPI or the services raise to the SPEC shape.

    ``pages_under`` is ``(prefix, page)``: under the prefix (the console's ``/ui``) the
    answer in that shape is handed to ``page``, which answers for it with the same
    status and headers, for people rather than programs.
    """
    prefix, page = pages_under or ("", None)

    def handler(shape: Callable[[Request, Exception], JSONResponse]) -> ExceptionHandler:
        async def answer(request: Request, exc: Exception) -> Response:
            shaped = shape(request, exc)
            if page is not None and under(request.scope["path"], prefix):
                return page(request, shaped)
            return shaped

        return answer

    app.add_exception_handler(CoordinatorError, handler(_from_coordinator_error))
    app.add_exception_handler(RequestValidationError, handler(_from_validation_error))
    app.add_exception_handler(StarletteHTTPException, handler(_from_http_error))
