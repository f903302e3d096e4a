"""``Bench``: what one run shares — its temp dir, processes, venvs, Redis and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .debian import ensure_packages
from .processes import Processes
from .servers import Postgres, Redis, start_postgres, start_redis
from .venvs import make_venv

__all__ = ["INSIDE", "Bench"]

INSIDE = Path(__file__).resolve().parent / "inside"


@dataclass
class Bench:
    """One run's shared state; servers and venvs are made on first use, then reused."""

    workdir: Path
    venv_root: Path
    processes: Processes
    _redis: Redis | None = None
    _postgres: Postgres | None = None
    _venvs: dict[str, Path] = field(default_factory=dict)

    def redis(self) -> Redis:
        """The run's redis-server (installed and started on first use)."""
        if self._redis is None:
            ensure_packages(redis=True, postgres=False)
            self._redis = start_redis(self.processes, self.workdir)
        return self._redis

    def postgres(self) -> Postgres:
        """The run's PostgreSQL (installed and started on first use)."""
        if self._postgres is None:
            ensure_packages(redis=False, postgres=True)
            self._postgres = start_postgres(self.processes, self.workdir)
        return self._postgres

    def venv(self, name: str, requirements: list[str]) -> Path:
        """The python of a venv holding ``requirements`` (made on first use)."""
        if name not in self._venvs:
            self._venvs[name] = make_venv(self.venv_root, name, requirements)
        return self._venvs[name]

    def trial_dir(self, name: str) -> Path:
        """A fresh folder for one trial's id files and logs."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
