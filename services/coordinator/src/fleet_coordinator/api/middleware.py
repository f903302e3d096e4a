"""One plain ASGI middleware: body-size guard, request latency, and the last-resort catch.

Written as raw ASGI rather than ``@app.middleware("http")``: Starlette's
``BaseHTTPMiddleware`` spawns tasks per request and costs several times a bare
endpoint's overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics
from .errors import error_response

__all__ = ["GuardMiddleware"]


class GuardMiddleware:
    """Refuse oversized bodies (413), time each request, and never let a crash answer 500."""

    def __init__(self, app: ASGIApp, *, body_limit: Callable[[str], int], metrics: Metrics) -> None:
        self.app = app
        self.body_limit = body_limit
        self.metrics = metrics
        self.log = structlog.get_logger("fleet_coordinator")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        started = False
        begin = time.perf_counter()

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            # Last resort: an unexpected error is a bug; log it, never answer 500.
            self.log.exception("coordinator.request.crashed", path=scope.get("path"))
            if not started:
                crash = error_response(503, "internal_error", f"unexpected {type(exc).__name__}")
                await crash(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - begin
            self.metrics.latency.labels(scope.get("method", ""), route).observe(elapsed)

    def _refusal(self, scope: Scope) -> Any:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    return error_response(400, "bad_request", "invalid Content-Length")
                limit = self.body_limit(str(scope.get("path", "")))
                if int(value) > limit:
                    return error_response(
                        413, "payload_too_large", "the request body is too large", {"limit": limit}
                    )
        return None
