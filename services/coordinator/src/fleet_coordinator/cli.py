"""``fleet-coordinator serve``: run the HTTP API and the reaper with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .logs import configure_logging
from .settings import Settings, problems

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "BACKLOG",
    "EXIT_SETTINGS",
    "KEEP_ALIVE_SECONDS",
    "WORKER_HEALTHCHECK_SECONDS",
    "app_from_env",
    "http_protocol",
    "main",
    "raise_open_files_limit",
    "settings_or_exit",
]

EXIT_SETTINGS = 2
"""The exit status of a setting or an option ``serve`` cannot start with (argparse's too)."""

KEEP_ALIVE_SECONDS = 5
"""An idle keep-alive connection is closed after this long."""
BACKLOG = 2048
"""Connections the kernel queues before the server accepts them."""


MAX_OPEN_FILES = 1 << 20
"""The most open files ``serve`` asks for (Linux's default ``fs.nr_open``)."""


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open files to its hard limit: (before, after).

    Every connection is a file descriptor. At the soft limit most Linux hosts give
    a process (1,024), that many idle connections, which need no token and are each
    held until the header deadline, left the server unable to accept anyone else
    for that long, and again as soon as the attacker reconnected (measured with a
    limit of 256: ``/healthz`` reset until the idle ones were cut). The hard limit
    is what the host allows this process; Go's runtime raises to it at start too.
    None where there are no such limits (Windows) or the host refuses the change.
    """
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):  # e.g. macOS caps the soft limit below the hard one
            return None
        return soft, want
    return soft, soft


def http_protocol(settings: Settings) -> Any:
    """The HTTP protocol: httptools with header limits (``protocol.py``), else uvicorn's h11.

    h11 (only when httptools is not installed) caps headers at 16 KiB but has no
    header deadline.
    """
    try:
        from .protocol import GuardedHttpToolsProtocol
    except ImportError:
        return "h11"
    GuardedHttpToolsProtocol.header_timeout = settings.header_timeout_seconds
    return GuardedHttpToolsProtocol


def app_from_env() -> Any:
    """The app of one ``serve --workers N`` process: logging and settings from the environment."""
    from .app import create_app

    configure_logging()
    settings = Settings()
    http_protocol(settings)  # this worker's header deadline, from its settings
    return create_app(settings, tune_gc=True)


def settings_or_exit(prog: str = "fleet-coordinator") -> Settings:
    """The settings from the environment; a wrong one exits ``EXIT_SETTINGS`` with one line each.

    A line names the variable, what is wrong and the value (never a secret's), on
    stderr: the operator reads them there, not as a pydantic traceback naming the field.
    """
    try:
        return Settings()
    except ValidationError as exc:
        for line in problems(exc):
            print(f"{prog}: {line}", file=sys.stderr)
        raise SystemExit(EXIT_SETTINGS) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="fleet-coordinator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API and the reaper")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port (not with a memory:// store); each is a full replica "
        "with its own reaper, caches and long-poll wake-ups (a job enqueued through one "
        "reaches waiters in another within "
        "FLEET_LONG_POLL_INTERVAL_SECONDS)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    import uvicorn

    from .app import create_app

    configure_logging()
    settings = settings_or_exit()
    if args.workers > 1 and settings.store_url.startswith("memory:"):
        # Each worker would open a memory store of its own behind the one port: one
        # idempotency key enqueued twice, jobs found or not by whichever worker answers.
        print(
            f"fleet-coordinator: --workers {args.workers} with FLEET_STORE_URL=memory://: "
            "a memory store lives in one process; use --workers 1, or a sqlite:/// or "
            "cosmos:// store the workers share",
            file=sys.stderr,
        )
        return EXIT_SETTINGS
    import structlog

    if settings.ensure_admin_token():
        # Printed once, to stdout only; it is never logged.
        print(f"FLEET_ADMIN_TOKEN={settings.admin_token}", flush=True)
    elif len(settings.admin_token) < WEAK_ADMIN_TOKEN_CHARS:
        # Said, not refused: a short token is the operator's choice (a test rig, a
        # laptop), but anyone who can reach the port may guess it, since the API
        # answers every wrong token the same way at any rate. The length only: the
        # token itself never reaches a log.
        structlog.get_logger().warning(
            "coordinator.admin_token.short",
            length=len(settings.admin_token),
            advice=f"use {WEAK_ADMIN_TOKEN_CHARS} or more random characters, or unset"
            " FLEET_ADMIN_TOKEN to have one generated",
        )
    # Before the workers start, which inherit the limit; after the token, which is the
    # first line a person (or a script) reads.
    open_files = raise_open_files_limit()
    if open_files is not None:
        before, limit = open_files
        raised = {"raised_from": before} if before != limit else {}
        structlog.get_logger().info("coordinator.open_files", limit=limit, **raised)
    if settings.store_url.startswith("sqlite:///") and not settings.store_url.startswith(
        "sqlite:////"
    ):
        Path(settings.store_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    if args.workers > 1:
        # Each worker process reads its settings from the environment: hand them the
        # admin token generated here, so every worker accepts the one printed above.
        os.environ["FLEET_ADMIN_TOKEN"] = settings.admin_token
    # uvloop and httptools when installed (Linux, macOS); uvicorn falls back to asyncio and h11.
    # The limits and timeouts below are described in docs/operations.md ("Slow and greedy
    # clients"); bodies are bounded by the app's guard (api/middleware.py).
    options: dict[str, Any] = dict(
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,  # its records go through the root logger: JSON lines (logs.py)
        access_log=False,
        loop="auto",
        http=http_protocol(settings),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=BACKLOG,
        # No limit_concurrency: uvicorn answers past it with 503, which SPEC.md keeps for
        # an unavailable store; idle long-polls and slow clients cost a socket, not a thread.
    )
    if args.workers == 1:
        uvicorn.run(create_app(settings, tune_gc=True), **options)
        return 0
    config = uvicorn.Config(
        "fleet_coordinator.cli:app_from_env",
        factory=True,
        workers=args.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **options,
    )
    return _serve_workers(config)


WEAK_ADMIN_TOKEN_CHARS = 20
"""An admin token shorter than this is warned about at start (a generated one has 43)."""


WORKER_HEALTHCHECK_SECONDS = 30
"""How long uvicorn's parent waits for a worker to answer its ping before killing it.

uvicorn's default, 5 s, counts from the worker's spawn, before its interpreter has
imported anything: on a loaded machine (or a container throttled to a fraction of a
core) the imports alone took longer, so every worker was killed as hung and
replaced, for ever, and the port never answered. The cost of a longer wait: a
worker that dies while a ping is out (a refused start) is noticed only when the
wait ends, since the parent holds both ends of the ping's pipe; so a refused start
of ``--workers N`` exits up to this long after its ``coordinator.start_refused``.
"""


def _serve_workers(config: uvicorn.Config) -> int:
    """``uvicorn.run``'s ``--workers`` branch, with an exit status saying whether they started.

    When a worker fails to start (a store written with another ``FLEET_JOB_SHARDS``,
    a store it cannot open), uvicorn stops the others and its parent returns as if
    stopped on purpose: exit 0, which a supervisor takes for a clean stop. One
    worker's failed start exits ``STARTUP_FAILURE`` (3); so do several.
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


if __name__ == "__main__":
    sys.exit(main())
