"""``python -m bench [datastore] [options]``: run benchmark suites, printing ratios."""

from __future__ import annotations

import sys

from bench import coordinator, datastore, drain

SUITES = {"datastore": datastore.main, "coordinator": coordinator.main, "drain": drain.main}


def main() -> None:
    """Run the named suite (default: all) with the remaining arguments."""
    args = sys.argv[1:]
    if args and args[0] in SUITES:
        SUITES[args[0]](args[1:])
        return
    for run in SUITES.values():
        run(args)


if __name__ == "__main__":
    main()
