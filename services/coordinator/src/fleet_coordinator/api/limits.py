"""Who may call each route and how many body bytes it may send, derived from the app's routes.

The guard (``api/middleware.py``) must decide both *before* it reads a body, so it
cannot wait for FastAPI's routing. Nothing here is a second hand-written table:

- the **role** of a route is the auth dependency FastAPI would run for it
  (``require_admin`` or ``require_agent``, found in its dependency tree);
- its **body limit** is the largest body its request model can validly have, computed
  from the model's JSON schema in the app's OpenAPI document: each string counts
  ``maxLength`` characters of up to 6 bytes (a ``\\uXXXX`` escape), each array or map
  its ``maxItems``/``maxProperties`` entries, and each free-form JSON value (a job's
  ``payload``, a ``result``, ``progress``) twice ``FLEET_MAX_PAYLOAD_BYTES``, the room
  its escapes and white space may take. So a job is the payload limit plus its
  envelope, a batch a thousand of those, and a route without a body model gets
  ``SMALL_BODY``. A new route or model is covered the moment it is added.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from .deps import Role, require_admin, require_agent

__all__ = [
    "MATCHES_KEPT",
    "REMEMBERED_PATH",
    "SMALL_BODY",
    "Role",
    "RouteRule",
    "RouteRules",
    "schema_bound",
]

MATCHES_KEPT = 4096
"""Paths whose route match is remembered (least recently used out first).

Agents send the same few paths over and over (``/v1/reports``, ``/v1/claims``):
a remembered match is one lookup instead of a regular expression per route tried
(~20 for ``/v1/reports``); paths with ids come and go without growing the memory.
"""

REMEMBERED_PATH = 512
"""The longest path whose match is remembered; a longer one is matched anew each time.

A remembered path is kept until 4,096 newer ones push it out: without a bound, anyone
could pin ~250 MB a replica with unique 60 KB paths, unauthenticated (each is a 404).
No route of the API has a path near this long.
"""


SMALL_BODY = 16 * 1024
"""The limit of a route without a body model (and of unknown paths)."""
SLACK = 16 * 1024
"""Added to every computed limit: white space between fields, a longer number."""
CHAR = 6
"""Bytes one character of a JSON string can take (``\\u00e9``; UTF-8 takes at most 4)."""
SCALAR = 32
"""A number, ``true``, ``false`` or ``null``."""
_DATE_CHARS = 40
"""An ISO-8601 date-time with a fraction and an offset."""


@dataclass(frozen=True, slots=True)
class RouteRule:
    """What the guard enforces for one route."""

    path: str  # the template, e.g. /v1/jobs/{job_id}/complete (the metrics label)
    role: Role | None  # None: no token checked here (operations endpoints, the console)
    body_limit: int
    json_body: bool = False  # its body is a JSON model (the console's forms are not)


UNMATCHED = RouteRule("unmatched", None, SMALL_BODY)


def schema_bound(schema: Mapping[str, Any], components: Mapping[str, Any], portable: int) -> int:
    """The largest JSON text (bytes) a value valid for ``schema`` can be.

    ``portable`` is the bound of a free-form value (no type, an open object, an
    unbounded string or array); ``components`` resolves ``$ref``.
    """
    return _bound(schema, components, portable, frozenset())


def _bound(
    s: Mapping[str, Any], defs: Mapping[str, Any], portable: int, seen: frozenset[str]
) -> int:
    ref = s.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:  # a recursive model: as deep as the client likes
            return portable
        return _bound(defs[name], defs, portable, seen | {name})
    for key in ("anyOf", "oneOf"):
        if key in s:
            return max(_bound(option, defs, portable, seen) for option in s[key])
    if "allOf" in s:  # every part applies: the tightest one bounds the value
        return min(_bound(part, defs, portable, seen) for part in s["allOf"])
    if "const" in s or "enum" in s:
        values = [s["const"]] if "const" in s else list(s["enum"])
        return max(CHAR * len(str(v)) + 2 if isinstance(v, str) else SCALAR for v in values)
    kind = s.get("type")
    if isinstance(kind, list):
        return max(_bound({**s, "type": k}, defs, portable, seen) for k in kind)
    if kind == "string":
        if "format" in s and s["format"] in ("date-time", "date", "time", "duration", "uuid"):
            return CHAR * _DATE_CHARS + 2
        length = s.get("maxLength")
        return portable if length is None else CHAR * int(length) + 2
    if kind in ("number", "integer", "boolean", "null"):
        return SCALAR
    if kind == "array":
        items = s.get("maxItems")
        if items is None:
            return portable
        return 2 + int(items) * (_bound(s.get("items", {}), defs, portable, seen) + 1)
    if kind == "object" or "properties" in s:
        return _object_bound(s, defs, portable, seen)
    return portable  # no type at all: any JSON value


def _object_bound(
    s: Mapping[str, Any], defs: Mapping[str, Any], portable: int, seen: frozenset[str]
) -> int:
    props: Mapping[str, Any] = s.get("properties", {})
    total = 2 + sum(
        CHAR * len(name) + 4 + _bound(sub, defs, portable, seen) for name, sub in props.items()
    )
    extra = s.get("additionalProperties", None if props else True)
    if extra is None or extra is False:
        return total  # only the declared fields (unknown ones are refused or ignored)
    count = s.get("maxProperties")
    if extra is True or count is None:
        return total + portable
    key = _bound({"type": "string", **s.get("propertyNames", {})}, defs, portable, seen)
    return total + int(count) * (key + 2 + _bound(extra, defs, portable, seen))


def _role(dependant: Any) -> Role | None:
    """The auth dependency in a route's dependency tree, if any."""
    stack = [dependant]
    while stack:
        node = stack.pop()
        if node.call is require_admin:
            return Role.ADMIN
        if node.call is require_agent:
            return Role.AGENT
        stack.extend(node.dependencies)
    return None


