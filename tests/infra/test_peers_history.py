"""``python -m bench.peers.history``: the recorded peer runs, read and drawn."""

from __future__ import annotations

import re
from pathlib import Path

from bench.peers.history import TARGETS, parse, runs, svg

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "peers"


def test_a_run_is_read_as_its_table_says() -> None:
    """The 09:30 run of 2026-12-06, figure by figure as its tables print them."""
    run = parse((RESULTS / "results-2026-12-06-0930.md").read_text(), "2026-12-06-0930")
    assert run is not None
    assert run.figures == {
        "c1_w2": 0.92,
        "c1_w8": 0.98,
        "c10_w2": 2.53,
        "c10_w8": 2.64,
        "enqueue": 0.70,
        "batch": 4.49,
        "cpu": 0.49,
    }


def test_a_short_run_is_left_out() -> None:
    """Only full runs (10,000 jobs) are compared; a quick look is not."""
    text = (RESULTS / "results-2026-12-06-0930.md").read_text()
    assert parse(text.replace("N = 10,000 jobs", "N = 500 jobs", 1), "quick") is None


def test_the_picture_has_a_line_per_target_over_every_run() -> None:
    recorded = runs(RESULTS)
    assert len(recorded) >= 19
    picture = svg(recorded)
    assert picture.count("<polyline") == len(TARGETS)
    longest = max(len(p.split()) for p in re.findall(r'points="([^"]*)"', picture))
    assert longest == len(recorded)
    for target in TARGETS:
        assert target.colour in picture
    # 1.0 is the target: the CPU figure is drawn as target / figure (lower is better).
    cpu = next(t for t in TARGETS if t.key == "cpu")
    assert cpu.reached(0.25) == 1.0
    assert cpu.reached(0.5) == 0.5
