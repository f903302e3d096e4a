"""The operator console at ``/ui/``: server-rendered pages, plain forms, htmx for refreshing.

``install_console(app, settings)`` adds its routes, static files, security
headers and error pages to the coordinator's app; it needs no other server
and loads nothing from elsewhere (htmx is vendored under ``static/``).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from .actions import router as actions_router
from .pages import router as pages_router
from .web import Console, ConsoleHeaders, Forbidden, SignInNeeded, page, redirect

__all__ = ["install_console"]


async def _on_signin_needed(request: Request, exc: Exception) -> Response:
    if request.method in ("GET", "HEAD"):
        return redirect("/ui/signin")
    # A state-changing request with no session has no valid CSRF token either.
    return page(request, "forbidden.html", session=None, status=403)


async def _on_forbidden(request: Request, exc: Exception) -> Response:
    return page(request, "forbidden.html", session=None, status=403)


def install_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console under ``/ui/`` from ``app``."""
    app.state.console = Console.create(stats_max_age=settings.reaper_interval_seconds)
    app.add_exception_handler(SignInNeeded, _on_signin_needed)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.include_router(pages_router)
    app.include_router(actions_router)
    static = StaticFiles(directory=str(files("fleet_coordinator.console") / "static"))
    app.mount("/ui/static", static, name="console-static")
    app.add_middleware(ConsoleHeaders)

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return redirect("/ui/")
