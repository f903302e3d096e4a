"""Files generated from the code stay in step with it: containers.json and docs/api.md."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from fleet_coordinator.api_doc import api_markdown, openapi_schema
from fleet_coordinator.generate import GENERATED, main, stale_files
from fleet_coordinator.infra import containers_json
from fleet_coordinator.store import CONTAINER_SPECS
from fleet_datastore.providers.cosmos_sql import indexing_policy

ROOT = Path(__file__).resolve().parents[2]


def test_committed_generated_files_are_current() -> None:
    """containers.json and docs/api.md equal what the code renders now (else: make generate)."""
    assert stale_files(ROOT) == []


def test_check_mode_reports_a_stale_file_and_writes_nothing(tmp_path: Path) -> None:
    """--check exits 1 for an edited file and leaves it as it was; after a write it exits 0."""
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs/operations.md", tmp_path / "docs/operations.md")
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    edited = tmp_path / "docs/api.md"
    edited.write_text(edited.read_text() + "hand edit\n")
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert edited.read_text().endswith("hand edit\n")
    assert sorted(stale_files(tmp_path)) == ["docs/api.md"]


def test_container_definitions_carry_every_spec_with_its_partition_key_and_policy() -> None:
    """One definition per declared container: its /pk path and the provider's indexing policy."""
    containers = json.loads(containers_json())["containers"]
    by_name = {c["name"]: c for c in containers}
    assert sorted(by_name) == sorted(s.name for s in CONTAINER_SPECS)
    for spec in CONTAINER_SPECS:
        c = by_name[spec.name]
        assert c["partitionKey"]["paths"] == [f"/{spec.partition_key}"]
        assert c["indexingPolicy"] == indexing_policy(spec)


def test_generated_text_is_deterministic() -> None:
    """Rendering twice gives the same bytes (sorted keys, stable order)."""
    for relative, render in GENERATED.items():
        current = (ROOT / relative).read_text()
        assert render(current) == render(current)
        assert render(render(current)) == render(current)


def test_api_page_names_every_path_and_schema_of_the_openapi_schema() -> None:
    """Every operation and every component schema of the app has a heading in docs/api.md."""
    schema = openapi_schema()
    page = api_markdown(schema)
    for path, item in schema["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in page
    for name in schema["components"]["schemas"]:
        assert f"\n### {name}\n" in page


@pytest.mark.cosmos
async def test_containers_the_coordinator_creates_on_cosmos_match_the_generated_json() -> None:
    """On the Cosmos protocol the coordinator creates exactly the JSON's containers and policies."""
    from azure.cosmos.aio import CosmosClient
    from fleet_coordinator.store import open_containers
    from fleet_datastore import CosmosConfig, store_from_url

    from tests.support.cosmos_local import cosmos_endpoint

    expected = {c["name"]: c for c in json.loads(containers_json())["containers"]}
    database = f"infra-{uuid.uuid4().hex[:8]}"
    with cosmos_endpoint() as cfg:
        store = store_from_url("cosmos://", cosmos=CosmosConfig(cfg.endpoint, cfg.key, database))
        async with store:
            await open_containers(store)
        async with CosmosClient(cfg.endpoint, credential=cfg.key) as client:
            db = client.get_database_client(database)
            try:
                created = {c["id"]: c async for c in db.list_containers()}
            finally:
                await client.delete_database(database)
    assert sorted(created) == sorted(expected)
    for name, definition in expected.items():
        assert created[name]["partitionKey"]["paths"] == definition["partitionKey"]["paths"]
        policy = created[name]["indexingPolicy"]
        assert policy["compositeIndexes"] == definition["indexingPolicy"]["compositeIndexes"]


def test_settings_markers_missing_is_an_error(tmp_path: Path) -> None:
    """A page without the settings markers is refused rather than silently rewritten."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/operations.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="settings markers"):
        main(["--root", str(tmp_path)])


def test_cosmos_indexes_only_the_paths_queries_use() -> None:
    """Payloads, results, runs and progress are excluded; declared fields are range-indexed."""
    from fleet_coordinator.store import JOBS_SPEC

    policy = indexing_policy(JOBS_SPEC)
    included = {p["path"] for p in policy["includedPaths"]}
    assert {"/payload/?", "/result/?", "/runs/?", "/payload/*"}.isdisjoint(included)
    assert {"/status/?", "/queue/?", "/lock/?", "/id/?", "/pk/?"} <= included
    assert {"path": "/*"} in policy["excludedPaths"]
