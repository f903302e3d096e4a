"""``fleet jobs enqueue-file``: stream a JSON Lines file of jobs in batches.

Each non-blank line is one job's fields (as ``POST /v1/jobs`` takes them). Lines
are checked as they are read and go out 1,000 per ``POST /v1/jobs/batch``, so a
file of any size takes constant memory. An invalid line is reported and not sent;
a batch the coordinator refuses (422, 413) is reported with its line range and
the line of the job the refusal names, and the rest of the file still goes. With
``key_prefix`` a line without an ``idempotency_key`` gets ``<prefix><line number>``:
every batch can then be retried safely, and running the same file again enqueues
nothing twice.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from .client import BATCH_LIMIT, FleetClient
from .errors import FleetError, RequestRejected
from .models import JobSpec

__all__ = ["FileSummary", "count_lines", "enqueue_file"]

_REPORTED = 20

_BATCH_PLACE = re.compile(r"body\.jobs\.(\d+)\.?|jobs\[(\d+)\]")
"""Where a refusal names a job by its place in the batch: pydantic's ``loc``, our ``jobs[i]``."""


@dataclass
class FileSummary:
    """What one run of ``enqueue-file`` did."""

    lines: int = 0
    enqueued: int = 0
    invalid: int = 0
    rejected: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    """The first few invalid lines and refused batches, as ``line N: why``."""
    stopped: str | None = None
    """Why the run stopped before the end of the file (the coordinator went away …)."""
    error: FleetError | None = None
    """The error that stopped it."""

    @property
    def ok(self) -> bool:
        """Whether every line was enqueued."""
        return self.invalid == 0 and self.rejected == 0 and self.stopped is None

    def note(self, problem: str) -> None:
        """Keep ``problem`` if it is among the first few."""
        if len(self.problems) < _REPORTED:
            self.problems.append(problem)

    def as_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return {
            "lines": self.lines,
            "enqueued": self.enqueued,
            "invalid": self.invalid,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "jobs_per_second": round(self.enqueued / self.seconds) if self.seconds else None,
            "problems": self.problems,
            "stopped": self.stopped,
        }


def _specs(
    lines: Iterator[bytes | str], summary: FileSummary, key_prefix: str | None
) -> Iterator[tuple[int, JobSpec]]:
    """``(line number, job)`` for each valid line; invalid ones are counted and noted."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        summary.lines += 1
        try:
            # Decoded line by line: a line that is not UTF-8 is that line's problem,
            # not the end of the file (and of its summary).
            text = line.decode() if isinstance(line, bytes) else line
        except UnicodeDecodeError as exc:
            summary.invalid += 1
            summary.note(f"line {number}: not UTF-8 (byte {exc.start + 1})")
            continue
        try:
            fields = json.loads(text)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
            if key_prefix is not None:
                fields.setdefault("idempotency_key", f"{key_prefix}{number}")
            spec = JobSpec.model_validate(fields)
        except ValidationError as exc:
            summary.invalid += 1
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "job"
            summary.note(f"line {number}: {where}: {first['msg']}")
            continue
        except ValueError as exc:  # json.JSONDecodeError is one
            summary.invalid += 1
            summary.note(f"line {number}: not a JSON object ({str(exc).split(':')[0]})")
            continue
        yield number, spec


async def enqueue_file(
    client: FleetClient,
    source: IO[bytes] | IO[str],
    *,
    key_prefix: str | None = None,
    batch_size: int = BATCH_LIMIT,
    progress: Callable[[int, int], None] = lambda jobs, lines: None,
) -> FileSummary:
    """Enqueue every valid line of ``source``; ``progress(enqueued, lines)`` after each batch."""
    summary = FileSummary()
    started = time.perf_counter()
    batch: list[tuple[int, JobSpec]] = []

    async def send() -> None:
        first, last = batch[0][0], batch[-1][0]
        try:
            done = await client.enqueue_batch([spec for _, spec in batch])
        except RequestRejected as exc:  # the whole batch, all or nothing
            summary.rejected += len(batch)
            summary.note(f"lines {first}-{last}: refused: {_in_lines(exc, batch)}")
        else:
            summary.enqueued += len(done)
        batch.clear()
        progress(summary.enqueued, summary.lines)

    try:
        for item in _specs(_without_bom(source), summary, key_prefix):
            batch.append(item)
            if len(batch) >= batch_size:
                await send()
        if batch:
            await send()
    except FleetError as exc:  # unavailable past the retries, or the token refused: stop
        summary.stopped = f"at line {batch[0][0] if batch else summary.lines}: {exc.message}"
        summary.error = exc
    summary.seconds = time.perf_counter() - started
    return summary


def _in_lines(exc: RequestRejected, batch: list[tuple[int, JobSpec]]) -> str:
    """The refusal's message with the jobs it names by batch place named by file line.

    The coordinator names a job by its place in the request (``jobs[3]``,
    ``body.jobs.3.priority``), or a clashing key by the key alone; a person
    fixing the file needs the line.
    """

    def line(found: re.Match[str]) -> str:
        index = int(found.group(1) or found.group(2))
        if index >= len(batch):
            return found.group(0)
        return f"line {batch[index][0]}" + (": " if found.group(0).endswith(".") else "")

    text = _BATCH_PLACE.sub(line, exc.message)
    key = exc.details.get("idempotency_key")
    if isinstance(key, str) and "line " not in text:
        numbers = [number for number, spec in batch if spec.idempotency_key == key]
        if numbers:
            text += f" (line {numbers[0]})"
    return text


def _without_bom(source: IO[bytes] | IO[str]) -> Iterator[bytes | str]:
    """The lines of ``source``, the first without a UTF-8 byte order mark (Windows editors')."""
    lines: Iterator[bytes | str] = iter(source)
    first = next(lines, None)
    if first is None:
        return
    if isinstance(first, bytes):
        yield first.removeprefix(b"\xef\xbb\xbf")
    else:
        yield first.removeprefix("\ufeff")
    yield from lines


def count_lines(path: Path) -> int:
    """How many lines the file has (a fast binary pass, for the progress bar's total)."""
    count = 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            count += chunk.count(b"\n")
    return count
