"""procrastinate on PostgreSQL; W ``procrastinate worker`` processes at default concurrency."""

from __future__ import annotations

from .context import Bench
from .system import Command, Driver

__all__ = ["REQUIREMENTS", "Procrastinate"]

REQUIREMENTS = ["procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9"]


class Procrastinate:
    """W ``procrastinate --app procrastinate_app.app worker`` processes."""

    peer = True
    has_batch = True
    label = "procrastinate, PostgreSQL"

    def prepare(self, bench: Bench) -> None:
        """The venv, PostgreSQL and procrastinate's schema."""
        self._python = bench.venv("procrastinate", REQUIREMENTS)
        self._postgres = bench.postgres()
        self.driver().call("setup")

    def fresh(self) -> None:
        """TRUNCATE the procrastinate tables."""
        self.driver().call("reset")

    def driver(self) -> Driver:
        """``procrastinate_app`` in the venv."""
        return Driver(self._python, "procrastinate_app", {"PEERS_PG_DSN": self._postgres.dsn})

    def workers(self, count: int) -> list[Command]:
        """``procrastinate worker`` x count."""
        binary = str(self._python.parent / "procrastinate")
        argv = [binary, "--app", "procrastinate_app.app", "worker"]
        return [Command(argv, {"PEERS_PG_DSN": self._postgres.dsn}) for _ in range(count)]

    def server_pids(self) -> list[int]:
        """The postmaster (its backends are its children)."""
        return [self._postgres.pid]

    def versions(self) -> dict[str, str]:
        """Package versions in the venv, and PostgreSQL's."""
        found: dict[str, str] = self.driver().call("versions")
        return {**found, "postgresql": self._postgres.version}
