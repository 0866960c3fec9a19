"""Pinned lists (issue 24, item 2): rules.pin keeps last week's offers on the lists while their
flights run, releases the ones a rule forbids (by reason), and check re-verifies the pins."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optimizer.apps.explain import explain_customer
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import Scenario, load_scenario
from optimizer.io.validate import load_inputs
from optimizer.model import pins, stability
from optimizer.solve.exact import solve_exact
from tests.random_world import random_world, run_and_check
from tests.tiny_world import (
    WEEK,
    base_world,
    offer,
    offers_of,
    run_world,
    score,
    write_scenario,
    write_world,
)


def _world(**first: object) -> dict:
    world = base_world()
    world["offers"] = [offer(1, "BAKERY", **first), offer(2, "DAIRY")]
    world["scores"] = [score(c, o, value=1.0 if o == 1 else 1.1) for c in range(1, 5)
                       for o in (1, 2)]
    # last week customers 1-3 got offer 1; customer 4 got nothing
    world["history"] = [{"customer_id": c, "offer_id": 1, "week": WEEK - 1} for c in (1, 2, 3)]
    return world


def _run(root: Path, world: dict | None = None, *extra: str, check: bool = True, **rules
         ) -> tuple[Path, dict]:
    return run_world(root, world or _world(), *extra, check=check, **rules)


def test_pin_keeps_last_weeks_offer_against_a_better_one(tmp_path):
    free_run, free = _run(tmp_path / "free")
    assignments = pl.read_parquet(free_run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {2} for c in range(1, 5))  # 1.1 beats 1.0

    run, manifest = _run(tmp_path / "pinned", pin=True)
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {1} for c in (1, 2, 3))
    assert offers_of(assignments, 4) == {2}                  # no list last week: the best
    assert manifest["stability"]["pins"] == {"pinned": 3, "kept": 3, "released": {},
                                             "withheld_as_controls": 0}
    assert manifest["objective"] == pytest.approx(3 * 1.0 + 1.1)
    assert manifest["upper_bound"] >= manifest["objective"] - 1e-9
    assert manifest["upper_bound"] <= 3 * 1.0 + 1.1 + 1e-3 * 4.1  # the pinned problem's bound
    assert "Pins kept (rules.pin)" in (run / "report.html").read_text()


def test_check_catches_a_dropped_pin(tmp_path):
    run, _ = _run(tmp_path, pin=True)
    assignments = pl.read_parquet(run / "assignments.parquet")
    swapped = assignments.with_columns(   # customer 1 gets offer 2 instead of her pinned offer 1
        offer_id=pl.when(pl.col("customer_id") == 1).then(pl.lit(2, assignments["offer_id"].dtype))
        .otherwise(pl.col("offer_id")))
    swapped.write_parquet(run / "assignments.parquet")
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    assert "1 pin(s) dropped" in report.describe()


def test_pins_a_rule_forbids_are_released_by_reason(tmp_path, caplog):
    # cooldown forbids re-sending last week's offer: every pin is released by it, and the
    # planner is told how to keep them
    with caplog.at_level(logging.WARNING, logger="optimizer.model.pins"):
        run, manifest = _run(tmp_path / "cool", pin=True, cooldown_weeks=2)
    assert any("3 of 3 pins released by rules.cooldown_weeks" in r.getMessage()
               for r in caplog.records)
    pins = manifest["stability"]["pins"]
    assert (pins["pinned"], pins["kept"], pins["released"]) == (3, 0, {"cooldown": 3})
    assert all(offers_of(pl.read_parquet(run / "assignments.parquet"), c) == {2}
               for c in range(1, 5))


def test_a_flight_that_ended_pins_nothing(tmp_path):
    world = _world(flight_budget=100.0, flight_start_week=WEEK - 3, flight_end_week=WEEK - 1)
    _, manifest = _run(tmp_path, world, pin=True)
    assert manifest["stability"]["pins"]["pinned"] == 0


def test_pins_beyond_the_budget_are_released_best_value_first(tmp_path):
    world = _world(budget=1.0)            # each pin costs 0.5 x 1.0: two fit
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    run, manifest = _run(tmp_path, world, pin=True)
    pins = manifest["stability"]["pins"]
    assert (pins["pinned"], pins["kept"], pins["released"]) == (3, 2, {"budget": 1})
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert [offers_of(assignments, c) for c in (1, 2, 3)] == [{2}, {1}, {1}]  # 1 worth least


def _pinned_scenario(root: Path, world: dict, rules: dict, pin: bool, penalty: float,
                     solver: dict | None = None) -> Scenario:
    """``world`` written under ``root / "data"`` and its scenario: ``rules`` with room left for
    last week's lists (the random caps often leave none), ``pin`` and ``change_penalty``."""
    write_world(root / "data", world,
                headers={"scores": ["customer_id", "offer_id", "p_redeem", "value"],
                         "customer_channels": ["customer_id", "channel_id"]})
    rules = {**rules, "cooldown_weeks": 0, "pin": pin, "max_offers_per_window": None,
             "change_penalty": penalty,
             "max_offers_per_customer": max(2, rules["max_offers_per_customer"]),
             "budget_scale": max(1.0, rules["budget_scale"])}
    return load_scenario(write_scenario(
        root / "scenario.toml", rules={k: v for k, v in rules.items() if v is not None},
        solver=solver))


