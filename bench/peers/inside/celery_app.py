"""Celery with Redis as broker (db 0) and result backend (db 1); acks_late, prefetch 1.

Workers: ``celery -A celery_app worker -c C``. Completion is read from the result
backend: every finished task leaves one ``celery-task-meta-<id>`` key in db 1, so its
DBSIZE counts them.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, group
from common import record_done

URL = os.environ["PEERS_REDIS_URL"].rsplit("/", 1)[0]  # the server; the dbs are ours
app = Celery("peers", broker=f"{URL}/0", backend=f"{URL}/1")
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)


@app.task(bind=True, name="noop")
def noop(self: Any) -> None:
    """Record the task's id; nothing else."""
    record_done(self.request.id)


class CeleryBackend:
    """``apply_async`` one call per job; ``group(...).apply_async()`` for a batch."""

    packages = ("celery", "kombu", "redis")

    def __init__(self) -> None:
        self.results = redis.Redis.from_url(f"{URL}/1")

    def setup(self) -> None:
        """Nothing to create."""

    def reset(self) -> None:
        """FLUSHALL."""
        self.results.flushall()

    def enqueue_one(self) -> str:
        """``noop.apply_async()``."""
        return str(noop.apply_async().id)

    def enqueue_batch(self, count: int) -> list[str]:
        """``group(noop.s() x count).apply_async()``: Celery's API for many tasks at once."""
        result = group(noop.s() for _ in range(count)).apply_async()
        return [str(r.id) for r in result.results]

    def finished(self) -> tuple[int, int]:
        """Result keys in the backend's db (successes and failures alike)."""
        return int(self.results.dbsize()), 0


def backend() -> CeleryBackend:
    """The driver's producer and poll."""
    return CeleryBackend()
