"""``python -m drive <module> <command> …``: one driver command for the system in <module>.

The module (``celery_app``, ``rq_app``, ``procrastinate_app``, ``fleet_app``) is
imported, never run as ``__main__``, so its tasks have the names its workers see;
its ``backend()`` gives the producer and poll. Commands: see ``common.py``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from common import BATCH, POLL_SECONDS, Backend


def _enqueue(backend: Backend, mode: str, count: int, ids_file: Path) -> None:
    ids: list[str] = []
    began = time.perf_counter()
    if mode == "single":
        for _ in range(count):
            ids.append(backend.enqueue_one())
    else:
        for start in range(0, count, BATCH):
            ids.extend(backend.enqueue_batch(min(BATCH, count - start)))
    seconds = time.perf_counter() - began
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    print(json.dumps({"seconds": seconds, "count": len(ids)}), flush=True)


def _wait(backend: Backend, count: int, timeout: float) -> None:
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    succeeded = failed = 0
    while time.monotonic() < deadline:
        succeeded, failed = backend.finished()
        if succeeded + failed >= count:
            break
        time.sleep(POLL_SECONDS)
    done_at = time.monotonic()
    timed_out = succeeded + failed < count
    result = {"done_at": done_at, "succeeded": succeeded, "failed": failed, "timed_out": timed_out}
    print(json.dumps(result), flush=True)


def _versions(backend: Backend) -> None:
    found = {}
    for name in backend.packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    print(json.dumps(found), flush=True)


def main(argv: Sequence[str]) -> None:
    """Run one driver command for the system module named first."""
    module, command, *args = argv
    backend: Backend = importlib.import_module(module).backend()
    if command == "setup":
        backend.setup()
    elif command == "reset":
        backend.reset()
    elif command == "enqueue":
        _enqueue(backend, args[0], int(args[1]), Path(args[2]))
    elif command == "wait":
        _wait(backend, int(args[0]), float(args[1]))
    elif command == "versions":
        _versions(backend)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
