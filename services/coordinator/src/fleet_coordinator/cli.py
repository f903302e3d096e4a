"""``fleet-coordinator serve``: run the HTTP API and the reaper with uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .logs import configure_logging
from .settings import Settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="fleet-coordinator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API and the reaper")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    args = parser.parse_args(argv)

    import uvicorn

    from .app import create_app

    configure_logging()
    settings = Settings()
    if settings.ensure_admin_token():
        # Printed once, to stdout only; it is never logged.
        print(f"FLEET_ADMIN_TOKEN={settings.admin_token}", flush=True)
    if settings.store_url.startswith("sqlite:///") and not settings.store_url.startswith(
        "sqlite:////"
    ):
        Path(settings.store_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    # uvloop and httptools when installed (Linux, macOS); uvicorn falls back to asyncio and h11.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
