"""``domain._replace.replace`` returns what ``dataclasses.replace`` does, for each domain value."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from fleet_coordinator.domain import AgentState, Holding, JobState, JobStatus
from fleet_coordinator.domain._replace import constructor, replace
from fleet_coordinator.domain.job import Lease, Run
from fleet_coordinator.domain.statuses import RunOutcome

LEASE = Lease(agent_id="a1", run_id="r1", epoch=3, expires_at=10.0, claimed_at=1.0)
RUN = Run(run_id="r1", epoch=3, agent_id="a1", claimed_at=1.0)
JOB = JobState(id="j1", queue="q", kind="k", payload={"x": [1]}, lease=LEASE, runs=(RUN,), epoch=3)
AGENT = AgentState(
    id="a1",
    name="n",
    labels={},
    capacity=2,
    queues=(),
    draining=False,
    token_hash="h",
    created_at=0.0,
    last_seen=None,
    held={"j1": Holding(3, 1.0)},
)

CASES = [
    (JOB, {"status": JobStatus.LEASED, "updated_at": 2.0, "epoch": 4}),
    (JOB, {"lease": None, "runs": (), "result": {"ok": True}}),
    (JOB, {}),
    (RUN, {"ended_at": 5.0, "outcome": RunOutcome.SUCCEEDED, "error": None}),
    (LEASE, {"expires_at": 20.0}),
    (AGENT, {"held": {}, "last_seen": 7.0}),
    (Holding(1, 2.0), {"epoch": 2}),
]


@pytest.mark.parametrize(("value", "changes"), CASES)
def test_it_returns_what_dataclasses_replace_returns(value: Any, changes: dict[str, Any]) -> None:
    new = replace(value, **changes)
    assert new == dataclasses.replace(value, **changes)
    assert type(new) is type(value)
    assert new is not value
    for name, changed in changes.items():
        assert getattr(new, name) is changed
    assert value == replace(value)  # the original is untouched


def test_an_unknown_field_is_a_type_error_as_in_dataclasses() -> None:
    with pytest.raises(TypeError, match="no fields"):
        replace(JOB, statuss=JobStatus.LEASED)


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    """A class whose ``__init__`` does more than store: neither helper may build it."""

    x: int

    def __post_init__(self) -> None:
        assert self.x >= 0


def test_a_class_it_cannot_copy_faithfully_is_refused() -> None:
    @dataclasses.dataclass
    class Mutable:
        x: int

    for value in (Mutable(1), _Checked(1)):
        with pytest.raises(TypeError, match="not a frozen slotted dataclass"):
            replace(value, x=2)


_FULL_JOB = {f.name: getattr(JOB, f.name) for f in dataclasses.fields(JobState)}
CONSTRUCTED: list[tuple[type[Any], dict[str, Any]]] = [
    (JobState, {"id": "j1", "queue": "q", "kind": "k", "payload": {"x": [1]}}),
    (JobState, {**_FULL_JOB, "requires": {"gpu": "1"}, "schedule": "s", "runs_dropped": 2}),
    (Lease, {"agent_id": "a1", "run_id": "r1", "epoch": 3, "expires_at": 10.0, "claimed_at": 1.0}),
    (Run, {"run_id": "r1", "epoch": 3, "agent_id": "a1", "claimed_at": 1.0, "error": "e"}),
]


@pytest.mark.parametrize(("cls", "fields"), CONSTRUCTED)
def test_a_constructor_builds_what_the_class_builds(cls: type[Any], fields: dict[str, Any]) -> None:
    built = constructor(cls)(**fields)
    assert type(built) is cls
    assert built == cls(**fields)
    for f in dataclasses.fields(cls):
        expected = getattr(cls(**fields), f.name)
        assert type(getattr(built, f.name)) is type(expected), f.name
        if f.name in fields:
            assert getattr(built, f.name) is fields[f.name], f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.epoch = 7  # still frozen: nothing changes a built value


def test_a_constructor_takes_the_class_signature() -> None:
    build = constructor(JobState)
    assert list(inspect.signature(build).parameters) == [
        f.name for f in dataclasses.fields(JobState)
    ]
    with pytest.raises(TypeError):
        build(id="j1", queue="q", kind="k")  # type: ignore[call-arg]  # payload is required
    with pytest.raises(TypeError):
        build(id="j1", queue="q", kind="k", payload={}, statuss=JobStatus.LEASED)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        build("j1", "q", "k", {})  # type: ignore[call-arg]  # keyword-only, as the class


def test_a_default_factory_makes_a_new_value_for_each_job() -> None:
    build = constructor(JobState)
    one, two = (build(id=i, queue="q", kind="k", payload={}) for i in ("j1", "j2"))
    assert one.requires == {}
    assert one.requires is not two.requires


def test_a_class_a_constructor_cannot_build_faithfully_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived(Base):  # its own slots are not all its fields: another layout
        y: int

    for cls in (Unslotted, _Checked):
        with pytest.raises(TypeError, match="not a frozen slotted dataclass"):
            constructor(cls)
    with pytest.raises(TypeError, match="layout differs"):
        constructor(Derived)
