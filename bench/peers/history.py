"""``python -m bench.peers.history``: every recorded peer run as one picture of the targets.

Reads the tables ``make bench-peers`` wrote (``bench/peers/results-*.md``, full runs of
10,000 jobs only) and draws, per run, each of issue 11's targets as the fraction of
it that run reached: our ratio to the best peer divided by the ratio asked for, and
for the coordinator's CPU per job the target divided by the figure. 1.0 is the
target; above it, met. Writes ``docs/peers-history.svg`` (``--out`` to change).
Standard library only: the picture is a few lines of SVG.
"""

from __future__ import annotations

import argparse
import html
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Run", "TARGETS", "main", "parse", "svg"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class Target:
    """One line of the picture: how to read its figure from a run, and what is asked."""

    key: str
    label: str
    colour: str
    asked: float
    lower_is_better: bool = False

    def reached(self, value: float) -> float:
        """The fraction of the target ``value`` reaches (1.0: exactly met)."""
        return self.asked / value if self.lower_is_better else value / self.asked


TARGETS = (
    Target("c10_w2", "drain C=10, W=2 (≥ 2x best peer)", "#1b7837", 2.0),
    Target("c10_w8", "drain C=10, W=8 (≥ 2x)", "#5aae61", 2.0),
    Target("c1_w2", "drain C=1, W=2 (≥ 1x)", "#2166ac", 1.0),
    Target("c1_w8", "drain C=1, W=8 (≥ 1x)", "#67a9cf", 1.0),
    Target("enqueue", "one-call enqueue (≥ 1x)", "#b2182b", 1.0),
    Target("batch", "batch ÷ best one-call (≥ 10x)", "#ef8a62", 10.0),
    Target("cpu", "coordinator CPU/job, W=2 C=10 (≤ 0.25 ms)", "#762a83", 0.25, True),
)


@dataclass(frozen=True)
class Run:
    """The figures of one recorded run."""

    name: str  # 2026-12-06-0930
    figures: dict[str, float]


_RATIO = re.compile(r"\*\*([0-9.]+)x\*\*")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse(text: str, name: str) -> Run | None:
    """The figures of one results file; None for a run of other than 10,000 jobs."""
    if "N = 10,000 jobs" not in text.splitlines()[0]:
        return None
    figures: dict[str, float] = {}
    for line in text.splitlines():
        cells = _cells(line)
        if not cells or not cells[0].startswith("this coordinator"):
            continue
        ratios = [float(m.group(1)) for m in map(_RATIO.search, cells[1:]) if m]
        concurrency = "10" if "--concurrency 10" in cells[0] else "1"
        if len(ratios) == 5:  # the ratio table: enqueue, batch/batch, batch/one, W=2, W=8
            figures[f"c{concurrency}_w2"] = ratios[3]
            figures[f"c{concurrency}_w8"] = ratios[4]
            if concurrency == "10":
                figures["enqueue"] = ratios[0]
                figures["batch"] = ratios[2]
        elif concurrency == "10" and len(cells) == 9 and "ms" in cells[7]:
            figures["cpu"] = float(cells[7].split("ms")[0])  # server CPU per job, W=2
    return Run(name, figures)


def runs(folder: Path = HERE) -> list[Run]:
    """Every full run recorded in ``folder``, oldest first."""
    found = []
    for path in sorted(folder.glob("results-*.md")):
        run = parse(path.read_text(), path.stem.removeprefix("results-"))
        if run is not None and run.figures:
            found.append(run)
    return found


def svg(recorded: list[Run], width: int = 980, height: int = 430) -> str:
    """The picture: a line per target across the runs, and the target at 1.0."""
    left, right, top, bottom = 56, 330, 28, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [t.reached(r.figures[t.key]) for r in recorded for t in TARGETS if t.key in r.figures]
    ceiling = max(1.5, *values) if values else 1.5
    ceiling = float(int(ceiling * 2) + 1) / 2  # up to the next half

    def x(i: int) -> float:
        return left + (plot_w * i / max(1, len(recorded) - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ceiling)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="14">Issue 11 targets per recorded '
        '<tspan font-family="monospace">make bench-peers</tspan> run '
        "(fraction of each target reached; 1.0 = met)</text>",
    ]
    step = 0.5
    v = 0.0
    while v <= ceiling + 1e-9:
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{"#222" if v == 1.0 else "#ddd"}" '
            f'stroke-dasharray="{"6 3" if v == 1.0 else "none"}"/>'
        )
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
        v += step
    for i, run in enumerate(recorded):
        day, _, clock = run.name.rpartition("-")
        label = f"{day[5:]} {clock[:2]}:{clock[2:]}"
        out.append(
            f'<text transform="translate({x(i):.1f},{top + plot_h + 12}) rotate(45)" '
            f'font-size="10">{html.escape(label)}</text>'
        )
    for n, target in enumerate(TARGETS):
        points = [
            (x(i), y(target.reached(run.figures[target.key])))
            for i, run in enumerate(recorded)
            if target.key in run.figures
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(
            f'<polyline fill="none" stroke="{target.colour}" stroke-width="2" points="{path}"/>'
        )
        for px, py in points:
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{target.colour}"/>')
        ly = top + 10 + n * 20
        lx = left + plot_w + 20
        out.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{target.colour}" stroke-width="3"/>'
        )
        out.append(f'<text x="{lx + 28}" y="{ly}">{html.escape(target.label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(args: list[str] | None = None) -> None:
    """Write the picture of every recorded run."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers.history")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "peers-history.svg")
    opts = parser.parse_args(args)
    recorded = runs()
    opts.out.write_text(svg(recorded))
    print(f"{len(recorded)} runs drawn into {opts.out}")


if __name__ == "__main__":
    main()
