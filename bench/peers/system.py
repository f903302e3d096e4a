"""What the runner needs from each system: a driver, worker commands and server pids.

One module per system implements ``System`` (``fleet.py``, ``celery_redis.py``,
``rq_redis.py``, ``procrastinate_pg.py``); the protocol itself is in ``runner.py``
and is the same for every one.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .context import INSIDE, Bench

__all__ = ["Command", "Driver", "System"]


@dataclass(frozen=True)
class Command:
    """One process to start: argv and the environment variables it adds."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Driver:
    """``python -m drive <module> …`` in the system's environment (see ``inside/drive.py``)."""

    python: Path
    module: str
    env: Mapping[str, str]

    def environ(self) -> dict[str, str]:
        """The process environment: ours, the system's variables, ``inside/`` on the path."""
        return {**os.environ, **self.env, "PYTHONPATH": str(INSIDE)}

    def argv(self, *args: str) -> list[str]:
        """The command line for one driver command."""
        return [str(self.python), "-m", "drive", self.module, *args]

    def call(self, *args: str, timeout: float = 600.0) -> Any:
        """Run one driver command to its end; its last stdout line as JSON (or None)."""
        done = subprocess.run(
            self.argv(*args),
            env=self.environ(),
            cwd=INSIDE,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None


class System(Protocol):
    """One row of the table: a system in one worker layout."""

    label: str
    """The row's name in the table."""
    peer: bool
    """False for this coordinator's rows; ratios are ours to the best peer."""
    has_batch: bool
    """Whether the system has a batch enqueue API."""

    def prepare(self, bench: Bench) -> None:
        """Install and start what the system needs (once per run)."""

    def fresh(self) -> None:
        """An empty system before a trial."""

    def driver(self) -> Driver:
        """The producer and progress poll."""

    def workers(self, count: int) -> list[Command]:
        """Commands for ``count`` workers (or one instance of that size, per layout)."""

    def server_pids(self) -> list[int]:
        """The server processes whose CPU per job is reported."""

    def versions(self) -> dict[str, str]:
        """Package and server versions, for the table's header."""
