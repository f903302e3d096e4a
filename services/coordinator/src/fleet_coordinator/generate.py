"""``python -m fleet_coordinator.generate [--check]``: rewrite the files derived from code.

* ``infra/azure/containers.json`` — the Cosmos containers ``main.bicep`` deploys
  (``fleet_coordinator.infra``);
* ``docs/api.md`` — the HTTP API reference (``fleet_coordinator.api_doc``).

Paths are relative to ``--root`` (default: the current directory, the repository
root under ``make generate``). ``--check`` writes nothing and exits 1 when a file
differs from what the code generates.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .api_doc import api_markdown
from .infra import containers_json

__all__ = ["GENERATED", "main", "stale_files"]

GENERATED: dict[str, Callable[[], str]] = {
    "infra/azure/containers.json": containers_json,
    "docs/api.md": api_markdown,
}
"""Each generated file, relative to the repository root, and the function that renders it."""


def stale_files(root: Path) -> list[str]:
    """The generated files under ``root`` whose content differs from what the code renders."""
    stale = []
    for relative, render in GENERATED.items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != render():
            stale.append(relative)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Write every generated file, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(prog="python -m fleet_coordinator.generate")
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for relative in stale:
            print(f"stale: {relative} (run make generate)", file=sys.stderr)
        return 1 if stale else 0
    for relative, render in GENERATED.items():
        path = args.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
