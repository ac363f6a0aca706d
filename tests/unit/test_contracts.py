"""Plan validation, fingerprints and the exported schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from graph.contracts import Plan, Step, contract_schemas


def test_plan_rejects_duplicate_ids():
    with pytest.raises(ValidationError, match="duplicate step id 'a'"):
        Plan(goal="g", steps=[Step(id="a", tool="t"), Step(id="a", tool="t")])


def test_plan_rejects_unknown_dependencies():
    with pytest.raises(ValidationError, match=r"unknown step ids \['b'\]"):
        Plan(goal="g", steps=[Step(id="a", tool="t", depends_on=["b"])])


def test_plan_rejects_cycles_and_names_them():
    with pytest.raises(ValidationError, match="dependency cycle: a -> c -> b -> a"):
        Plan(goal="g", steps=[Step(id="a", tool="t", depends_on=["c"]),
                              Step(id="b", tool="t", depends_on=["a"]),
                              Step(id="c", tool="t", depends_on=["b"])])


def test_plan_rejects_extra_fields():
    with pytest.raises(ValidationError):
        Plan.model_validate({"goal": "g", "steps": [], "bonus": 1})


def test_fingerprint_ignores_ids_and_prose_but_not_effects():
    one = Plan(goal="g", steps=[Step(id="a", tool="t", args={"x": 1}),
                                Step(id="b", tool="t", depends_on=["a"])])
    renamed = Plan(goal="other words", steps=[
        Step(id="x1", tool="t", args={"x": 1}, description="why"),
        Step(id="x2", tool="t", depends_on=["x1"])])
    changed = Plan(goal="g", steps=[Step(id="a", tool="t", args={"x": 2}),
                                    Step(id="b", tool="t", depends_on=["a"])])
    assert one.fingerprint() == renamed.fingerprint()
    assert one.fingerprint() != changed.fingerprint()


def test_schema_exports_the_binding_names():
    schemas = contract_schemas()
    assert {"Plan", "Step", "StepResult", "Decision", "FinalState"} <= schemas.keys()
    assert set(schemas["Step"]["properties"]) >= {"id", "tool", "args", "depends_on",
                                                   "description"}
    status = schemas["StepResult"]["properties"]["status"]["enum"]
    assert status == ["ok", "error", "rejected", "timeout", "blocked", "cancelled"]
    final = schemas["FinalState"]
    assert set(final["$defs"]["RunStatus"]["enum"]) == {
        "completed", "failed", "budget_exhausted", "loop_detected", "needs_approval",
        "needs_person", "cancelled"}
    assert schemas["Decision"]["properties"]["action"]["enum"] == ["continue", "replan", "finish"]