class RouteRules:
    """The rule of every route of one app, matched as Starlette matches them."""

    def __init__(self, app: FastAPI, max_payload_bytes: int) -> None:
        openapi = app.openapi()
        components = openapi.get("components", {}).get("schemas", {})
        portable = 2 * max_payload_bytes
        self.rules: list[tuple[re.Pattern[str], frozenset[str], RouteRule]] = []
        for context in iter_route_contexts(app.routes):
            dependant = getattr(context, "dependant", None)
            methods, path = context.methods, context.path_format
            if dependant is None or not methods or path is None:
                continue  # mounts and plain Starlette routes: no token, small bodies
            limit, json_body = SMALL_BODY, False
            for method in methods:
                schema = _body_schema(openapi, path, method)
                if schema is not None:
                    limit = max(limit, schema_bound(schema, components, portable) + SLACK)
                    json_body = json_body or _takes_json(openapi, path, method)
            rule = RouteRule(path, _role(dependant), limit, json_body)
            self.rules.append((context.path_regex, frozenset(methods), rule))

        # Called for paths up to REMEMBERED_PATH only (``match`` and the guard check the
        # length where they call it: a wrapper doing it would cost every request a frame).
        self.remembered = functools.lru_cache(MATCHES_KEPT)(self.first)

    def match(self, method: str, path: str) -> RouteRule:
        """The rule of the route FastAPI would pick (remembered for a path of a route's length)."""
        if len(path) <= REMEMBERED_PATH:
            return self.remembered(method, path)
        return self.first(method, path)

    def first(self, method: str, path: str) -> RouteRule:
        """The rule of the first route whose path and method match, as FastAPI would route."""
        for regex, methods, rule in self.rules:
            if method in methods and regex.match(path):
                return rule
        return UNMATCHED

    def __iter__(self) -> Iterator[RouteRule]:
        return (rule for _, _, rule in self.rules)


def _takes_json(openapi: Mapping[str, Any], path: str, method: str) -> bool:
    operation = openapi.get("paths", {}).get(path, {}).get(method.lower(), {})
    return "application/json" in operation.get("requestBody", {}).get("content", {})


def _body_schema(openapi: Mapping[str, Any], path: str, method: str) -> Mapping[str, Any] | None:
    operation = openapi.get("paths", {}).get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    media = content.get("application/json") or next(iter(content.values()), None)
    return None if media is None else media.get("schema", {})
