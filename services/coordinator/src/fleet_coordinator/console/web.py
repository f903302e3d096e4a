"""What every console page shares: templates, security headers, the session check, forms.

Pages are rendered by Jinja2 with autoescaping on for every template, so job
payloads, kinds, queues, errors, labels and agent names, all written by
whoever holds a token, are text in the page and never markup. Every answer
carries a Content-Security-Policy that allows scripts only from the
coordinator's own ``/ui/static/`` files (no inline script, no ``eval``).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..api.deps import get_coordinator
from ..services import Coordinator, StatsSnapshot
from .guards import SignInLimiter
from .sessions import COOKIE, Session, find_session, same_token

__all__ = [
    "CSP",
    "Console",
    "BadForm",
    "Forbidden",
    "SECURITY_HEADERS",
    "SignInNeeded",
    "console_of",
    "error_page",
    "page",
    "read_form",
    "redirect",
    "require_csrf",
    "require_session",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
"""On every answer under ``/ui``, the guard's own refusals and 500s included: the guard
adds them (``GuardMiddleware``'s ``headers_under``, set in ``app.py``), so the console
needs no ASGI layer of its own, which every API request would pass through."""
REFRESH_SECONDS = 5
"""How often an open, visible console page refreshes its live part."""
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 50
"""Fields a console form may have; the largest (a job filter) has seven."""


def _age(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("fleet_coordinator.console") / "templates")),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, when=_when, pretty=_pretty, compact=_compact)
    env.globals["refresh_seconds"] = REFRESH_SECONDS
    return env


@dataclass
class Console:
    """The console's per-app state: templates, the sign-in limiter, the queue snapshot."""

    templates: jinja2.Environment
    limiter: SignInLimiter
    stats: StatsSnapshot

    @classmethod
    def create(cls, stats: StatsSnapshot) -> Console:
        """The state of one app, whose queue counts come from ``stats``."""
        return cls(_environment(), SignInLimiter(), stats)


def console_of(request: Request) -> Console:
    """The app's console state."""
    console: Console = request.app.state.console
    return console


class SignInNeeded(Exception):  # noqa: N818 - a signal, answered with a redirect
    """No live session: the answer is a redirect to the sign-in page."""


class Forbidden(Exception):  # noqa: N818 - a signal, answered with 403
    """A state-changing request without the session's CSRF token."""


class BadForm(Exception):  # noqa: N818 - a signal, answered with its status
    """A form the console will not read: 413 too large, 400 not a form of UTF-8 text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def require_session(request: Request) -> Session:
    """The request's live session, else ``SignInNeeded``."""
    co = await get_coordinator(request)
    session = await find_session(co, request.cookies.get(COOKIE))
    if session is None:
        raise SignInNeeded
    return session


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST (first value of each field), bounded in size."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadForm(413, "The form is larger than the console accepts.")
    try:
        # strict: a percent-escape that is not UTF-8 is refused, not read as U+FFFD (SPEC).
        pairs = urllib.parse.parse_qsl(
            body.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except UnicodeDecodeError as exc:  # a ValueError: caught first for its own message
        raise BadForm(400, "The form is not UTF-8 text.") from exc
    except ValueError as exc:  # more fields than MAX_FORM_FIELDS
        raise BadForm(400, "The form has more fields than the console accepts.") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def require_csrf(session: Session, form: dict[str, str]) -> None:
    """403 unless the form carries the session's CSRF token."""
    if not same_token(form.get("csrf", ""), session.csrf):
        raise Forbidden("missing or wrong CSRF token")


def page(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the common context; never cached by the browser."""
    console = console_of(request)
    co: Coordinator = request.app.state.coordinator
    html = console.templates.get_template(template).render(
        request_path=request.url.path,
        request_query=request.url.query,
        csrf=session.csrf if session else "",
        signed_in=session is not None,
        now=co.clock.now(),
        status=status,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


_TITLES = {
    404: "Not found",
    405: "Not allowed",
    408: "Too slow",
    413: "Too large",
    429: "Too many requests",
}
_KEPT_AS_IS = frozenset({"content-type", "content-length"})


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "The request was refused."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def error_page(request: Request, answer: JSONResponse) -> Response:
    """The console's page for an error the API answers with ``answer`` (its error shape).

    The same status and headers (``Allow`` on a 405, ``Retry-After`` on a 503), the
    message and each validation problem as escaped text: a person reads the page, where
    a program reads the shape. Nothing is looked up (no session: the page is the same
    signed in or not), so a refusal costs no store read.
    """
    error = json.loads(bytes(answer.body))["error"]
    details = error.get("details") or {}
    problems = [
        f"{' '.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}"
        for e in details.get("errors", [])
    ]
    status = answer.status_code
    html = page(
        request,
        "error.html",
        session=None,
        status=status,
        title=_TITLES.get(status, "Refused" if status < 500 else "Unavailable"),
        message=_sentence(str(error.get("message", ""))),
        problems=problems,
    )
    for name, value in answer.headers.items():
        if name not in _KEPT_AS_IS:
            html.headers[name] = value
    return html


def redirect(to: str) -> Response:
    """303 See Other: after a form, the browser loads the page with GET."""
    return RedirectResponse(to, status_code=303)