def _pinned_world(seed: int, n_customers: int, n_offers: int, campaign: bool, channels: bool
                  ) -> tuple[dict, dict]:
    """A random world (tests/random_world.py) whose offers run flights, ended or running this
    week, with random lists last week (the pins) in ``history``; and its rules."""
    world, rules = random_world(seed, n_customers, n_offers, targets=False, campaign=campaign,
                                channels=channels)
    rng = np.random.default_rng(seed + 7)
    for row in world["offers"]:        # some offers run a flight, ended or running this week
        if rng.random() < 0.4:
            start = int(rng.integers(WEEK - 3, WEEK + 1))
            row.update(flight_budget=round(float(rng.uniform(0.5, 3.0) * n_customers), 3),
                       flight_start_week=start,
                       flight_end_week=int(rng.integers(max(start, WEEK - 1), WEEK + 3)))
    start = int(rng.integers(WEEK - 3, WEEK + 1))   # a group flight, ended or running this week
    world["flights"] = [{"flight_id": "shared",
                         "flight_budget": round(float(rng.uniform(0.3, 2.0) * n_customers), 3),
                         "flight_start_week": start,
                         "flight_end_week": int(rng.integers(max(start, WEEK - 1), WEEK + 3))}]
    for row in world["offers"]:        # offers under no listed funder may share it
        row["flight_id"] = ("shared" if row.get("funded_by") is None and rng.random() < 0.5
                            else None)
    ids = [o["offer_id"] for o in world["offers"]]
    last_week = [{"customer_id": c["customer_id"], "offer_id": o,
                  "week": WEEK - 1} for c in world["customers"]
                 for o in rng.choice(ids, int(rng.integers(0, min(3, len(ids)) + 1)),
                                     replace=False).tolist()]
    world["history"] = [{**h, "expected_cost": 0.25}  # flights read what their weeks spent
                        for h in world.get("history", []) if h["week"] != WEEK - 1] + [
                            {**h, "expected_cost": 0.25} for h in last_week]
    world = {k: v for k, v in world.items() if k != "history" or v}
    return world, rules


def _checked_with_manifest(scenario, root: Path, result) -> None:
    """``offeropt check`` of ``root / "run"`` with the run's manifest too (its pins verified)."""
    (root / "run" / "manifest.json").write_text(json.dumps(result.manifest, default=str))
    report = check_run(scenario, root / "run", force=True, complete=False)  # tables + manifest
    assert report.ok, report.describe()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n_customers=st.integers(1, 25), n_offers=st.integers(1, 10),
       campaign=st.booleans(), penalty=st.sampled_from([0.0, 0.0, 0.3]), channels=st.booleans())
