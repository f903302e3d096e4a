"""``fleet``: the coordinator's admin command line, on ``FleetClient``.

The token comes from ``FLEET_ADMIN_TOKEN`` only (a command line is visible in
``ps``) and is never printed; the URL from ``--url`` or ``FLEET_URL``. Tables go
to stdout, ``--json`` writes JSON there instead, and messages go to stderr. The
exit status tells a script what happened (``exits.EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from types import FrameType
from typing import Any

import stamina
from pydantic import ValidationError
from stamina.instrumentation import RetryDetails, RetryHook

from . import commands
from .calls import auth_headers, checked_url
from .client import DEFAULT_URL, FleetClient
from .errors import FleetError
from .exits import EXIT_CODES, EXIT_REJECTED, EXIT_USAGE, exit_code_of, not_the_coordinators
from .render import Output

__all__ = ["main", "parser"]

Command = Callable[[FleetClient, argparse.Namespace, Output], Awaitable[int]]


def parser() -> argparse.ArgumentParser:
    """The ``fleet`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.environ.get("FLEET_URL") or DEFAULT_URL, help="coordinator URL"
    )
    common.add_argument("--json", action="store_true", help="write JSON instead of tables")
    common.add_argument(
        "--retry-seconds",
        dest="retry_timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long calls that are safe to repeat retry an unavailable coordinator",
    )
    top = argparse.ArgumentParser(
        prog="fleet",
        description="Administer a Fleet Coordinator (token: $FLEET_ADMIN_TOKEN).",
        epilog="exit status:\n"
        + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = top.add_subparsers(dest="group", required=True)
    commands.add_jobs(groups, common)
    commands.add_queues(groups, common)
    commands.add_agents(groups, common)
    commands.add_schedules(groups, common)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fleet`` with ``argv``; the exit status."""
    args = parser().parse_args(argv)
    out = Output(as_json=args.json)
    token = os.environ.get("FLEET_ADMIN_TOKEN")
    if not token:
        out.err.print("fleet: error: FLEET_ADMIN_TOKEN is not set", highlight=False)
        return EXIT_USAGE
    try:
        auth_headers(token)  # a token no header can carry is a mistake in the setup
        checked_url(args.url)  # so is a URL that is not http(s): not a coordinator to retry
    except FleetError as exc:
        out.note(f"fleet: error: {exc.message}")
        return EXIT_USAGE
    command: Command = args.run
    # stamina logs each retry through structlog (to stdout unless configured) or
    # logging: stdout must hold only the result (``-q``'s id, ``--json``'s document).
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([_retry_reporter(out)])
    sigint = _interrupt_at_once()
    try:
        return asyncio.run(_run(command, args, out, token))
    except FleetError as exc:
        hint = "; is the URL the coordinator's?" if not_the_coordinators(exc) else ""
        out.note(f"fleet: error: {exc.message}{hint}")
        return exit_code_of(exc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        out.note(f"fleet: error: {where}: {first['msg']}")
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return 130
    finally:
        stamina.instrumentation.set_on_retry_hooks(hooks)
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _interrupt_at_once() -> Any:
    """Make Ctrl-C raise ``KeyboardInterrupt`` wherever ``fleet`` is; the handler it replaced.

    ``asyncio.run`` replaces Python's own handler with one whose first Ctrl-C only
    cancels the main task, which never runs while the loop's thread is blocked: in
    ``enqueue-file``, opening a FIFO no writer has opened yet, or reading a pipe
    that has nothing to say. A handler that is not Python's own is left in place
    (asyncio does the same), and so is an ignored SIGINT (a background job's).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, _interrupt)


def _retry_reporter(out: Output) -> RetryHook:
    """A stamina hook writing one line per retry to stderr."""

    def report(details: RetryDetails) -> None:
        cause = details.caused_by
        why = cause.message if isinstance(cause, FleetError) else type(cause).__name__
        out.note(f"fleet: {why}; retry {details.retry_num} in {details.wait_for:.1f} s")

    return report


async def _run(command: Command, args: argparse.Namespace, out: Output, token: str) -> int:
    async with FleetClient(args.url, token, retry_timeout=args.retry_timeout) as client:
        return await command(client, args, out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
