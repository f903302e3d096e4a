"""infra/compose.yaml agrees with the code: services, ports, FLEET_* settings, health checks.

No Docker engine runs here; the file is parsed, its settings are validated by the
coordinator's own ``Settings``, its health-check commands run against a real
``fleet-coordinator serve``, and its one-shot agent registration script registers
agents whose tokens then claim.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml
from fleet_coordinator.settings import Settings

from tests.support.served import Served

from .texts import ROOT, dockerfile_stages, settings_env_names

COMPOSE_PATH = ROOT / "infra" / "compose.yaml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_PATH.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
COORDINATORS = ["coordinator-1", "coordinator-2"]
AGENTS = ["agent-1", "agent-2", "agent-3"]
STAGES = {s.name: s for s in dockerfile_stages((ROOT / "infra/docker/Dockerfile").read_text())}
IMAGE_PORT = int(STAGES["coordinator"].last("EXPOSE") or 0)


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with VAR unset, and ``$$`` as a literal ``$``."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)
    return value.replace("$$", "$")


def _env(service: str) -> dict[str, str]:
    environment = SERVICES[service].get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping"
    return {k: _interpolate(str(v)) for k, v in environment.items()}


def _agent_argv(service: str) -> list[str]:
    entrypoint = SERVICES[service]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    return shlex.split(_interpolate(entrypoint[2]).removeprefix("exec "))


def _host_port(url: str) -> tuple[str, str]:
    match = re.fullmatch(r"http://([\w-]+):(\d+)/?", url)
    assert match, url
    return match.group(1), match.group(2)


def test_services_emulator_two_coordinators_registration_three_agents() -> None:
    """The emulator, two replicas, the one-shot registration and three agents."""
    assert set(SERVICES) == {"cosmos", "register-agents", *COORDINATORS, *AGENTS}
    assert SERVICES["cosmos"]["image"].startswith(
        "mcr.microsoft.com/cosmosdb/linux/azure-cosmos-emulator:"
    )
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in COMPOSE["volumes"]
            else:
                assert (COMPOSE_PATH.parent / source).exists(), volume


def test_coordinators_are_configured_by_settings_fields_for_cosmos() -> None:
    """Every FLEET_* name is a Settings field, and Settings accepts the values as given."""
    for name in COORDINATORS:
        env = _env(name)
        assert set(env) <= settings_env_names(), set(env) - settings_env_names()
        fields: dict[str, Any] = {k.removeprefix("FLEET_").lower(): v for k, v in env.items()}
        settings = Settings(**fields)
        config = settings.cosmos_config()
        assert config is not None
        assert base64.b64decode(config.key, validate=True)
        host, port = _host_port(config.endpoint)
        assert host == "cosmos"
        assert f"127.0.0.1:{port}:{port}" in SERVICES["cosmos"]["ports"]
        assert SERVICES["cosmos"]["environment"]["PROTOCOL"] == "http"
        assert settings.admin_token, "replicas must share a configured admin token"
    assert _env("coordinator-1") == _env("coordinator-2")


def test_coordinator_ports_map_the_image_port_to_distinct_local_ports() -> None:
    """Each replica publishes the image's port on 127.0.0.1, each on its own host port."""
    hosts = []
    for name in COORDINATORS:
        [mapping] = SERVICES[name]["ports"]
        address, host, container = mapping.split(":")
        assert address == "127.0.0.1"
        assert int(container) == IMAGE_PORT
        hosts.append(host)
        assert SERVICES[name]["build"]["target"] == "coordinator"
        assert SERVICES[name]["depends_on"]["cosmos"]["condition"] == "service_healthy"
    assert len(set(hosts)) == len(hosts)


def test_agents_reach_a_coordinator_with_a_registered_token() -> None:
    """Agents run `fleet-agent run` against a replica with the token file registration writes."""
    registration = _env("register-agents")
    assert registration["AGENT_NAMES"].split(",") == AGENTS
    assert registration["COORDINATOR_URL"] == f"http://coordinator-1:{IMAGE_PORT}"
    used = set()
    for name in AGENTS:
        argv = _agent_argv(name)
        assert argv[:2] == ["fleet-agent", "run"]
        url = argv[argv.index("--url") + 1]
        host, port = _host_port(url)
        assert host in COORDINATORS
        assert int(port) == IMAGE_PORT
        used.add(host)
        token = argv[argv.index("--token") + 1]
        assert token == f"$(cat {registration['TOKENS_DIR']}/{name}.token)"
        assert int(argv[argv.index("--concurrency") + 1]) >= 1
        assert argv[argv.index("--queue") + 1]
        conditions = SERVICES[name]["depends_on"]
        assert conditions["register-agents"]["condition"] == "service_completed_successfully"
        assert SERVICES[name]["build"]["target"] == "agent"
    assert used == set(COORDINATORS), "agents spread over both replicas"


def test_agent_command_line_is_accepted_by_fleet_agent() -> None:
    """`fleet-agent run --help` names every option the compose agents pass."""
    from tests.support.served import tool_path

    help_text = subprocess.run(
        [tool_path("fleet-agent"), "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in AGENTS:
        for option in (a for a in _agent_argv(name) if a.startswith("--")):
            assert option in help_text, option


def _served_health_check(test: list[str], port: int) -> list[str]:
    assert test[0] == "CMD"
    assert test[1] == "python"
    return [sys.executable, *(a.replace(f":{IMAGE_PORT}/", f":{port}/") for a in test[2:])]


def test_health_check_and_registration_work_against_a_real_coordinator(tmp_path: Path) -> None:
    """The replicas' health check passes on /readyz; registration writes tokens that claim, once."""
    test = SERVICES["coordinator-1"]["healthcheck"]["test"]
    assert "/readyz" in " ".join(test)
    with Served(cwd=tmp_path, store_url="memory://") as served:
        check = subprocess.run(_served_health_check(test, served.port), timeout=30, check=False)
        assert check.returncode == 0

        env = _env("register-agents")
        tokens = tmp_path / "tokens"
        env.update(
            COORDINATOR_URL=served.base_url,
            FLEET_ADMIN_TOKEN=served.admin_token,
            TOKENS_DIR=str(tokens),
        )
        [script] = [
            v.split(":")[0] for v in SERVICES["register-agents"]["volumes"] if v.startswith(".")
        ]
        command = [sys.executable, str(COMPOSE_PATH.parent / script)]
        run_env = {**os.environ, **env}
        first = subprocess.run(command, env=run_env, capture_output=True, text=True, check=False)
        assert first.returncode == 0, first.stderr
        for name in AGENTS:
            token = (tokens / f"{name}.token").read_text()
            assert token not in first.stdout, "tokens are never printed"
            claim = httpx.post(
                f"{served.base_url}/v1/claims",
                json={"max_jobs": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert claim.status_code == 200
        again = subprocess.run(command, env=run_env, capture_output=True, text=True, check=False)
        assert again.returncode == 0
        agents = httpx.get(f"{served.base_url}/v1/agents", headers=served.admin_headers).json()
        assert sorted(a["name"] for a in agents["items"]) == AGENTS

        wrong = subprocess.run(
            command,
            env={**run_env, "FLEET_ADMIN_TOKEN": "wrong", "TOKENS_DIR": str(tmp_path / "other")},
            capture_output=True,
            text=True,
            check=False,
        )
        assert wrong.returncode == 1
        assert "HTTP 401" in wrong.stderr
        assert "Traceback" not in wrong.stderr