# a full cheap channel sends a pin to a dear one the contact budget refuses (check once asked
# only whether her cheapest channel fit the budget)
@example(seed=72, n_customers=24, n_offers=1, campaign=False, penalty=0.0, channels=True)
def test_pinned_plan_against_the_exact_model(seed, n_customers, n_offers, campaign, penalty,
                                             channels):
    world, rules = _pinned_world(seed, n_customers, n_offers, campaign, channels)
    captured = []
    real = pins.apply

    def spy(problem, plan):
        captured.append(plan)
        return real(problem, plan)

    with tempfile.TemporaryDirectory(prefix="offeropt-pins-") as tmp, \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(pins, "apply", spy)
        root = Path(tmp)
        scenario = _pinned_scenario(root, world, rules, True, penalty)
        result, problem, _ = run_and_check(scenario, root)
        _checked_with_manifest(scenario, root, result)   # the pins and releases verified
        history = load_inputs(scenario.data).history
    (plan,) = captured
    record = result.manifest["stability"]["pins"]
    assert record["kept"] == plan.kept and record["withheld_as_controls"] == 0
    assert record["pinned"] == plan.kept + sum(record["released"].values())
    for chosen, mask in zip(result.solution.chosen, plan.masks):
        assert not (mask & ~chosen).any()                      # every kept pin is in the plan
    assert problem.feasible(result.solution.chosen, 1e-9, 1e-9)
    objective = result.objective
    if penalty:  # the penalised problem the solver saw (tests/test_stability.py), pins on it
        s = result.manifest["stability"]
        previous = stability.from_history(history, WEEK, problem.offers.n_offers)
        stability.add_bonus(problem, previous, penalty)
        assert s["penalized_upper_bound"] == pytest.approx(
            result.bound - penalty * s["previous_slots"])
        objective = s["penalized_objective"] + penalty * s["previous_slots"]
    for ch, pin in zip(result.solution.chosen.channel if channels else [], plan.channel or []):
        assert (ch[pin >= 0] == pin[pin >= 0]).all()           # pins sent on the pass's channels
    # x = 1 on the pins (each on the channel the pass gave it)
    exact = solve_exact(problem, time_limit_s=60, pinned=plan.masks, pinned_channels=plan.channel)
    slack = 1e-6 * max(1.0, abs(exact.objective))
    assert result.bound >= exact.objective - slack                # the bound with pins is valid
    assert objective <= exact.objective + slack
    if rules["max_offers_per_category"] == 1 and not campaign and not channels:
        # no category can be filled only in part by pins: the rest of the week is solved as it
        # is, polished whole (a partly filled one is relaxed and then repaired, which may lose
        # value: docs/contract.md, "Stable lists")
        assert objective >= 0.99 * exact.objective - slack


def test_affinity_path_keeps_pins_beyond_its_best_few(tmp_path, demo_500):
    """Last week's two offers per customer stay candidates when only the best one would."""
    def run(name: str, keep: int, *extra: str, **rules) -> tuple[Path, dict]:
        path = write_scenario(
            tmp_path / f"{name}.toml", data=str(demo_500), output=name,
            rules={"max_offers_per_customer": 2, "max_offers_per_category": 1,
                   "cooldown_weeks": 0, **rules},
            extra=f"\n[affinity]\ncandidates_per_customer = {keep}\n")
        result = CliRunner().invoke(main, ["run", str(path), "--quiet", *extra])
        assert result.exit_code == 0, result.output
        checked = CliRunner().invoke(main, ["check", str(path)])
        assert checked.exit_code == 0, checked.output
        return tmp_path / name, json.loads((tmp_path / name / "manifest.json").read_text())

    before, _ = run("before", 2)
    pinned, manifest = run("pinned", 1, "--previous-run", str(before), pin=True)
    # one candidate per customer, yet lists of two: the second is a pin beyond the best few
    lists = pl.read_parquet(pinned / "assignments.parquet").group_by("customer_id").len()
    assert lists.get_column("len").max() == 2
    pins_record = manifest["stability"]["pins"]
    assert pins_record["pinned"] > 300 and pins_record["released"] == {}
    assert pins_record["kept"] == pins_record["pinned"]
    assert manifest["stability"]["changed_lists"] == 0


