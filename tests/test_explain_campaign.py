"""``offeropt explain`` under the always-on campaign rules: its reduced values carry the prices of
funders' budgets, group flights' shares and channels (capacities, contact budget, contact
costs) exactly as the solver priced the pairs, and it names the offer group that had no room
(``group_cap``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimizer.apps.explain import explain_customer
from optimizer.apps.pipeline import run_scenario
from optimizer.core.config import load_scenario
from optimizer.solve.lagrangian.channels import priced_block
from tests.random_world import random_world, run_with_problem
from tests.tiny_world import WEEK, base_world, offer, score, write_scenario, write_world


def _campaign_world(seed: int, n_customers: int, n_offers: int
                    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """A random world with offer groups, funders, channels and a group flight over the offers
    without a funder."""
    world, rules = random_world(seed, n_customers, n_offers, targets=False, campaign=True,
                                channels=True)
    rng = np.random.default_rng(seed + 11)
    world["flights"] = [{"flight_id": "spring", "flight_budget": round(
        float(rng.uniform(0.02, 0.1) * n_customers), 3), "flight_start_week": WEEK,
        "flight_end_week": WEEK + 1}]
    for row in world["offers"]:
        if row.get("funded_by") is None:
            row["flight_id"] = "spring"
    return world, rules


def _explained(root: Path, seed: int, n_customers: int = 30, n_offers: int = 8
               ) -> tuple[list[tuple[Any, dict[str, Any], float]], Any]:
    """Run the world and explain its first customers: (customer index, row, the solver's
    reduced value of the pair at its final prices or None for a non-candidate) per offer."""
    world, rules = _campaign_world(seed, n_customers, n_offers)
    write_world(root / "data", world, headers={"scores": ["customer_id", "offer_id", "p_redeem",
                                                          "value"],
                                               "customer_channels": ["customer_id",
                                                                     "channel_id"]})
    scenario = load_scenario(write_scenario(root / "scenario.toml", rules=rules))
    result, problem = run_with_problem(scenario)
    prices = result.solution.prices
    solver: dict[tuple[int, int], float] = {}
    for block in problem.blocks:
        priced = priced_block(problem.channels, block, prices) if problem.channels else block
        reduced = prices.reduced_values(priced, with_target=False)
        for i, c in enumerate(block.customers):
            for s in np.flatnonzero(block.offer[i] >= 0):
                solver[(int(c), int(block.offer[i, s]))] = float(reduced[i, s])
    out = []
    ids = [r["customer_id"] for r in world["customers"]]
    for c in range(min(10, n_customers)):
        explanation = explain_customer(scenario, str(ids[c]))
        assert not explanation.warnings
        index = {str(r["offer_id"]): j for j, r in enumerate(world["offers"])}
        for row in explanation.offers:
            out.append((c, row, solver.get((c, index[str(row["offer_id"])]))))
    return out, problem


def test_reduced_values_are_the_solvers(tmp_path):
    """Every candidate's reduced value in ``explain`` is the solver's at its final prices (funder
    and group flight prices, channel charges included), over worlds where they are not 0."""
    shared = charged = compared = 0
    for seed in (1, 2, 3, 4):
        rows, _ = _explained(tmp_path / str(seed), seed)
        for _, row, solver in rows:
            if solver is None:
                continue
            compared += 1
            shared += row["shared_price"] > 0
            charged += row["channel_charge"] > 0
            assert row["reduced_value"] == pytest.approx(solver, rel=1e-9, abs=1e-9), row
            if row["status"] == "priced_out":
                assert row["reduced_value"] <= 1e-9
                if row["shared_price"]:
                    assert f"+ {row['shared_price']:.4f}" in row["why"]
                if row["channel_charge"]:
                    assert f"- {row['channel_charge']:.4f} (channel)" in row["why"]
    assert compared > 20 and shared > 0 and charged > 0, (compared, shared, charged)


def _tiny(root: Path, offers: list[dict[str, Any]], values: dict[int, list[float]],
          rules: dict[str, Any] | None = None, **tables: list[dict[str, Any]]) -> Any:
    """Four customers, ``offers`` scored ``values[offer_id][customer - 1]`` (p_redeem 0.5), the
    extra ``tables``; run; the scenario."""
    world = base_world(4)
    world["offers"] = offers
    world["scores"] = [score(c, o, 0.5, v[c - 1]) for o, v in values.items()
                       for c in range(1, 5)]
    world.update(tables)
    write_world(root / "data", world)
    scenario = load_scenario(write_scenario(root / "scenario.toml", rules={
        "max_offers_per_customer": 3, "cooldown_weeks": 0, **(rules or {})}))
    run_scenario(scenario)
    return scenario


def _rows(scenario: Any, customer: int) -> dict[int, dict[str, Any]]:
    return {int(r["offer_id"]): r for r in explain_customer(scenario, str(customer)).offers}


def test_group_cap_names_the_full_group(tmp_path):
    offers = [offer(1, "BAKERY"), offer(2, "DAIRY"), offer(3, "SNACKS")]
    groups = ([{"group_id": "family", "offer_id": o, "max_per_customer": 1} for o in (1, 2)]
              + [{"group_id": "never", "offer_id": 3, "max_per_customer": 0}])
    scenario = _tiny(tmp_path, offers, {1: [3.0] * 4, 2: [2.0] * 4, 3: [1.0] * 4},
                     offer_groups=groups)
    rows = _rows(scenario, 1)
    assert rows[1]["status"] == "given"
    assert rows[2]["status"] == "group_cap", rows[2]
    assert "group family full (1 per customer) with offer 1" in rows[2]["why"]
    assert rows[3]["status"] in ("group_cap", "not_candidate"), rows[3]
    if rows[3]["status"] == "group_cap":
        assert "group never allows 0" in rows[3]["why"]
    # without the groups she gets all three
    free = _tiny(tmp_path / "free", offers, {1: [3.0] * 4, 2: [2.0] * 4, 3: [1.0] * 4})
    assert {r["status"] for r in _rows(free, 1).values()} == {"given"}


@pytest.mark.parametrize("shared", ["funder", "group_flight"])
def test_priced_out_by_a_shared_budget(shared, tmp_path):
    """Offer 1's funder (or group flight) affords two of the four customers: the two worth least
    are priced out by its price, which explain shows in the reduced value."""
    if shared == "funder":
        offers = [offer(1, "BAKERY", funded_by="brand"), offer(2, "DAIRY")]
        tables = {"funders": [{"funded_by": "brand", "budget": 1.0, "min_redemptions": None}]}
    else:
        offers = [offer(1, "BAKERY", flight_id="spring"), offer(2, "DAIRY")]
        tables = {"flights": [{"flight_id": "spring", "flight_budget": 1.0,
                               "flight_start_week": WEEK, "flight_end_week": WEEK}]}
    scenario = _tiny(tmp_path, offers, {1: [2.0, 3.0, 4.0, 5.0], 2: [1.0] * 4}, **tables)
    row = _rows(scenario, 1)[1]
    assert row["status"] == "priced_out", row
    assert row["shared_price"] > 0 and row["budget_price"] == 0
    assert row["reduced_value"] == pytest.approx(2.0 - row["shared_price"] * 0.5)
    assert f"+ {row['shared_price']:.4f}" in row["why"]
    assert _rows(scenario, 4)[1]["status"] == "given"


def test_priced_out_by_a_channel(tmp_path):
    """A contact on the one channel costs 2.5: the customer worth 2 is priced out by that
    charge (her reduced value without it would be positive)."""
    offers = [offer(1, "BAKERY")]
    scenario = _tiny(tmp_path, offers, {1: [2.0, 3.0, 4.0, 5.0]}, rules={
        "max_offers_per_customer": 1},
        channels=[{"channel_id": "email", "capacity": None, "cost_per_contact": 2.5}],
        customer_channels=[{"customer_id": c, "channel_id": "email"} for c in range(1, 5)])
    row = _rows(scenario, 1)[1]
    assert row["status"] == "priced_out", row
    assert row["channel_charge"] >= 2.5
    assert row["reduced_value"] == pytest.approx(2.0 - row["channel_charge"])
    assert f"- {row['channel_charge']:.4f} (channel)" in row["why"]
    assert _rows(scenario, 4)[1]["status"] == "given"
