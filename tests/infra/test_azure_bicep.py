"""infra/azure/main.bicep and its parameters agree with the code (read as text; no Bicep here)."""

from __future__ import annotations

import json
import re

import pytest
from fleet_coordinator.generate import GENERATED

from .texts import ROOT, bicep_params, bicep_without_comments, dockerfile_stages, exec_form
from .texts import settings_env_names as settings_names

AZURE = ROOT / "infra" / "azure"
BICEP = (AZURE / "main.bicep").read_text()
CODE = bicep_without_comments(BICEP)
PARAMS = bicep_params(BICEP)


def _block(text: str, opener: str) -> str:
    """The bracketed block that starts at ``opener`` (e.g. ``secrets: [``)."""
    start = text.index(opener) + len(opener) - 1
    pairs = {"[": "]", "{": "}"}
    depth = 0
    for i in range(start, len(text)):
        if text[i] in pairs:
            depth += 1
        elif text[i] in pairs.values():
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise AssertionError(f"unbalanced block after {opener!r}")


def _env() -> dict[str, tuple[str, str]]:
    """Each container env entry: name -> ("value" | "secretRef", expression)."""
    block = _block(CODE, "env: [")
    found = re.findall(r"name:\s*'([A-Z_]+)'\s*\n\s*(value|secretRef):\s*(.+)", block)
    assert found, "no env entries found"
    return {name: (kind, expr.strip()) for name, kind, expr in found}


def _image_port() -> int:
    coordinator = next(s for s in dockerfile_stages(_dockerfile()) if s.name == "coordinator")
    expose = coordinator.last("EXPOSE")
    assert expose is not None
    return int(expose)


def _dockerfile() -> str:
    return (ROOT / "infra" / "docker" / "Dockerfile").read_text()


def test_brackets_and_quotes_balance() -> None:
    """Every (, [ and { closes in order outside strings and comments (a cheap syntax check)."""
    stripped = re.sub(r"'(?:[^'\\]|\\.)*'", "''", CODE)
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for line_no, line in enumerate(stripped.splitlines(), 1):
        for ch in line:
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                assert stack, f"unbalanced {ch!r} on line {line_no}"
                assert stack.pop() == pairs[ch], f"unbalanced {ch!r} on line {line_no}"
    assert not stack


def test_containers_come_from_the_generated_json() -> None:
    """The Cosmos containers loop over loadJsonContent('containers.json'), which is generated."""
    assert "infra/azure/containers.json" in GENERATED
    assert "loadJsonContent('containers.json').containers" in CODE
    block = _block(CODE, "resource containers 'Microsoft.DocumentDB/")
    assert "partitionKey: c.partitionKey" in block
    assert "indexingPolicy: c.indexingPolicy" in block
    assert "for c in containerDefinitions" in block
    definitions = json.loads((AZURE / "containers.json").read_text())["containers"]
    assert {c["name"] for c in definitions} == {"jobs", "agents", "locks", "schedules"}
    assert "defaultTtl: c.?defaultTtl" in block
    assert {c["name"]: c.get("defaultTtl") for c in definitions}["jobs"] == -1


def test_capacity_mode_is_a_parameter_serverless_or_autoscale() -> None:
    """Serverless adds the EnableServerless capability; Autoscale sets the database's max RU/s."""
    mode = PARAMS["cosmosCapacityMode"]
    allowed = mode.decorator("allowed")
    assert allowed is not None
    assert set(re.findall(r"'(\w+)'", allowed)) == {"Serverless", "Autoscale"}
    assert "isServerless ? [ { name: 'EnableServerless' } ] : []" in CODE
    database = _block(CODE, "resource database '")
    assert "autoscaleSettings" in database
    assert "maxThroughput: cosmosAutoscaleMaxThroughput" in database
    assert "isServerless ? {}" in database
    assert int(PARAMS["cosmosAutoscaleMaxThroughput"].decorator("minValue") or 0) >= 1000