@pytest.mark.parametrize("value", ["1", '"yes"'])
def test_pin_that_is_not_a_boolean_exits_2(tmp_path, value):
    write_world(tmp_path / "data", _world())
    path = write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 1})
    path.write_text(path.read_text().replace("[rules]", f"[rules]\npin = {value}"))
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 2 and "pin" in result.output + (result.stderr or "")
    assert not (tmp_path / "run").exists()


def test_exact_method_keeps_the_pins_too(tmp_path):
    write_world(tmp_path / "data", _world())
    path = write_scenario(tmp_path / "scenario.toml",
                          rules={"max_offers_per_customer": 1, "pin": True},
                          solver={"method": "exact"})
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assignments = pl.read_parquet(tmp_path / "run" / "assignments.parquet")
    assert [offers_of(assignments, c) for c in range(1, 5)] == [{1}, {1}, {1}, {2}]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["upper_bound"] == pytest.approx(3 * 1.0 + 1.1)
    assert manifest["solver"]["status"] == "optimal"


def test_a_group_flight_that_ended_pins_nothing(tmp_path):
    """An offer's flight may be a group flight (``offers.flight_id``): its weeks, not the offer's
    open window, decide whether last week's pairs are pinned (a pin checked on both sides)."""
    world = _world(flight_id="spring")
    world["flights"] = [{"flight_id": "spring", "flight_budget": 100.0,
                         "flight_start_week": WEEK - 3, "flight_end_week": WEEK - 1}]
    world["history"] = [{**h, "expected_cost": 0.5} for h in world["history"]]
    run, manifest = _run(tmp_path / "ended", world, pin=True)
    assert manifest["stability"]["pins"]["pinned"] == 0
    assert all(offers_of(pl.read_parquet(run / "assignments.parquet"), c) == {2}
               for c in range(1, 5))
    world["flights"][0]["flight_end_week"] = WEEK + 1      # still running: the pins hold
    _, manifest = _run(tmp_path / "running", world, pin=True)
    assert manifest["stability"]["pins"]["pinned"] == 3


def test_check_counts_releases_against_the_pins_missing(tmp_path):
    """A manifest releasing more pins than the plan leaves out cannot excuse a dropped one: the
    plan drops customer 1's pin and the manifest calls it released by the budget."""
    run, _ = _run(tmp_path, pin=True)
    assignments = pl.read_parquet(run / "assignments.parquet")
    assignments.with_columns(
        offer_id=pl.when(pl.col("customer_id") == 1).then(pl.lit(2, assignments["offer_id"].dtype))
        .otherwise(pl.col("offer_id"))).write_parquet(run / "assignments.parquet")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stability"]["pins"].update(kept=2, released={"budget": 1})
    (run / "manifest.json").write_text(json.dumps(manifest))
    # the counts agree, but offer 1 has no budget: the release is not justified
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    assert "1 pin(s) missing from the plan without a reason" in report.describe()
    assert "released + withheld_as_controls" not in report.describe()
    manifest["stability"]["pins"].update(released={"budget": 2})
    (run / "manifest.json").write_text(json.dumps(manifest))
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    assert "released + withheld_as_controls 2 vs 1" in report.describe()


