"""Trials gathered per system, their medians, and the table with our ratios to the best peer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .runner import DrainTrial, median

__all__ = ["Row", "table", "trials"]


@dataclass
class Row:
    """Every trial of one system (one table row)."""

    label: str
    peer: bool
    singles: list[float] = field(default_factory=list)
    batches: list[float] = field(default_factory=list)
    drains: dict[int, list[DrainTrial]] = field(default_factory=dict)

    def add(self, workers: int, trial: DrainTrial) -> None:
        """Record a drain trial (and the one-call-per-job enqueue that preceded it)."""
        self.singles.append(trial.enqueue_jps)
        self.drains.setdefault(workers, []).append(trial)

    def drain(self, workers: int) -> float | None:
        """Median drain jobs/s at ``workers`` (a timed-out trial counts as 0)."""
        return median([t.drain_jps or 0.0 for t in self.drains.get(workers, [])])

    def of(self, workers: int, attr: str) -> float | None:
        """Median of one trial attribute at ``workers``."""
        return median([float(getattr(t, attr)) for t in self.drains.get(workers, [])])

    def id_totals(self) -> tuple[int, int, int, int]:
        """Duplicates, missing, stray ids and failed jobs summed over every trial."""
        trials = [t for ts in self.drains.values() for t in ts]
        return (
            sum(t.ids.duplicates for t in trials),
            sum(t.ids.missing for t in trials),
            sum(t.ids.stray for t in trials),
            sum(t.failed for t in trials),
        )


def _n(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _ratio(ours: float | None, best: float | None) -> str:
    return "—" if not ours or not best else f"**{ours / best:.2f}x**"


def table(rows: Sequence[Row], workers: Sequence[int]) -> str:
    """The results as markdown: one row per system, then our ratios to the best peer."""
    w = "/".join(f"W={n}" for n in workers)
    head = [
        "system",
        "enqueue jobs/s, one call per job",
        "enqueue jobs/s, batch API",
        *(f"drain jobs/s, W={n}" for n in workers),
        "duplicates / missing",
        f"machine CPU busy, {w}",
        f"server CPU per job, {w}",
        f"worker CPU per job, {w}",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        dup, missing, stray, failed = row.id_totals()
        ids = f"{dup} / {missing}" + (f", {stray} stray" if stray else "")
        ids += f", {failed} failed" if failed else ""
        cells = [
            row.label,
            _n(median(row.singles)),
            _n(median(row.batches)),
            *(_n(row.drain(n)) for n in workers),
            ids,
            " / ".join(_pct(row.of(n, "busy")) for n in workers),
            " / ".join(_ms(row.of(n, "server_ms_per_job")) for n in workers),
            " / ".join(_ms(row.of(n, "worker_ms_per_job")) for n in workers),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    peers = [r for r in rows if r.peer]
    ours = [r for r in rows if not r.peer]
    if peers and ours:
        lines += ["", _ratios(ours, peers, workers)]
    return "\n".join(lines) + "\n"


def _best(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v]
    return max(present) if present else None


def _ratios(ours: Sequence[Row], peers: Sequence[Row], workers: Sequence[int]) -> str:
    best_single = _best([median(p.singles) for p in peers])
    best_batch = _best([median(p.batches) for p in peers])
    best_drain = {n: _best([p.drain(n) for p in peers]) for n in workers}
    head = [
        "ours ÷ best peer, same run",
        "enqueue, one call per job",
        "batch enqueue ÷ best peer's batch",
        "batch enqueue ÷ best peer's one call per job",
        *(f"drain W={n}" for n in workers),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ours:
        cells = [
            row.label,
            _ratio(median(row.singles), best_single),
            _ratio(median(row.batches), best_batch),
            _ratio(median(row.batches), best_single),
            *(_ratio(row.drain(n), best_drain[n]) for n in workers),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trials(rows: Sequence[Row]) -> str:
    """Every drain trial, in the order of its rows and worker counts (medians hide spread)."""
    head = [
        "system",
        "W",
        "enqueue jobs/s",
        "drain jobs/s",
        "machine busy",
        "server CPU per job",
        "worker CPU per job",
        "duplicates / missing / failed",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for count, runs in row.drains.items():
            for t in runs:
                cells = [
                    row.label,
                    str(count),
                    _n(t.enqueue_jps),
                    _n(t.drain_jps),
                    _pct(t.busy),
                    _ms(t.server_ms_per_job),
                    _ms(t.worker_ms_per_job),
                    f"{t.ids.duplicates} / {t.ids.missing} / {t.failed}",
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
