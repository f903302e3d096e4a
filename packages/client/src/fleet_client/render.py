"""How ``fleet`` shows answers: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from fleet_wire.terminal import CONTROLS, visible
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .models import Agent, Job, JobDetail, QueueStats, Schedule

__all__ = ["Output"]


def _cell(value: str) -> Text:
    """A table cell showing ``value`` as it is: no rich markup (a kind ``[/bold]`` made
    ``fleet jobs list`` fail), no terminal controls (``fleet_wire.terminal``)."""
    return Text(visible(value))


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


class Output:
    """Where one command writes: a table or a JSON document on stdout, messages on stderr."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.out = Console(soft_wrap=True)
        if not self.out.is_terminal:
            # Piped or redirected: rich would assume 80 columns and cut ids in half.
            self.out = Console(soft_wrap=True, width=200)
        self.err = Console(stderr=True)
        if not self.err.is_terminal:
            # Redirected: a message cut into 80-column lines defeats a grep of the log.
            self.err = Console(stderr=True, soft_wrap=True)

    def json(self, value: Any) -> None:
        """Write ``value`` (models included) as one JSON document.

        JSON escapes C0 controls itself; DEL, C1 controls and bidirectional overrides
        (which occur only inside strings) are escaped here too, as ``\\u`` escapes
        that every JSON reader reads back as the same characters.
        """
        text = json.dumps(_plain(value), ensure_ascii=False)
        self.out.file.write(CONTROLS.sub(_json_escape, text) + "\n")

    def note(self, message: str) -> None:
        """One line to stderr (``fleet: error: …``, a retry, a problem), controls escaped."""
        self.err.print(visible(message), highlight=False, markup=False)

    def jobs(self, jobs: Sequence[Job], *, one: bool = False) -> None:
        """A list of jobs."""
        if self.as_json:
            return self.json(_one_or_all(jobs, one=one))
        table = Table("queue", "kind", "status", "prio", "tries", "lock", "created (UTC)")
        table.add_column("id", no_wrap=True)  # last, whole: people copy it
        for job in jobs:
            status = job.status + (" (cancel requested)" if job.cancel_requested else "")
            table.add_row(
                _cell(job.queue),
                _cell(job.kind),
                status,
                str(job.priority),
                f"{job.attempts}/{job.max_attempts}",
                _cell(job.lock or ""),
                _when(job.created_at),
                _cell(job.id),
            )
        self.out.print(table)
        return None

    def job(self, job: JobDetail) -> None:
        """One job with its runs."""
        if self.as_json:
            return self.json(job)
        table = Table.grid(padding=(0, 2))
        fields = job.model_dump(exclude={"runs", "lease"})
        for name, value in fields.items():
            shown = _when(value) if isinstance(value, datetime) else _short(value, 100)
            table.add_row(f"[bold]{name}[/]", _cell(shown))
        if job.lease is not None:
            held = job.lease
            lease = f"{held.agent_id} epoch {held.epoch} until {_when(held.expires_at)}"
            table.add_row("[bold]lease[/]", _cell(lease))
        self.out.print(table)
        if job.runs:
            runs = Table("epoch", "agent", "claimed (UTC)", "ended (UTC)", "outcome", "error")
            for run in job.runs:
                runs.add_row(
                    str(run.epoch),
                    _cell(run.agent_id),
                    _when(run.claimed_at),
                    _when(run.ended_at),
                    _cell(run.outcome),
                    _cell(_short(run.error or "", 60)),
                )
            self.out.print(runs)
        return None

    def queues(self, queues: Iterable[QueueStats], *, one: bool = False) -> None:
        """Queues and their counts."""
        if self.as_json:
            return self.json(_one_or_all(list(queues), one=one))
        table = Table("queue", "paused", "queued", "leased", "succeeded", "failed", "cancelled")
        table.add_column("oldest queued")
        for q in queues:
            counts = (q.queued, q.leased, q.succeeded, q.failed, q.cancelled)
            age = f"{q.oldest_queued_age_seconds:.0f}s" if q.queued else "-"
            table.add_row(_cell(q.queue), "yes" if q.paused else "", *map(str, counts), age)
        self.out.print(table)
        return None

    def agents(self, agents: Iterable[Agent], *, one: bool = False) -> None:
        """Registered agents."""
        if self.as_json:
            return self.json(_one_or_all(list(agents), one=one))
        table = Table("id", "name", "capacity", "leases", "queues", "labels", "draining")
        table.add_column("last seen (UTC)")
        for a in agents:
            labels = ",".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
            table.add_row(
                _cell(a.id),
                _cell(a.name),
                str(a.capacity),
                str(a.live_leases),
                _cell(",".join(a.queues) or "(all)"),
                _cell(labels),
                "yes" if a.draining else "",
                _when(a.last_seen),
            )
        self.out.print(table)
        return None

    def schedules(self, schedules: Iterable[Schedule], *, one: bool = False) -> None:
        """Schedules and their next run."""
        if self.as_json:
            return self.json(_one_or_all(list(schedules), one=one))
        table = Table("name", "cron", "timezone", "kind", "queue", "paused", "next (UTC)")
        table.add_column("last (UTC)")
        for s in schedules:
            table.add_row(
                _cell(s.name),
                _cell(s.cron),
                _cell(s.timezone),
                _cell(str(s.job.get("kind", ""))),
                _cell(str(s.job.get("queue", "default"))),
                "yes" if s.paused else "",
                _when(s.next_run_at),
                _when(s.last_run_at),
            )
        self.out.print(table)
        return None


def _json_escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


def _one_or_all(items: Iterable[Any], *, one: bool) -> Any:
    # docs/client.md: a list for lists, an object for one thing (``one``: the command
    # acts on a single thing, whose table has one row).
    listed = list(items)
    return listed[0] if one and len(listed) == 1 else listed


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