def test_pins_beyond_a_group_flights_share_are_released_as_group_flight(tmp_path):
    """A group flight's week share releases pins under its own name, not a funder's."""
    world = _world(flight_id="spring")
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    world["flights"] = [{"flight_id": "spring", "flight_budget": 1.0,     # two pins of 0.5
                         "flight_start_week": WEEK, "flight_end_week": WEEK}]
    _, manifest = _run(tmp_path, world, pin=True)
    pins_record = manifest["stability"]["pins"]
    assert (pins_record["pinned"], pins_record["kept"]) == (3, 2)
    assert pins_record["released"] == {"group_flight": 1}


def test_status_is_not_optimal_when_the_repair_leaves_a_gap(tmp_path):
    """A category her pin fills in part is relaxed in the solve (which certifies that) and then
    repaired: the whole plan's gap is what the status speaks for."""
    world = base_world()
    world["offers"] = [offer(1, "BAKERY"), offer(2, "BAKERY"), offer(3, "BAKERY")]
    world["scores"] = [score(c, o, value=1.0 + o / 10) for c in range(1, 5) for o in (1, 2, 3)]
    world["history"] = [{"customer_id": c, "offer_id": 1, "week": WEEK - 1} for c in (1, 2, 3)]
    _, manifest = _run(tmp_path, world, pin=True, max_offers_per_customer=3,
                       max_offers_per_category=2, cooldown_weeks=0)
    # pins 1.1 + the best other 1.3 for three customers, 1.3 + 1.2 for the fourth; the bound
    # keeps the relaxed category's 1.2 for the pinned three
    assert manifest["objective"] == pytest.approx(3 * 2.4 + 2.5)
    assert manifest["gap"] > 0.1
    assert manifest["solver"]["status"] == "stalled"


def test_explain_names_kept_and_released_pins(tmp_path):
    world = _world(budget=1.0)            # as above: customer 1's pin is released (budget)
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    _run(tmp_path, world, pin=True)
    scenario = load_scenario(tmp_path / "scenario.toml")
    rows = {r["offer_id"]: r for r in explain_customer(scenario, "1").offers}
    assert rows[1]["pinned"] and rows[1]["status"] == "pin_released"
    assert "capacity pass" in rows[1]["why"]
    assert not rows[2]["pinned"] and rows[2]["status"] == "given"
    kept = {r["offer_id"]: r for r in explain_customer(scenario, "2").offers}
    assert kept[1]["status"] == "given" and kept[1]["why"].endswith("pinned")
    # without rules.pin nothing is called a pin
    unpinned = load_scenario(write_scenario(tmp_path / "plain.toml",
                                            rules={"max_offers_per_customer": 1}))
    assert not any(r["pinned"] for r in explain_customer(unpinned, "1", tmp_path / "run").offers)


def _drop(run: Path, customer: int, offer_id: int, reason: str, **released: int) -> None:
    """Take customer's pinned ``offer_id`` out of the plan and let the manifest count it as
    released by ``reason``, so that the counts agree (only the pin's reason can catch it)."""
    path = run / "assignments.parquet"
    pl.read_parquet(path).filter((pl.col("customer_id") != customer)
                                 | (pl.col("offer_id") != offer_id)).write_parquet(path)
    manifest = json.loads((run / "manifest.json").read_text())
    pins_record = manifest["stability"]["pins"]
    pins_record["kept"] -= 1
    pins_record["released"][reason] = pins_record["released"].get(reason, 0) + 1
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_check_catches_a_pin_dropped_that_fit_the_budget(tmp_path):
    world = _world(budget=1.2)            # each pin costs 0.5 x 1.0: two fit, customer 1's not
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    run, manifest = _run(tmp_path, world, pin=True)   # _run checks: the budget release holds
    assert manifest["stability"]["pins"]["released"] == {"budget": 1}
    _drop(run, 2, 1, "budget")            # customer 2's pin fit beside customer 3's
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    text = report.describe()
    assert "pin(s) missing from the plan without a reason" in text
    assert "{'customer_id': 2, 'offer_id': 1}" in text
    assert "released + withheld_as_controls" not in text   # the counts agree


