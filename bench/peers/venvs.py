"""Temporary virtualenvs for the peers, made with ``uv venv`` + ``uv pip install`` (pinned).

They stay out of the project's ``uv.lock``: each peer gets its own environment
under the run's temp dir (or ``--venvs DIR`` to keep them between runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .progress import say

__all__ = ["make_venv", "workspace_requirements"]


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise SystemExit("peers: uv not found (make bench-peers passes it as UV)")
    return uv


ROOT = Path(__file__).resolve().parents[2]


def workspace_requirements(package: str, folder: Path) -> list[str]:
    """``package`` of this workspace and what it needs, pinned as ``uv.lock`` pins them.

    ``uv export`` writes the pins (to ``folder``); the workspace's own packages it
    needs are installed from their folders, built as a wheel would be.
    """
    export = [_uv(), "export", "--frozen", "--package", package, "--no-dev", "--no-hashes"]
    text = subprocess.run(
        [*export, "--no-emit-workspace"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    workspace = subprocess.run(
        [*export, "--only-emit-workspace"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    local = [
        str(ROOT / line.removeprefix("-e ").strip())
        for line in workspace.splitlines()
        if line.startswith("-e ")
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pins = folder / f"{package}.txt"
    pins.write_text(text)
    return ["-r", str(pins), *local]


def make_venv(root: Path, name: str, requirements: list[str]) -> Path:
    """A venv at ``root/name`` holding ``requirements``; returns its python."""
    venv = root / name
    python = venv / "bin" / "python"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    if not python.exists():
        say(f"venv {name}: uv venv")
        subprocess.run(
            [_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env
        )
    say(f"venv {name}: uv pip install {' '.join(requirements)}")
    subprocess.run(
        # Bytecode compiled at install, as the project's own venv is (Makefile): with
        # PYTHONDONTWRITEBYTECODE set, every worker start would compile its imports anew.
        [
            _uv(),
            "pip",
            "install",
            "-q",
            "--compile-bytecode",
            "--python",
            str(python),
            *requirements,
        ],
        check=True,
        env=env,
    )
    return python
