"""RQ on Redis, ``SimpleWorker`` (runs jobs in the worker process, no fork per job)."""

from __future__ import annotations

from .context import Bench
from .system import Command, Driver

__all__ = ["REQUIREMENTS", "Rq"]

REQUIREMENTS = ["rq==3.0.0", "redis==8.2.0"]


class Rq:
    """W ``rq worker -w rq.worker.SimpleWorker`` processes."""

    peer = True
    has_batch = True
    label = "RQ SimpleWorker, Redis"

    def prepare(self, bench: Bench) -> None:
        """The venv and Redis."""
        self._python = bench.venv("rq", REQUIREMENTS)
        self._redis = bench.redis()

    def fresh(self) -> None:
        """FLUSHALL."""
        self.driver().call("reset")

    def driver(self) -> Driver:
        """``rq_app`` in the venv."""
        return Driver(self._python, "rq_app", {"PEERS_REDIS_URL": self._redis.url()})

    def workers(self, count: int) -> list[Command]:
        """``rq worker`` x count on the default queue."""
        rq = str(self._python.parent / "rq")
        argv = [rq, "worker", "-u", self._redis.url(), "-w", "rq.worker.SimpleWorker", "default"]
        return [Command(argv, {"PEERS_REDIS_URL": self._redis.url()}) for _ in range(count)]

    def server_pids(self) -> list[int]:
        """redis-server."""
        return [self._redis.pid]

    def versions(self) -> dict[str, str]:
        """Package versions in the venv, and Redis'."""
        found: dict[str, str] = self.driver().call("versions")
        return {**found, "redis-server": self._redis.version}
