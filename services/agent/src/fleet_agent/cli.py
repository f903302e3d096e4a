"""``fleet-agent run``: join a fleet with one command.

Errors a user can fix (a wrong token, an unreachable URL, a handler that does not
load) print one line on stderr and exit non-zero; logs are structlog events on
stderr (JSON unless a terminal) and never carry the token or a payload.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import orjson
import structlog
from fleet_wire import escape_controls

from .client import AgentClient
from .errors import AgentError, CoordinatorUnavailable, Unauthorized, redact_url
from .handlers import HandlerLoadError, load_handlers
from .job import Handler
from .worker import MAX_WAIT_SECONDS, Worker

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleet-agent", description="a Fleet Coordinator agent")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="claim and run jobs until SIGTERM / SIGINT")
    run.add_argument("--url", default=os.environ.get("FLEET_URL"), help="coordinator URL")
    run.add_argument(
        "--token",
        default=os.environ.get("FLEET_AGENT_TOKEN"),
        help="agent token (better: the FLEET_AGENT_TOKEN environment variable)",
    )
    run.add_argument(
        "--queue", dest="queues", action="append", default=[], help="queue to claim from"
    )
    run.add_argument("--concurrency", type=int, default=1, help="jobs run at once")
    run.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a mapping of kinds to handlers, or kind=module:attr for one handler",
    )
    run.add_argument("--no-entry-points", action="store_true", help="ignore installed handlers")
    run.add_argument("--wait-seconds", type=float, default=5.0, help="claim long-poll")
    run.add_argument("--grace-seconds", type=float, default=10.0, help="shutdown grace period")
    run.add_argument("--startup-timeout", type=float, default=5.0, help="first contact budget")
    run.add_argument(
        "--report-window",
        type=float,
        default=0.005,
        help="seconds reports wait for others to share their request",
    )
    run.add_argument(
        "--no-batch-reports",
        action="store_true",
        help="send each heartbeat and report on its own endpoint",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the agent; the exit status says how it ended."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or FLEET_URL) is required")
    if not args.token:
        parser.error("--token (or FLEET_AGENT_TOKEN) is required")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if not 0 <= args.wait_seconds <= MAX_WAIT_SECONDS:  # also refuses NaN
        parser.error(f"--wait-seconds must be between 0 and {MAX_WAIT_SECONDS:g}")
    # float() reads "nan" and "inf" too: a NaN window turned batching off unnoticed, an
    # infinite one held every report back for ever, an infinite startup timeout never
    # gave up on a wrong URL, and a NaN one gave the retries a budget stamina cannot read.
    for option, seconds in (
        ("--grace-seconds", args.grace_seconds),
        ("--startup-timeout", args.startup_timeout),
        ("--report-window", args.report_window),
    ):
        if not 0 <= seconds < math.inf:
            parser.error(f"{option} must be a finite number of seconds and must not be negative")
    try:
        url = urlsplit(args.url)  # as connections.ConnectionPool reads it
        usable = url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0
    except ValueError:
        usable = False
    if not usable:
        parser.error(f"--url {redact_url(args.url)!r} is not an http(s) URL")
    if not _header_safe(args.token):
        # Checked here, not left to the HTTP layer's ValueError (a traceback); and the
        # message never quotes the token, which would put it in a log.
        return _fail(
            "the agent token (--token or FLEET_AGENT_TOKEN) holds a character an HTTP"
            " header cannot carry (a line break, a space or a non-ASCII one)",
            EXIT_USAGE,
        )
    _configure_logging(getattr(logging, args.log_level.upper()))
    try:
        handlers = load_handlers(args.handlers, use_entry_points=not args.no_entry_points)
    except HandlerLoadError as exc:
        return _fail(exc.message, EXIT_USAGE)
    try:
        asyncio.run(_run(args, handlers))
    except Unauthorized as exc:
        shown = redact_url(args.url)
        return _fail(f"the coordinator at {shown} refused the agent token ({exc.message})")
    except CoordinatorUnavailable as exc:
        return _fail(exc.message)
    except AgentError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130
    return 0


async def _run(args: argparse.Namespace, handlers: dict[str, Handler]) -> None:
    async with AgentClient(args.url, args.token) as client:
        worker = Worker(
            client,
            handlers,
            queues=args.queues,
            concurrency=args.concurrency,
            wait_seconds=args.wait_seconds,
            grace_seconds=args.grace_seconds,
            startup_timeout=args.startup_timeout,
            batch_reports=not args.no_batch_reports,
            report_window=args.report_window,
        )
        # The worker answers SIGTERM and SIGINT while it runs and puts back what was
        # there before when it ends: here, "ignore", so that a second signal sent as
        # the agent finishes (a supervisor's, a second Ctrl-C) does not kill it in its
        # last milliseconds with a signal's exit status instead of 0. Nothing awaits
        # between these lines, so no signal can arrive while both are ignored.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        await worker.run(handle_signals=True)


def _header_safe(token: str) -> bool:
    """Whether ``token`` is visible ASCII only, as a bearer token is (RFC 6750)."""
    return all("!" <= c <= "~" for c in token)


def _fail(message: str, status: int = EXIT_ERROR) -> int:
    print(f"fleet-agent: error: {message}", file=sys.stderr, flush=True)
    return status


def _dumps(event: object, **_: object) -> str:
    # orjson: two events per job (claimed, succeeded); json.dumps was ~8 % of an
    # agent's CPU in the drain (docs/benchmarks.md).
    return orjson.dumps(event, default=str).decode()


def _configure_logging(level: int) -> None:
    """structlog events on stderr: JSON lines, or readable lines on a terminal."""
    # On a terminal, job kinds (the producers' text) are shown with their control
    # characters escaped (fleet_wire.terminal); JSON lines escape them already.
    render: list[structlog.typing.Processor] = (
        [escape_controls, structlog.dev.ConsoleRenderer()]
        if sys.stderr.isatty()
        else [structlog.processors.JSONRenderer(serializer=_dumps)]
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Configured once per process: without the cache every event built its
        # logger anew (a bind and a factory call, two events per job).
        cache_logger_on_first_use=True,
    )


if __name__ == "__main__":
    sys.exit(main())
