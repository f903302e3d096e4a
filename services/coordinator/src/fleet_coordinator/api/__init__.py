"""The HTTP API: routers, models and the error boundary."""

from .errors import install_error_handlers
from .routes_agents import router as agents_router
from .routes_jobs import router as jobs_router
from .routes_leases import router as leases_router
from .routes_ops import router as ops_router
from .routes_queues import router as queues_router
from .routes_schedules import router as schedules_router

__all__ = [
    "agents_router",
    "install_error_handlers",
    "jobs_router",
    "leases_router",
    "ops_router",
    "queues_router",
    "schedules_router",
]
