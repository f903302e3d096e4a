"""``make demo`` keeps working: a smaller run of it, bounded in time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_finishes_the_killed_agents_jobs_with_the_others() -> None:
    """80 jobs, one agent killed, one job cancelled: exit 0 and the summary says so."""
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--plain", "--jobs", "80", "--time-limit", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"SIGKILL agent-\d while it holds \d+ jobs", done.stdout)
    assert ": all ended" in done.stdout
    assert "is cancelled (runs: cancelled)" in done.stdout
