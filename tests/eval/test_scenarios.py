"""The warning stage through scenarios with exact truth (perception/eval/scenarios.py): every conflict
warned in time (NHTSA's FCW confirmation tests, Euro NCAP-shaped car-to-car and crossing cases), no
warning in a non-conflict (a car beside a curve, oncoming traffic on a curve, the ego stopped at a junction,
a pedestrian who stops at the kerb, a slower car in the next lane), over several noise seeds."""

from __future__ import annotations

import json

import pytest

from perception.core.config import load_config
from perception.eval.scenarios import run_all, scenarios, simulate
from tests.helpers import run_cli

KIND = "unit"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_conflict_warned_in_time_and_no_false_warning(seed: int) -> None:
    rows = run_all(load_config(None), seed)
    assert [r["scenario"] for r in rows if not r["ok"]] == []
    assert {r["scenario"] for r in rows if r["conflict"] and r["collision_s"] is None} == set()  # truth holds


def test_the_nhtsa_tests_warn_by_kinematics_not_a_fixed_ttc() -> None:
    """At 72 km/h toward a stopped car the warning comes earlier (in TTC) than toward one at 32 km/h: the
    required deceleration grows with the closing speed."""
    cfg = load_config(None)
    by_name = {s.name: s for s in scenarios()}
    stopped = simulate(by_name["nhtsa_stopped_lead"], cfg)["first_warning"]
    slower = simulate(by_name["nhtsa_slower_lead"], cfg)["first_warning"]
    assert stopped["ttc_s"] > slower["ttc_s"] >= 2.0 and stopped["reason"] == slower["reason"] == "lead"


def test_a_straight_path_warns_for_the_car_beside_the_curve() -> None:
    """The same scenario with the ego's motion unknown: the straight corridor runs into the parked car."""
    cfg = load_config(None)
    curve = next(s for s in scenarios() if s.name == "car_beside_curve")
    unknown = load_config(overrides={"fcw": {"path_min_speed_mps": 100.0}})  # never bends
    assert simulate(curve, cfg)["first_warning"] is None
    assert simulate(curve, unknown)["first_warning"] is not None


def test_eval_ttc_scenarios_command() -> None:
    proc = run_cli("eval-ttc", "--scenarios", "--json", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == len(scenarios()) and all(r["ok"] for r in rows)
    proc = run_cli("eval-ttc", "--model", "x.onnx")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: eval-ttc needs SOURCE, --truth (or --scenarios)"
