"""The job body every system runs, and the ``Backend`` each system's module gives the driver.

``python -m drive <system>_app <command>`` (``drive.py``):

* ``setup`` — create what the system needs before its first job (a schema);
* ``reset`` — forget every job (a fresh state before a trial);
* ``enqueue single|batch N IDS_FILE`` — enqueue N no-op jobs one call per job, or
  with the batch API in batches of 1,000; write their ids to IDS_FILE; print
  ``{"seconds": …}``, the time from the first call to the last answer;
* ``wait N TIMEOUT`` — print ``ready``, then poll the system's own state every
  0.1 s until it reports N jobs finished; print ``{"done_at": <CLOCK_MONOTONIC>, …}``;
* ``versions`` — print the versions of the system's packages as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

__all__ = ["BATCH", "POLL_SECONDS", "Backend", "record_done"]

BATCH = 1000
POLL_SECONDS = 0.1
_fd: int | None = None


def record_done(job_id: str) -> None:
    """Append ``job_id`` to the run's done file (one O_APPEND write: atomic across processes)."""
    global _fd
    if _fd is None:
        _fd = os.open(os.environ["PEERS_DONE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, f"{job_id}\n".encode())


class Backend(Protocol):
    """One system's producer and progress poll, as its users would write them."""

    packages: Sequence[str]

    def setup(self) -> None:
        """Create what the system needs before its first job."""

    def reset(self) -> None:
        """Forget every job."""

    def enqueue_one(self) -> str:
        """Enqueue one no-op job; its id."""

    def enqueue_batch(self, count: int) -> list[str]:
        """Enqueue ``count`` no-op jobs with the batch API; their ids."""

    def finished(self) -> tuple[int, int]:
        """(succeeded, failed) as the system itself reports them."""
