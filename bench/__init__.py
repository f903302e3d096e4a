"""Benchmarks, apart from the tests: ``make bench`` or ``python -m bench [suite] [options]``.

The packages are imported from the tree ``bench`` is in, whatever the environment
has installed: an A/B between two worktrees run with one venv (whose editable
installs point at one of them) would otherwise measure the same code twice, since
the suites import the packages as ``python -m bench`` loads them
(docs/benchmarks.md, "Twenty-fourth session").
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _source in reversed(
    (
        "services/coordinator/src",
        "packages/datastore/src",
        "packages/wire/src",
        "packages/client/src",
        "services/agent/src",
    )
):
    if str(_ROOT / _source) not in sys.path:
        sys.path.insert(0, str(_ROOT / _source))
