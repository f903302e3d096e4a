"""Redis and PostgreSQL from Debian's packages, installed with ``apt-get`` when missing.

The packages' own services are not started: while ``apt-get`` runs, a
``policy-rc.d`` that denies every start is put in place (and removed after) unless
the machine already has one, as container images do.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from .progress import say

__all__ = ["ensure_packages", "postgres_bin", "redis_server"]

POLICY = Path("/usr/sbin/policy-rc.d")


def redis_server() -> str | None:
    """The ``redis-server`` binary, if installed."""
    return shutil.which("redis-server")


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``postgres`` and ``initdb``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def ensure_packages(*, redis: bool, postgres: bool) -> None:
    """Install ``redis-server`` / ``postgresql`` with apt-get where the binaries are missing."""
    wanted = []
    if redis and redis_server() is None:
        wanted.append("redis-server")
    if postgres and postgres_bin() is None:
        wanted.append("postgresql")
    if not wanted:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"peers: {' and '.join(wanted)} missing; run as root to apt-get them")
    say(f"installing {', '.join(wanted)} from Debian's packages (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    placed = not POLICY.exists()
    if placed:
        POLICY.write_text("#!/bin/sh\n# placed by make bench-peers while apt-get runs\nexit 101\n")
        POLICY.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted],
            check=True,
            env=env,
        )
    finally:
        if placed:
            POLICY.unlink(missing_ok=True)
    if (redis and redis_server() is None) or (postgres and postgres_bin() is None):
        raise SystemExit("peers: apt-get finished but the server binaries are still missing")
