"""procrastinate on PostgreSQL; workers are ``procrastinate --app procrastinate_app.app worker``.

The producer is a plain sync program: it opens the same app with ``app.open()``,
which gives the async psycopg connector's sync twin. Completion is read from the
``procrastinate_jobs`` table.
"""

from __future__ import annotations

import os

import psycopg
from common import record_done
from procrastinate import App, JobContext, PsycopgConnector

DSN = os.environ["PEERS_PG_DSN"]
app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop", pass_context=True)
def noop(context: JobContext) -> None:
    """Record the job's id; nothing else."""
    assert context.job is not None
    record_done(str(context.job.id))


class ProcrastinateBackend:
    """``noop.defer()`` one call per job; ``noop.batch_defer(…)`` for a batch."""

    packages = ("procrastinate", "psycopg", "psycopg-binary")

    def __init__(self) -> None:
        self.app = app.open()
        self._poll: psycopg.Connection[tuple[int, ...]] | None = None

    def setup(self) -> None:
        """Apply procrastinate's schema."""
        self.app.schema_manager.apply_schema()

    def reset(self) -> None:
        """TRUNCATE every procrastinate table."""
        with psycopg.connect(DSN, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename LIKE 'procrastinate_%'"
            ).fetchall()
            names = ", ".join(t[0] for t in tables)
            conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")

    def enqueue_one(self) -> str:
        """``noop.defer()``."""
        return str(noop.defer())

    def enqueue_batch(self, count: int) -> list[str]:
        """``noop.batch_defer({} x count)``."""
        return [str(i) for i in noop.batch_defer(*({} for _ in range(count)))]

    def finished(self) -> tuple[int, int]:
        """Jobs by final status in ``procrastinate_jobs``."""
        # One connection for every poll: a new one would fork a backend each time.
        if self._poll is None:
            self._poll = psycopg.connect(DSN, autocommit=True)
        row = self._poll.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status = 'failed') FROM procrastinate_jobs"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def backend() -> ProcrastinateBackend:
    """The driver's producer and poll."""
    return ProcrastinateBackend()