def test_pins_beyond_her_cap_are_released_and_checked(tmp_path):
    world = _world()
    world["history"].append({"customer_id": 1, "offer_id": 2, "week": WEEK - 1})
    run, manifest = _run(tmp_path, world, pin=True, cooldown_weeks=0)   # checked: passes
    pins_record = manifest["stability"]["pins"]
    assert (pins_record["pinned"], pins_record["kept"]) == (4, 3)
    assert pins_record["released"] == {"customer_cap": 1}
    assert offers_of(pl.read_parquet(run / "assignments.parquet"), 1) == {2}  # the better pin
    _drop(run, 1, 2, "customer_cap")      # her list emptied: both pins fit her cap of 1 now
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    assert "{'customer_id': 1, 'offer_id': 1}" in report.describe()


def test_pins_of_a_customer_past_her_window_are_released_and_checked(tmp_path):
    # customer 1 got 3 offers in the window, 1 more than it allows: her room this week is 0
    # (not 2 - 3 wrapped round as an unsigned count), so her pin is released by her cap and
    # check justifies it
    world = _world()
    world["history"] += [{"customer_id": 1, "offer_id": 2, "week": WEEK - w} for w in (2, 3)]
    run, manifest = _run(tmp_path, world, pin=True, cooldown_weeks=0, max_offers_per_window=2,
                         window_weeks=4)   # checked: passes
    assert manifest["stability"]["pins"]["released"] == {"customer_cap": 1}
    assert offers_of(pl.read_parquet(run / "assignments.parquet"), 1) == set()


def test_pins_withheld_as_controls_pass_the_check(tmp_path):
    write_world(tmp_path / "data", _world())
    path = write_scenario(tmp_path / "scenario.toml",
                          rules={"max_offers_per_customer": 1, "pin": True},
                          extra="\n[measurement]\nholdout_share = 0.5\nsalt = \"pins\"\n")
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    withheld = manifest["stability"]["pins"]["withheld_as_controls"]
    assert withheld >= 1
    report = check_run(load_scenario(path), tmp_path / "run")
    assert report.ok, report.describe()
    (tmp_path / "run" / "controls.parquet").unlink(missing_ok=True)
    (tmp_path / "run" / "controls.csv").unlink(missing_ok=True)
    report = check_run(load_scenario(path), tmp_path / "run")   # nothing says they were held
    assert "pin" in report.rules and "controls" in report.rules, report.describe()


def test_affinity_path_releases_by_cap_are_checked(tmp_path, demo_500):
    """On the built-in path (values unknown to the check) a release by the customer's cap holds
    while her kept pin is in the plan, and is caught once that pin is taken out too."""
    def run(name: str, cap: int, *extra: str, **rules) -> Path:
        path = write_scenario(
            tmp_path / f"{name}.toml", data=str(demo_500), output=name,
            rules={"max_offers_per_customer": cap, "max_offers_per_category": 1,
                   "cooldown_weeks": 0, **rules})
        result = CliRunner().invoke(main, ["run", str(path), "--quiet", *extra])
        assert result.exit_code == 0, result.output
        return tmp_path / name

    before = run("before", 2)
    pinned = run("pinned", 1, "--previous-run", str(before), pin=True)
    scenario = load_scenario(tmp_path / "pinned.toml")
    assert check_run(scenario, pinned).ok
    manifest = json.loads((pinned / "manifest.json").read_text())
    assert manifest["stability"]["pins"]["released"].get("customer_cap", 0) > 100
    lists = pl.read_parquet(before / "assignments.parquet")
    two = lists.group_by("customer_id").len().filter(pl.col("len") == 2)
    now = pl.read_parquet(pinned / "assignments.parquet")
    victim = now.join(two.select("customer_id"), on="customer_id").row(0, named=True)
    _drop(pinned, victim["customer_id"], victim["offer_id"], "customer_cap")
    report = check_run(scenario, pinned, force=True)
    assert "pin" in report.rules, report.describe()
    assert "without a reason" in report.describe()
    assert "released + withheld_as_controls" not in report.describe()
