"""RQ on Redis; workers are ``rq worker -w rq.worker.SimpleWorker`` (no fork per job).

Completion is read from the queue's finished and failed job registries.
"""

from __future__ import annotations

import os

from common import record_done
from redis import Redis
from rq import Queue, get_current_job

URL = os.environ["PEERS_REDIS_URL"]


def noop() -> None:
    """Record the job's id; nothing else."""
    job = get_current_job()
    assert job is not None
    record_done(job.id)


class RqBackend:
    """``Queue.enqueue`` one call per job; ``Queue.enqueue_many`` (one pipeline) for a batch."""

    packages = ("rq", "redis")

    def __init__(self) -> None:
        self.redis = Redis.from_url(URL)
        self.queue = Queue("default", connection=self.redis)

    def setup(self) -> None:
        """Nothing to create."""

    def reset(self) -> None:
        """FLUSHALL."""
        self.redis.flushall()

    def enqueue_one(self) -> str:
        """``queue.enqueue(noop)``."""
        return str(self.queue.enqueue(noop).id)

    def enqueue_batch(self, count: int) -> list[str]:
        """``queue.enqueue_many([Queue.prepare_data(noop), …])``."""
        jobs = self.queue.enqueue_many([Queue.prepare_data(noop) for _ in range(count)])
        return [str(job.id) for job in jobs]

    def finished(self) -> tuple[int, int]:
        """The finished and failed registries' sizes."""
        return self.queue.finished_job_registry.count, self.queue.failed_job_registry.count


def backend() -> RqBackend:
    """The driver's producer and poll."""
    return RqBackend()
