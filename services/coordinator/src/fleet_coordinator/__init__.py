"""Fleet Coordinator: a stateless job coordinator with fenced leases over a document store."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
