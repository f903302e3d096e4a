"""``python -m bench`` measures the tree it is in, not whatever the venv installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_imports_the_packages_of_its_own_tree() -> None:
    """Run from a worktree with the project's venv (its editable installs point at
    another tree), the suites' modules still import this tree's packages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import bench.__main__, fleet_coordinator, fleet_datastore, fleet_wire, fleet_client;"
        "print(fleet_coordinator.__file__, fleet_datastore.__file__, fleet_wire.__file__,"
        " fleet_client.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(out) == 4
    for path in out:
        assert Path(path).resolve().is_relative_to(ROOT), path
