"""Plain hot requests answered for ``serve``'s protocol itself, without ASGI.

Under ``serve``, a request goes through uvicorn's request cycle (the ASGI scope,
``receive`` and ``send`` and their message dicts), uvicorn's proxy-headers layer,
the tracing shell, Starlette's app, the guard and the hot path before the
endpoint runs: measured, those layers cost about a fifth of a one-call enqueue's
server CPU (docs/benchmarks.md, "Sixteenth session"). ``DirectAnswers`` serves
the *plain* hot request in their place, and nothing else:

- a ``POST`` whose body arrived whole with its headers (nearly every request: the
  protocol has parsed it before the request's task first runs), with a
  ``Content-Length`` and no ``Transfer-Encoding`` or content coding, no query string, no
  percent-escape in its path, one ``Authorization`` header, a body within the
  route's limit;
- to a route the hot path serves (``HotRoutes``: the app's own POST routes),
  whose role the token passes (``authorize``, the guard's one decision);
- with a body that is valid UTF-8 without lone surrogates (``unicode_problem``)
  and valid for the route's model, on a request that cannot long-poll;
- while no OpenTelemetry SDK is configured (a traced request gets its server span
  from the ASGI middleware).

For anything else it returns None before running anything, and the protocol runs
the ASGI app from the start on the same request, its body still in the cycle: the
guard then refuses what it refuses (401, 403, 408, 413, 415, 400) exactly as before,
and FastAPI answers what the hot path hands on. So the direct path adds no rule of
its own: every check above either passes or sends the request the long way.
What it answers is the hot path's own answer (``answer_hot``), the guard's latency
metric is observed for it, and a defect is logged and answered 500 with an error
id, as the guard does.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI

from ..errors import CoordinatorError
from ..services import Coordinator
from ..tracing import requests_traced
from .deps import authorize
from .disconnects import may_long_poll
from .hot import HotAnswer, HotRoutes, answer_hot
from .limits import REMEMBERED_PATH, RouteRule, RouteRules
from .middleware import REFUSED_CALLER, Admitted, crash_response, guarded_headers
from .unicode import unicode_problem

__all__ = ["DirectAnswers"]


class DirectAnswers:
    """Answer a plain hot request from its scope and whole body; None: the ASGI app's."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes = HotRoutes()
        self._rules: RouteRules | None = None
        self.log = structlog.get_logger("fleet_coordinator")

    async def __call__(self, scope: dict[str, Any], body: bytes) -> HotAnswer | None:
        """The answer to a ``POST`` whose ``body`` is whole, or None (nothing was run)."""
        co: Coordinator | None = getattr(self.app.state, "coordinator", None)
        if co is None:
            return None  # before the lifespan started it: the ASGI app answers
        begin = time.perf_counter()
        path: str = scope["path"]
        label = "unmatched"
        try:
            rule = self._rule(co, path)
            label = rule.path  # the guard's label for the latency metric
            answer = await self._answer(co, scope, path, body, rule)
        except Exception as exc:
            crash = crash_response(self.log, "POST", path, exc)
            answer = HotAnswer(crash.status_code, crash.raw_headers, bytes(crash.body))
        if answer is not None:
            latency = co.metrics.labelled(co.metrics.latency, "POST", label)
            latency.observe(time.perf_counter() - begin)
        return answer

    async def _answer(
        self, co: Coordinator, scope: dict[str, Any], path: str, body: bytes, rule: RouteRule
    ) -> HotAnswer | None:
        if scope["query_string"] or b"%" in scope["raw_path"] or requests_traced():
            return None
        found = self.routes.match(self.app, path)
        if found is None:
            return None
        route, params = found
        if rule.role is None or rule.role is not route.role or len(body) > rule.body_limit:
            return None
        auth, auths, ctype, ctypes, length, coding, encoding = guarded_headers(scope["headers"])
        if length is None or coding is not None or auth is None or auths > 1 or ctypes > 1:
            return None
        if encoding is not None:
            return None
        try:
            agent = await authorize(co, auth.decode("latin-1"), rule.role)
        except CoordinatorError as exc:
            # The guard answers it (401, 403, 429, or 503 when the store fails), as
            # decided here: deciding again could read the store again.
            scope[REFUSED_CALLER] = exc
            return None
        if unicode_problem(body, ctype) is not None or may_long_poll(scope, body):
            return None
        return await answer_hot(co, route, params, Admitted(body, ctype, rule.role, agent))

    def _rule(self, co: Coordinator, path: str) -> RouteRule:
        """The guard's rule for ``POST path`` (its role and body limit), from the same routes."""
        rules = self._rules
        if rules is None:
            rules = self._rules = RouteRules(self.app, co.settings.max_payload_bytes)
        if len(path) <= REMEMBERED_PATH:
            return rules.remembered("POST", path)
        return rules.first("POST", path)
