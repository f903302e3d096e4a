"""Fleet Coordinator: a stateless job coordinator with fenced leases over a document store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI and every route) is imported on first use, not with the package:
    # `serve --workers N` spawns workers that import the CLI's module before they can
    # answer uvicorn's 5 s health check, and on a loaded machine the full import did
    # not always fit (the worker was killed and respawned).
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
