"""Redis and PostgreSQL served on 127.0.0.1 from temp data dirs, on free non-default ports."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .debian import postgres_bin, redis_server
from .processes import Processes
from .progress import say

__all__ = ["Postgres", "Redis", "free_port", "start_postgres", "start_redis"]

READY_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (never 6379 or 5432: those are the defaults)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in (6379, 5432):
            return port


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


@dataclass(frozen=True)
class Redis:
    """A running redis-server."""

    pid: int
    port: int
    version: str

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"


def start_redis(processes: Processes, workdir: Path) -> Redis:
    """redis-server without persistence, on loopback only."""
    binary = redis_server()
    assert binary is not None, "ensure_packages(redis=True) first"
    data = workdir / "redis"
    data.mkdir()
    port = free_port()
    log = workdir / "redis.log"
    process = processes.spawn(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "no", "--dir", str(data), "--daemonize", "no"),
        ],
        log=log,
    )
    _wait_port(port, process, "redis-server", log)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    say(f"redis-server on 127.0.0.1:{port} (pid {process.pid})")
    return Redis(process.pid, port, version.split()[2].removeprefix("v="))


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL postmaster."""

    pid: int
    port: int
    version: str

    @property
    def dsn(self) -> str:
        """A libpq URL for the ``bench`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/bench"


def start_postgres(processes: Processes, workdir: Path) -> Postgres:
    """initdb into a temp dir and serve it on loopback, as the ``postgres`` user when root."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "ensure_packages(postgres=True) first"
    user = "postgres" if os.geteuid() == 0 else None
    data, sockets = workdir / "pgdata", workdir / "pgsock"
    for path in (data, sockets):
        path.mkdir()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    if user:
        workdir.chmod(0o755)  # the postgres user must reach its dirs under it
    log = workdir / "postgres.log"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run(
        [*initdb, "-E", "UTF8", "--no-sync"],
        check=True,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    port = free_port()
    process = processes.spawn(
        [
            *(str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)),
            *("-c", "listen_addresses=127.0.0.1"),
            # A worker stopped mid-query leaves its backend running the query to its end
            # (PostgreSQL notices a closed client only when it next writes to it): the
            # 2026-12-05 15:41 run had two such backends at 40-80 % CPU for a minute,
            # through the next system's trials. Checked every 100 ms, they end at once.
            *("-c", "client_connection_check_interval=100ms"),
        ],
        log=log,
        user=user,
    )
    _wait_port(port, process, "postgres", log)
    ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]
    deadline = time.monotonic() + READY_TIMEOUT
    while subprocess.run(ready).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("postgres did not become ready")
        time.sleep(0.1)
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q"]
    subprocess.run([*psql, "-c", "CREATE DATABASE bench"], check=True)
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)": the word after "(PostgreSQL)".
    words = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.split()
    version = words[words.index("(PostgreSQL)") + 1]
    say(f"postgres {version} on 127.0.0.1:{port} (pid {process.pid}, data in {data})")
    return Postgres(process.pid, port, version)


def remove_tree(path: Path) -> None:
    """Remove a temp dir whatever its owner (postgres' files are its own)."""
    shutil.rmtree(path, ignore_errors=True)
