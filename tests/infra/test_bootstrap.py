"""The README's commands on a machine without uv: ``make`` installs a pinned uv itself.

The Makefile is run in a scratch copy of the repository's top level with every
``PATH`` entry that holds a ``uv`` removed, as ``.ci/run`` does for the whole of
``make verify``: ``make tools`` must install uv from PyPI with pip into ``.tools/``,
and the targets behind ``make run`` and ``make verify`` must then use it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _path_without_uv() -> str:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(e for e in entries if e and not os.access(Path(e) / "uv", os.X_OK))


def _pinned() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match is not None
    return match.group(1)


def _make(cwd: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV", "VIRTUAL_ENV"))}
    env["PATH"] = path
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_make_installs_a_pinned_uv_when_none_is_on_path(tmp_path: Path) -> None:
    """Without uv on PATH, ``make tools`` installs the pinned uv into .tools/ with pip, and
    ``make run``/``make verify`` then call that uv."""
    path = _path_without_uv()
    assert shutil.which("uv", path=path) is None
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")

    installed = _make(tmp_path, "tools", path=path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    uv = tmp_path / ".tools" / "bin" / "uv"
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[:2] == ["uv", _pinned()]

    planned = _make(tmp_path, "-n", "run", "verify", path=path)
    assert planned.returncode == 0, planned.stderr
    assert f"{uv} sync --all-packages --frozen" in planned.stdout
    assert f"{uv} run fleet-coordinator serve" in planned.stdout
    assert f"{uv} run pytest" in planned.stdout
    # A second run finds the installed uv and installs nothing.
    again = _make(tmp_path, "tools", path=path)
    assert again.returncode == 0
    assert "installing" not in again.stdout


def test_make_uses_the_uv_on_path_when_there_is_one(tmp_path: Path) -> None:
    """With uv on PATH nothing is installed."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uv").write_text("#!/bin/sh\necho fake uv\n")
    (fake / "uv").chmod(0o755)
    done = _make(tmp_path, "tools", path=f"{fake}{os.pathsep}{_path_without_uv()}")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".tools").exists()
    planned = _make(tmp_path, "-n", "py-deps", path=f"{fake}{os.pathsep}{_path_without_uv()}")
    assert f"{fake / 'uv'} sync" in planned.stdout
