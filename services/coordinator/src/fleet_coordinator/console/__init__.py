"""The operator console at ``/ui/``: server-rendered pages, plain forms, htmx for refreshing.

``install_console(app, settings)`` adds its routes, static files and error
pages to the coordinator's app; its security headers (``SECURITY_HEADERS``) are
added by the guard to every answer under ``/ui`` (``app.py``), its own refusals
and 500s included. Every refusal under ``/ui`` is the console's page
(``error_page``), the guard's and the API's error handlers' too (``app.py``
hands it to both); only a defect's 500 keeps the API's error shape. It needs
no other server and loads nothing from elsewhere (htmx is vendored under
``static/``).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from ..services import StatsSnapshot
from .actions import router as actions_router
from .pages import router as pages_router
from .web import (
    SECURITY_HEADERS,
    BadForm,
    Console,
    Forbidden,
    SignInNeeded,
    error_page,
    page,
    redirect,
)

__all__ = ["SECURITY_HEADERS", "error_page", "install_console"]


async def _on_signin_needed(request: Request, exc: Exception) -> Response:
    if request.method in ("GET", "HEAD"):
        return redirect("/ui/signin")
    # A state-changing request with no session has no valid CSRF token either.
    return page(request, "forbidden.html", session=None, status=403)


async def _on_forbidden(request: Request, exc: Exception) -> Response:
    return page(request, "forbidden.html", session=None, status=403)


async def _on_bad_form(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadForm)
    return page(
        request,
        "error.html",
        session=None,
        status=exc.status,
        title="Too large" if exc.status == 413 else "Refused",
        message=exc.reason,
        problems=[],
    )


def install_console(app: FastAPI, stats: StatsSnapshot) -> None:
    """Serve the console under ``/ui/`` from ``app``; its queue counts come from ``stats``.

    ``stats`` is the replica's one queue snapshot, shared with ``/metrics``' gauges:
    two would recount every queue twice an interval.
    """
    app.state.console = Console.create(stats)
    app.add_exception_handler(SignInNeeded, _on_signin_needed)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(BadForm, _on_bad_form)
    app.include_router(pages_router)
    app.include_router(actions_router)
    static = StaticFiles(directory=str(files("fleet_coordinator.console") / "static"))
    app.mount("/ui/static", static, name="console-static")

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return redirect("/ui/")
