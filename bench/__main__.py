"""``python -m bench [suite] [options]``: one suite of ``SUITES`` or ``ONLY_BY_NAME``."""

from __future__ import annotations

import sys

from bench import claim_loop, console, coordinator, datastore, drain, request_cpu, soak

SUITES = {
    "datastore": datastore.main,
    "coordinator": coordinator.main,
    "drain": drain.main,
    "claim-loop": claim_loop.main,
    "console": console.main,
    "requests": request_cpu.main,
}
BY_DEFAULT = ("datastore", "coordinator")
"""What ``python -m bench`` runs with no suite named: the console's fills a million jobs first."""
ONLY_BY_NAME = {"soak": soak.main}
"""Suites run only when named (the soak runs for many minutes)."""


def main() -> None:
    """Run the named suite (default: all) with the remaining arguments."""
    args = sys.argv[1:]
    if args and args[0] in SUITES | ONLY_BY_NAME:
        (SUITES | ONLY_BY_NAME)[args[0]](args[1:])
        return
    for name in BY_DEFAULT:
        SUITES[name](args)


if __name__ == "__main__":
    main()