def test_env_names_are_coordinator_settings_and_secrets_are_secret_refs() -> None:
    """Every FLEET_* variable names a Settings field; the key and admin token are secretRefs."""
    env = _env()
    assert set(env) <= settings_names(), set(env) - settings_names()
    assert env["FLEET_STORE_URL"] == ("value", "'cosmos://'")
    assert env["FLEET_COSMOS_KEY"] == ("secretRef", "'cosmos-key'")
    assert env["FLEET_ADMIN_TOKEN"] == ("secretRef", "'admin-token'")
    for name in ("FLEET_COSMOS_ENDPOINT", "FLEET_COSMOS_DATABASE"):
        assert env[name][0] == "value"
    secrets = _block(CODE, "secrets: [")
    names = re.findall(r"name:\s*'([^']+)'", secrets)
    assert sorted(names) == ["admin-token", "cosmos-key"]
    assert "cosmos.listKeys().primaryMasterKey" in secrets
    assert "value: adminToken" in secrets
    assert PARAMS["adminToken"].decorator("secure") is not None


def test_probes_and_ingress_use_the_image_port_and_the_health_paths() -> None:
    """Startup/liveness on /healthz, readiness on /readyz, all on the port the image serves."""
    port = _image_port()
    assert f"var targetPort = {port}" in CODE
    assert "targetPort: targetPort" in _block(CODE, "ingress: {")
    probes = re.findall(
        r"type:\s*'(\w+)'\s*httpGet:\s*\{\s*path:\s*'([^']+)'\s*port:\s*(\w+)", CODE
    )
    assert {(kind, path) for kind, path, _ in probes} == {
        ("Startup", "/healthz"),
        ("Liveness", "/healthz"),
        ("Readiness", "/readyz"),
    }
    assert {p for _, _, p in probes} == {"targetPort"}
    # The paths exist in the app.
    from fleet_coordinator.api_doc import openapi_schema

    assert {"/healthz", "/readyz"} <= set(openapi_schema()["paths"])


def test_at_least_two_replicas() -> None:
    """minReplicas defaults to 2 and cannot be set lower; the scale block uses it."""
    replicas = PARAMS["minReplicas"]
    assert replicas.default is not None
    assert int(replicas.default) >= 2
    assert int(replicas.decorator("minValue") or 0) >= 2
    assert "minReplicas: minReplicas" in _block(CODE, "scale: {")


def test_image_command_serves_on_the_port_the_template_expects() -> None:
    """The coordinator image runs `fleet-coordinator serve --port <EXPOSE>`."""
    coordinator = next(s for s in dockerfile_stages(_dockerfile()) if s.name == "coordinator")
    entrypoint = exec_form(coordinator.last("ENTRYPOINT") or "[]")
    command = exec_form(coordinator.last("CMD") or "[]")
    argv = entrypoint + command
    assert argv[:2] == ["fleet-coordinator", "serve"]
    assert argv[argv.index("--port") + 1] == str(_image_port())
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("name", ["main.bicepparam"])
def test_parameters_file_sets_only_declared_params_and_every_required_one(name: str) -> None:
    """The .bicepparam uses main.bicep, names only its params, and sets those with no default."""
    text = bicep_without_comments((AZURE / name).read_text())
    assert re.search(r"^using '\./main\.bicep'$", text, re.M)
    assigned = dict(re.findall(r"^param\s+(\w+)\s*=\s*(.+)$", text, re.M))
    assert set(assigned) <= set(PARAMS), set(assigned) - set(PARAMS)
    required = {p.name for p in PARAMS.values() if p.default is None}
    assert required <= set(assigned), required - set(assigned)
    # Secrets are read from the environment, never written in the file.
    assert assigned["adminToken"].startswith("readEnvironmentVariable(")
    mode = assigned["cosmosCapacityMode"].strip("'")
    assert mode in (PARAMS["cosmosCapacityMode"].decorator("allowed") or "")
