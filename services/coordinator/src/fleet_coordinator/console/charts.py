"""Geometry of the console's pictures, drawn as inline SVG by the templates (no script).

The numbers come from what the coordinator already holds: the queue summaries
(``StatsSnapshot``) and the per-minute counters of ``services/throughput.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..services.throughput import MinuteCounts

__all__ = ["STATUSES", "Bar", "Chart", "Segment", "queue_bars", "throughput_chart"]

STATUSES = ("queued", "leased", "succeeded", "failed", "cancelled")
BAR_WIDTH = 400.0
CHART_WIDTH, CHART_HEIGHT = 600.0, 120.0


@dataclass(frozen=True, slots=True)
class Segment:
    """One status's part of a queue's bar."""

    status: str
    count: int
    x: float
    width: float


@dataclass(frozen=True, slots=True)
class Bar:
    """A queue's jobs by status, as segments scaled against the largest queue."""

    queue: str
    total: int
    segments: tuple[Segment, ...]


def queue_bars(items: Sequence[dict[str, Any]]) -> list[Bar]:
    """One stacked bar per queue summary."""
    totals = [sum(int(item[s]) for s in STATUSES) for item in items]
    scale = BAR_WIDTH / max([*totals, 1])
    bars: list[Bar] = []
    for item, total in zip(items, totals, strict=True):
        x = 0.0
        segments: list[Segment] = []
        for status in STATUSES:
            count = int(item[status])
            if count:
                # At least a sliver, so a status with few jobs beside many still shows.
                width = max(count * scale, 2.0)
                segments.append(Segment(status, count, round(x, 1), round(width, 1)))
                x += width
        bars.append(Bar(str(item["queue"]), total, tuple(segments)))
    return bars


@dataclass(frozen=True, slots=True)
class Chart:
    """Three polylines (enqueued, succeeded, failed per minute) over the last hour."""

    lines: dict[str, str]
    peak: int
    totals: dict[str, int]
    width: float = CHART_WIDTH
    height: float = CHART_HEIGHT


def throughput_chart(minutes: Sequence[MinuteCounts]) -> Chart:
    """Polyline points for each series, scaled so the busiest minute touches the top."""
    series = {
        "enqueued": [m.enqueued for m in minutes],
        "succeeded": [m.succeeded for m in minutes],
        "failed": [m.failed for m in minutes],
    }
    peak = max([v for values in series.values() for v in values] + [1])
    step = CHART_WIDTH / max(len(minutes) - 1, 1)
    lines = {
        name: " ".join(
            f"{i * step:.1f},{CHART_HEIGHT - v / peak * (CHART_HEIGHT - 4) - 2:.1f}"
            for i, v in enumerate(values)
        )
        for name, values in series.items()
    }
    return Chart(lines, peak, {name: sum(values) for name, values in series.items()})
