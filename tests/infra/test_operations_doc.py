"""docs/operations.md covers every setting and metric, and its alert rules name real metrics."""

from __future__ import annotations

import re

import yaml
from fleet_coordinator.metrics import Metrics

from .texts import ROOT, settings_env_names

PAGE = (ROOT / "docs" / "operations.md").read_text()
# The prose after the generated table, so a setting must be explained, not only listed.
PROSE = PAGE.split("<!-- settings:end -->", 1)[1]


def _exported_names() -> set[str]:
    """The metric names the coordinator exposes, as Prometheus scrapes them."""
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_every_setting_is_explained() -> None:
    """Each FLEET_* variable of Settings is described in the prose, not only in the table."""
    missing = {name for name in settings_env_names() if f"`{name}`" not in PROSE}
    assert not missing


def test_every_metric_is_in_the_metrics_table() -> None:
    """Each exported metric has a row in the metrics table; the table names no other."""
    section = PAGE.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(fleet_\w+)` \|", section, re.M))
    assert rows == _exported_names()


def test_alert_rules_parse_and_name_only_exported_metrics() -> None:
    """The alert rule block is Prometheus rule YAML over metrics the coordinator exports."""
    section = PAGE.split("## Suggested alert rules", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules}
    assert {
        "FleetQueueBacklog",
        "FleetOldestQueuedJobStale",
        "FleetLeaseExpiryRateHigh",
        "FleetConflictRateHigh",
    } <= alerts
    exported = _exported_names()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for"}
        used = set(re.findall(r"\bfleet_\w+", rule["expr"]))
        assert used <= exported, used - exported
