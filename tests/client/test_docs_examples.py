"""The README's and docs/client.md's marked examples, run as printed against a real coordinator.

A code block right after ``<!-- tested: … -->`` is extracted and executed: Python
blocks by this environment's interpreter, ``sh`` blocks by bash with ``-e`` and
``pipefail``, with ``fleet`` on the PATH and only ``FLEET_URL`` and
``FLEET_ADMIN_TOKEN`` set, as a reader who exported them would run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.served import Served

ROOT = Path(__file__).parents[2]
_BLOCK = re.compile(
    r"<!-- tested: (?P<name>[^>]+?) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)


@dataclass(frozen=True)
class Example:
    """One marked code block of a document."""

    name: str
    lang: str
    code: str


def examples(*documents: str) -> list[Example]:
    """The marked blocks of ``documents`` (paths from the repository root)."""
    found = []
    for document in documents:
        text = (ROOT / document).read_text()
        found += [Example(m["name"], m["lang"], m["code"]) for m in _BLOCK.finditer(text)]
    return found


EXAMPLES = examples("README.md", "docs/client.md")


def test_the_documents_mark_the_examples_this_suite_runs() -> None:
    """The README's two examples and the client guide's are found (a renamed marker fails here)."""
    assert [e.name for e in EXAMPLES] == [
        "README enqueue",
        "README fleet session",
        "client.md async",
    ]


def run(example: Example, served: Served, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Execute one example the way a reader would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FLEET_URL=served.base_url,
        FLEET_ADMIN_TOKEN=served.admin_token,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    if example.lang == "python":
        command = [sys.executable, "-c", example.code]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", example.code]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_each_example_runs_as_printed(example: Example, served: Served, tmp_path: Path) -> None:
    """The example exits 0 and prints what the text around it says it does."""
    done = run(example, served, tmp_path)
    assert done.returncode == 0, done.stderr
    assert served.admin_token not in done.stdout + done.stderr
    if example.name == "README enqueue":
        assert re.fullmatch(r"[0-9a-z]+ queued\n", done.stdout)
    elif example.name == "README fleet session":
        assert "2,500 of 2,500 jobs enqueued" in done.stdout
        assert "exit status 3 (3: not found)" in done.stdout
        assert "builder-1" in done.stdout
    else:
        assert "2500 enqueued" in done.stdout
