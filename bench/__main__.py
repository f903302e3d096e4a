"""``python -m bench [datastore] [options]``: run benchmark suites, printing ratios."""

from __future__ import annotations

import sys

from bench import coordinator, datastore, soak

SUITES = {"datastore": datastore.main, "coordinator": coordinator.main}
ONLY_BY_NAME = {"soak": soak.main}
"""Suites run only when named (the soak runs for many minutes)."""


def main() -> None:
    """Run the named suite (default: all) with the remaining arguments."""
    args = sys.argv[1:]
    if args and args[0] in SUITES | ONLY_BY_NAME:
        (SUITES | ONLY_BY_NAME)[args[0]](args[1:])
        return
    for run in SUITES.values():
        run(args)


if __name__ == "__main__":
    main()
