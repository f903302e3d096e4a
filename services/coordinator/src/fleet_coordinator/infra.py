"""Cosmos DB container definitions for infrastructure templates, derived from the code.

``infra/azure/main.bicep`` loads ``infra/azure/containers.json`` with
``loadJsonContent``; that file is generated from ``store.CONTAINER_SPECS`` and the
datastore's ``indexing_policy`` (the policy the Cosmos provider creates containers
with), so the deployed containers and the ones the coordinator would create are
the same by construction. ``python -m fleet_coordinator.generate`` rewrites it.
"""

from __future__ import annotations

import json
from typing import Any

from fleet_datastore import ContainerSpec
from fleet_datastore.providers.cosmos_sql import indexing_policy

from .store import CONTAINER_SPECS

__all__ = ["container_definition", "containers_json"]

PARTITION_KEY_VERSION = 2
"""Hash v2, the azure-cosmos SDK's default for ``PartitionKey``."""


def container_definition(spec: ContainerSpec) -> dict[str, Any]:
    """Name, partition key, indexing policy and time to live of a container, as ARM has them."""
    definition: dict[str, Any] = {
        "name": spec.name,
        "partitionKey": {
            "paths": [f"/{spec.partition_key}"],
            "kind": "Hash",
            "version": PARTITION_KEY_VERSION,
        },
        "indexingPolicy": indexing_policy(spec),
    }
    if spec.default_ttl is not None:
        definition["defaultTtl"] = spec.default_ttl
    return definition


def containers_json(specs: tuple[ContainerSpec, ...] = CONTAINER_SPECS) -> str:
    """The generated file's text: containers sorted by name, keys sorted, newline-terminated."""
    document = {
        "generatedBy": "python -m fleet_coordinator.generate (make generate); do not edit",
        "source": "services/coordinator/src/fleet_coordinator/store/specs.py",
        "containers": [container_definition(s) for s in sorted(specs, key=lambda s: s.name)],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
