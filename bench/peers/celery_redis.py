"""Celery 5 on Redis (broker and result backend), acks_late, prefetch 1, in two layouts."""

from __future__ import annotations

from .context import Bench
from .system import Command, Driver

__all__ = ["REQUIREMENTS", "Celery"]

REQUIREMENTS = ["celery[redis]==5.7.0", "redis==8.2.0"]


class Celery:
    """``instances``: W workers x ``-c 1``; ``one``: one worker ``-c W`` (prefork pool)."""

    peer = True
    has_batch = True

    def __init__(self, layout: str) -> None:
        assert layout in ("instances", "one")
        self.layout = layout
        shape = "W instances x `-c 1`" if layout == "instances" else "one instance `-c W`"
        self.label = f"Celery, acks_late, prefetch 1, {shape}, Redis"
        self._bench: Bench | None = None

    def prepare(self, bench: Bench) -> None:
        """The venv and Redis."""
        self._bench = bench
        self._python = bench.venv("celery", REQUIREMENTS)
        self._redis = bench.redis()

    def fresh(self) -> None:
        """FLUSHALL."""
        self.driver().call("reset")

    def driver(self) -> Driver:
        """``celery_app`` in the venv."""
        return Driver(self._python, "celery_app", {"PEERS_REDIS_URL": self._redis.url()})

    def workers(self, count: int) -> list[Command]:
        """``celery -A celery_app worker`` per the layout."""
        celery = str(self._python.parent / "celery")
        env = {"PEERS_REDIS_URL": self._redis.url()}
        if self.layout == "one":
            return [Command([celery, "-A", "celery_app", "worker", "-c", str(count)], env)]
        return [
            Command([celery, "-A", "celery_app", "worker", "-c", "1", "-n", f"w{i}@%h"], env)
            for i in range(count)
        ]

    def server_pids(self) -> list[int]:
        """redis-server."""
        return [self._redis.pid]

    def versions(self) -> dict[str, str]:
        """Package versions in the venv, and Redis'."""
        found: dict[str, str] = self.driver().call("versions")
        return {**found, "redis-server": self._redis.version}
