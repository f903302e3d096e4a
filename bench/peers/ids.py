"""Counting what the job bodies recorded: duplicates, missing and stray ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IdCount", "count_ids"]


@dataclass(frozen=True)
class IdCount:
    """Runs beyond the first of a job, enqueued jobs never run, ids nobody enqueued."""

    duplicates: int
    missing: int
    stray: int


def count_ids(enqueued: Path, done: Path) -> IdCount:
    """Compare the producer's ids with the ids the job bodies appended."""
    wanted = set(enqueued.read_text().split())
    runs = Counter(done.read_text().split()) if done.exists() else Counter[str]()
    return IdCount(
        duplicates=sum(n - 1 for n in runs.values()),
        missing=len(wanted - runs.keys()),
        stray=len(runs.keys() - wanted),
    )
