"""``python -m bench.drain_server --port N``: the coordinator as ``serve`` runs it.

``BENCH_HOT_PATH=0`` serves every request through FastAPI's routes alone, for
the hot path's A/B in ``bench/drain.py``; ``BENCH_SQLITE_INLINE=0`` runs every
SQLite statement on the provider's worker threads and ``BENCH_SQLITE_PAGE_SIZE``
sets the page size of the new file, for the SQLite A/Bs;
``BENCH_CLAIM_CANDIDATES`` sets ``claim_candidates`` (``FLEET_*`` is not passed
through). Everything else is ``serve``'s setup.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fleet_coordinator import Settings, create_app
from fleet_coordinator.cli import http_protocol
from fleet_coordinator.logs import configure_logging


def main() -> None:
    """Serve on 127.0.0.1."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_logging()
    from fleet_datastore.providers import sqlite

    sqlite.INLINE = os.environ.get("BENCH_SQLITE_INLINE", "1") != "0"
    sqlite.PAGE_SIZE = int(os.environ.get("BENCH_SQLITE_PAGE_SIZE", sqlite.PAGE_SIZE))
    hot = os.environ.get("BENCH_HOT_PATH", "1") != "0"
    settings = Settings()
    if os.environ.get("BENCH_CLAIM_CANDIDATES"):
        candidates = int(os.environ["BENCH_CLAIM_CANDIDATES"])
        settings = settings.model_copy(update={"claim_candidates": candidates})
    app = create_app(settings, hot_path=hot, tune_gc=True)
    serve = {"log_level": "warning", "access_log": False, "http": http_protocol(settings)}
    profile = os.environ.get("BENCH_PROFILE")
    if not profile:
        uvicorn.run(app, host=args.host, port=args.port, **serve)
        return
    import cProfile  # where the server's time goes, written on SIGUSR1
    import signal

    prof = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.dump_stats(profile))
    prof.enable()
    uvicorn.run(app, host=args.host, port=args.port, **serve)


if __name__ == "__main__":
    main()
