"""``python -m bench [datastore|coordinator|drain|console] [options]``: run a suite."""

from __future__ import annotations

import sys

from bench import console, coordinator, datastore, drain

SUITES = {
    "datastore": datastore.main,
    "coordinator": coordinator.main,
    "drain": drain.main,
    "console": console.main,
}
BY_DEFAULT = ("datastore", "coordinator")
"""What ``python -m bench`` runs with no suite named: the console's fills a million jobs first."""


def main() -> None:
    """Run the named suite (default: all) with the remaining arguments."""
    args = sys.argv[1:]
    if args and args[0] in SUITES:
        SUITES[args[0]](args[1:])
        return
    for name in BY_DEFAULT:
        SUITES[name](args)


if __name__ == "__main__":
    main()
