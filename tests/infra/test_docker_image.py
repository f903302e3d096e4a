"""infra/docker/Dockerfile: its stages, users and commands agree with the code.

No Docker engine runs here, so the build is replayed as far as it can be without
one: the files ``.dockerignore`` lets into the context are copied to a directory,
the Dockerfile's own ``uv sync`` command builds the coordinator's environment from
them, and that environment's ``fleet-coordinator`` serves with the image's command
and passes the image's health check.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served

from .texts import ROOT, Stage, dockerfile_stages, exec_form

DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
STAGES = {s.name: s for s in dockerfile_stages(DOCKERFILE.read_text())}


def _scripts(service: str) -> dict[str, str]:
    data = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    scripts: dict[str, str] = data["project"]["scripts"]
    return scripts


def _sync_command(stage: Stage) -> list[str]:
    [run] = [r for r in stage.all("RUN") if "uv sync" in r]
    words = shlex.split(run)
    return [w for w in words if not w.startswith("--mount=")]


def _env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


# ---- the .dockerignore rules, as Docker applies them ----------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    # A pattern that matches a directory matches everything under it.
    return re.compile(out + "(?:/.*)?$")


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern(line.lstrip("!").strip("/"))))
    return rules


def _in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    included = True
    for keep, pattern in rules:  # the last matching rule decides
        if pattern.match(relative):
            included = keep
    return included


def build_context(destination: Path) -> list[str]:
    """Copy the files the build context would hold to ``destination``; return their paths."""
    rules = _rules()
    copied = []
    for folder, dirs, files in os.walk(ROOT):
        rel_folder = Path(folder).relative_to(ROOT).as_posix()
        # Skip trees no rule re-includes (speed only; their files would be excluded anyway).
        dirs[:] = [d for d in dirs if d not in {".git", ".venv", "node_modules", ".mypy_cache"}]
        for name in files:
            relative = name if rel_folder == "." else f"{rel_folder}/{name}"
            if _in_context(relative, rules):
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, target)
                copied.append(relative)
    return sorted(copied)


# ---- static checks --------------------------------------------------------------------


def test_targets_for_the_coordinator_and_the_agent_with_the_coordinator_last() -> None:
    """`--target coordinator` and `--target agent` exist; a plain build gives the coordinator."""
    assert {"coordinator", "agent", "runtime", "build"} <= set(STAGES)
    assert list(STAGES)[-1] == "coordinator"


@pytest.mark.parametrize("target", ["coordinator", "agent"])
def test_final_images_run_as_a_non_root_user_on_a_slim_base(target: str) -> None:
    """Each final image sets a numeric non-zero USER and derives from a slim Python image."""
    stage = STAGES[target]
    user = stage.last("USER")
    assert user is not None
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert stage.base == "runtime"
    assert STAGES["runtime"].base.startswith("python:")
    assert "-slim" in STAGES["runtime"].base


@pytest.mark.parametrize(("stage", "package"), [("build-coordinator", "fleet-coordinator")])
def test_environments_are_synced_frozen_without_dev_tools(stage: str, package: str) -> None:
    """uv sync --frozen --no-dev --package <service>: the lock decides, no test tools ship."""
    command = _sync_command(STAGES[stage])
    assert command[:2] == ["uv", "sync"]
    assert {"--frozen", "--no-dev", "--no-editable"} <= set(command)
    assert command[command.index("--package") + 1] == package


def test_coordinator_entrypoint_is_the_packages_console_script() -> None:
    """ENTRYPOINT names the console script services/coordinator declares."""
    entrypoint = exec_form(STAGES["coordinator"].last("ENTRYPOINT") or "[]")
    assert entrypoint == ["fleet-coordinator"]
    assert "fleet-coordinator" in _scripts("coordinator")


def test_agent_image_is_synced_from_the_agent_package_and_runs_its_script() -> None:
    """The agent target installs fleet-agent and its ENTRYPOINT is that package's script."""
    command = _sync_command(STAGES["build-agent"])
    assert command[command.index("--package") + 1] == "fleet-agent"
    assert {"--frozen", "--no-dev", "--no-editable"} <= set(command)
    entrypoint = exec_form(STAGES["agent"].last("ENTRYPOINT") or "[]")
    assert entrypoint == ["fleet-agent"]
    assert "fleet-agent" in _scripts("agent")


def test_context_holds_the_workspace_sources_and_nothing_else(tmp_path: Path) -> None:
    """The lock, every member's pyproject.toml and sources go in; tests, venvs, var/ stay out."""
    files = build_context(tmp_path)
    assert "uv.lock" in files
    assert "pyproject.toml" in files
    assert "services/coordinator/pyproject.toml" in files
    assert "packages/datastore/src/fleet_datastore/__init__.py" in files
    assert not [f for f in files if f.startswith(("tests/", "infra/", "docs/", "bench/", "var/"))]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".db")]


# ---- the build, replayed without Docker ---------------------------------------------


def test_synced_environment_serves_with_the_image_command_and_passes_its_health_check(
    tmp_path: Path,
) -> None:
    """The Dockerfile's uv sync on the context gives a fleet-coordinator that serves and is healthy.

    Run with this interpreter instead of the base image's (same minor version) and
    without bytecode compilation (time only).
    """
    context = tmp_path / "src"
    build_context(context)
    venv = tmp_path / "venv"
    env = {**os.environ, **_env_of(STAGES["build"])}
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_COMPILE_BYTECODE="0", UV_PYTHON=sys.executable)
    env.pop("VIRTUAL_ENV", None)
    # uv as the Makefile finds it: on PATH, else the copy `make` installed in .tools.
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    sync = subprocess.run(
        [uv, *_sync_command(STAGES["build-coordinator"])[1:]],
        cwd=context,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr[-2000:]
    tool = venv / "bin" / "fleet-coordinator"
    assert tool.exists()
    # Installed, not linked to the context: the runtime image copies only the venv.
    shutil.rmtree(context)

    argv = exec_form(STAGES["coordinator"].last("ENTRYPOINT") or "[]") + exec_form(
        STAGES["coordinator"].last("CMD") or "[]"
    )

    class ImageServed(Served):
        def command(self) -> list[str]:
            # The image's command from the venv, on 127.0.0.1 (Served adds --port).
            args = [str(tool), *argv[1:]]
            args[args.index("--host") + 1] = "127.0.0.1"
            port_at = args.index("--port")
            return args[:port_at] + args[port_at + 2 :]

    app_dir = tmp_path / "app"
    with ImageServed(cwd=app_dir, store_url="sqlite:///var/fleet.db") as served:
        assert httpx.get(f"{served.base_url}/healthz").json() == {"status": "ok"}
        healthcheck = STAGES["coordinator"].last("HEALTHCHECK")
        assert healthcheck is not None
        health = exec_form(healthcheck.split(" CMD ", 1)[1])
        health = [a.replace("127.0.0.1:8787", f"127.0.0.1:{served.port}") for a in health]
        assert health[0] == "python"
        check = subprocess.run([sys.executable, *health[1:]], timeout=30, check=False)
        assert check.returncode == 0
    # The default store landed where the image's VOLUME is.
    assert (app_dir / "var" / "fleet.db").exists()
    assert STAGES["coordinator"].last("VOLUME") == '["/app/var"]'
