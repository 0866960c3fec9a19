"""Every hard rule of CONTRACT.md, end to end: tiny input folders where the rule changes the plan.

Each test plans the same tiny world without the rule (or with it relaxed) and with it, asserts the
assignments change the way the rule demands, and that ``check_run`` passes the run with the rule.
Worlds use the ``scores`` table (see ``tiny_world.py``) so p_redeem and value are exact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.pipeline import RunResult, run_scenario
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from tests.tiny_world import (
    base_world,
    customers_of,
    offer,
    offers_of,
    pairs,
    score,
    write_scenario,
    write_world,
)

DEFAULT_RULES: dict[str, Any] = {"max_offers_per_customer": 10}


def plan(root: Path, world: dict[str, list[dict[str, Any]]], *, fmt: str = "csv",
         check: bool = True, rules: dict[str, Any] | None = None,
         solver: dict[str, Any] | None = None, week: int = 40,
         overrides: tuple[str, ...] = ()) -> RunResult:
    """Write ``world`` and a scenario under ``root``, run it, and (by default) check the run."""
    write_world(root / "data", world, fmt)
    path = write_scenario(root / "scenario.toml", rules={**DEFAULT_RULES, **(rules or {})},
                          solver=solver, week=week)
    scenario = load_scenario(path, overrides)
    result = run_scenario(scenario)
    if check:
        report = check_run(scenario)
        assert report.ok, report.describe()
    return result


def full(world: dict, offers: list[dict], value: Any = 1.0, p: float = 0.5) -> dict:
    """``world`` with ``offers``, each scored for every customer (``value(c, o)`` if callable)."""
    customers = [r["customer_id"] for r in world["customers"]]
    world["offers"] = offers
    world["scores"] = [score(c, o["offer_id"], p, value(c, o["offer_id"]) if callable(value)
                             else value) for c in customers for o in offers]
    return world


# --------------------------------------------------------------------------------------------------
# eligibility rules


def test_eligibility_window(tmp_path):
    windows = {  # offer -> (start_week, end_week, active in week 40)
        1: (41, None, False), 2: (None, 39, False), 3: (40, 40, True), 4: (None, 45, True),
        5: (35, None, True), 6: (None, None, True), 7: (30, 39, False), 8: (41, 50, False),
    }
    offers = [offer(o) for o in windows]
    free = plan(tmp_path / "free", full(base_world(), offers))
    assert set(free.assignments.get_column("offer_id")) == set(windows)

    windowed = [offer(o, start_week=s, end_week=e) for o, (s, e, _) in windows.items()]
    ruled = plan(tmp_path / "ruled", full(base_world(), windowed))
    active = {o for o, (_, _, on) in windows.items() if on}
    assert set(ruled.assignments.get_column("offer_id")) == active
    assert pairs(ruled.assignments) == {(c, o) for c in range(1, 5) for o in active}
    inactive = len(windows) - len(active)
    assert ruled.manifest["eligibility_audit"]["pairs"]["window"] == 4 * inactive


def test_exclude_is_case_and_space_insensitive_and_covers_offer_products(tmp_path):
    offers = [offer(1, " PORK "), offer(2, None), offer(3, "bakery")]
    world = full(base_world(), offers)
    world["offer_products"] = [{"offer_id": 2, "product_id": 101},   # PORK
                               {"offer_id": 2, "product_id": 103}]   # DAIRY
    free = plan(tmp_path / "free", world)
    assert len(pairs(free.assignments)) == 12

    world["restrictions"] = [
        {"customer_id": 1, "category": "pork", "rule": "exclude"},      # blocks offers 1 and 2
        {"customer_id": 2, "category": " Dairy ", "rule": "exclude"},   # blocks offer 2 only
        {"customer_id": 3, "category": "FROZEN", "rule": "exclude"},    # blocks nothing
        {"customer_id": 4, "category": "BAKERY", "rule": "opt_in"},     # an opt-in blocks nothing
    ]
    ruled = plan(tmp_path / "ruled", world)
    assert offers_of(ruled.assignments, 1) == {3}
    assert offers_of(ruled.assignments, 2) == {1, 3}
    assert offers_of(ruled.assignments, 3) == {1, 2, 3}
    assert offers_of(ruled.assignments, 4) == {1, 2, 3}


def _sensitive_world() -> dict:
    offers = [offer(1, "BAKERY"), offer(2, "Infant Formula "), offer(3, None)]
    world = full(base_world(), offers)
    world["offer_products"] = [{"offer_id": 3, "product_id": 105},   # INFANT FORMULA
                               {"offer_id": 3, "product_id": 106}]   # FAMILY PLANNING
    world["restrictions"] = [
        {"customer_id": 1, "category": "infant formula", "rule": "opt_in"},
        {"customer_id": 2, "category": "INFANT FORMULA", "rule": "opt_in"},
        {"customer_id": 2, "category": " family planning", "rule": "OPT_IN"},
        {"customer_id": 3, "category": "Family Planning", "rule": "opt_in"},
        {"customer_id": 4, "category": "infant formula", "rule": "exclude"},
    ]
    return world


SENSITIVE = ["INFANT FORMULA", "family planning"]


def test_sensitive_opt_in_needs_every_sensitive_category(tmp_path):
    free = plan(tmp_path / "free", _sensitive_world(), rules={"sensitive_categories": []})
    # the exclude row still applies with no sensitive categories
    assert offers_of(free.assignments, 4) == {1}
    assert all(offers_of(free.assignments, c) == {1, 2, 3} for c in (1, 2, 3))

    ruled = plan(tmp_path / "ruled", _sensitive_world(),
                 rules={"sensitive_categories": SENSITIVE, "sensitive_policy": "opt_in"})
    assert offers_of(ruled.assignments, 1) == {1, 2}      # offer 3 also needs family planning
    assert offers_of(ruled.assignments, 2) == {1, 2, 3}   # opted in to both
    assert offers_of(ruled.assignments, 3) == {1}         # offer 3 also needs infant formula
    assert offers_of(ruled.assignments, 4) == {1}


def test_sensitive_policy_exclude_sends_sensitive_offers_to_nobody(tmp_path):
    ruled = plan(tmp_path / "ruled", _sensitive_world(),
                 rules={"sensitive_categories": SENSITIVE, "sensitive_policy": "exclude"})
    assert set(ruled.assignments.get_column("offer_id")) == {1}
    assert ruled.assignments.height == 4
    # one sensitive category is enough to make an offer sensitive
    only_fp = plan(tmp_path / "fp", _sensitive_world(),
                   rules={"sensitive_categories": ["Family Planning"],
                          "sensitive_policy": "exclude"})
    assert customers_of(only_fp.assignments, 3) == set()
    assert customers_of(only_fp.assignments, 2) == {1, 2, 3}


def test_sensitive_policy_allow_keeps_exclude_rows(tmp_path):
    opt_in = plan(tmp_path / "opt_in", _sensitive_world(),
                  rules={"sensitive_categories": SENSITIVE, "sensitive_policy": "opt_in"})
    allow = plan(tmp_path / "allow", _sensitive_world(),
                 rules={"sensitive_categories": SENSITIVE, "sensitive_policy": "allow"})
    assert pairs(allow.assignments) != pairs(opt_in.assignments)
    assert all(offers_of(allow.assignments, c) == {1, 2, 3} for c in (1, 2, 3))
    assert offers_of(allow.assignments, 4) == {1}   # customer 4 excludes infant formula


def test_cooldown(tmp_path):
    world = full(base_world(), [offer(1), offer(2)])
    world["history"] = [
        {"customer_id": 1, "offer_id": 1, "week": 36},   # 40 - 4 <= 36 < 40: cooled down
        {"customer_id": 2, "offer_id": 1, "week": 35},   # before the cooldown: allowed
        {"customer_id": 3, "offer_id": 1, "week": 39},   # cooled down
        {"customer_id": 3, "offer_id": 2, "week": 37},   # cooled down
        {"customer_id": 4, "offer_id": 1, "week": 40},   # the planning week: ignored
        {"customer_id": 4, "offer_id": 2, "week": 41},   # later: ignored
        {"customer_id": 99, "offer_id": 2, "week": 39},  # unknown customer: ignored
        {"customer_id": 2, "offer_id": 77, "week": 39},  # unknown offer: ignored
    ]
    free = plan(tmp_path / "free", world, rules={"cooldown_weeks": 0})
    assert len(pairs(free.assignments)) == 8
    ruled = plan(tmp_path / "ruled", world, rules={"cooldown_weeks": 4})
    assert pairs(ruled.assignments) == {(1, 2), (2, 1), (2, 2), (4, 1), (4, 2)}
    assert ruled.manifest["dropped_rows"]["history_unknown_customer_or_offer"] == 2
    shorter = plan(tmp_path / "short", world, rules={"cooldown_weeks": 2})
    # weeks 38..39 only: (1, 1, 36) and (3, 2, 37) are out of reach
    assert pairs(shorter.assignments) == {(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (4, 1), (4, 2)}


# --------------------------------------------------------------------------------------------------
# per-customer caps


def test_max_offers_per_customer_keeps_the_best(tmp_path):
    world = full(base_world(), [offer(o) for o in range(1, 6)],
                 value=lambda c, o: float(o * 10 + c))
    free = plan(tmp_path / "free", world)
    assert free.assignments.height == 20
    ruled = plan(tmp_path / "ruled", world, rules={"max_offers_per_customer": 2})
    assert ruled.assignments.height == 8
    for c in range(1, 5):
        assert offers_of(ruled.assignments, c) == {4, 5}
    zero = plan(tmp_path / "zero", world, rules={"max_offers_per_customer": 0})
    assert zero.assignments.height == 0


def test_max_offers_per_category_counts_multi_category_offers_in_each(tmp_path):
    values = {1: 5.0, 2: 4.0, 3: 20.0, 4: 6.0, 5: 1.0}
    offers = [offer(1, "PORK"), offer(2, "pork"), offer(3, None), offer(4, "DAIRY"),
              offer(5, "BAKERY")]
    world = full(base_world(2), offers, value=lambda c, o: values[o])
    world["offer_products"] = [{"offer_id": 3, "product_id": 101},
                               {"offer_id": 3, "product_id": 103}]
    free = plan(tmp_path / "free", world)
    assert offers_of(free.assignments, 1) == {1, 2, 3, 4, 5}
    ruled = plan(tmp_path / "ruled", world, rules={"max_offers_per_category": 1})
    # offer 3 uses up both PORK and DAIRY
    for c in (1, 2):
        assert offers_of(ruled.assignments, c) == {3, 5}
    two = plan(tmp_path / "two", world, rules={"max_offers_per_category": 2})
    for c in (1, 2):
        assert offers_of(two.assignments, c) == {1, 3, 4, 5}


def test_frequency_window_counts_history(tmp_path):
    world = full(base_world(), [offer(o) for o in range(1, 6)], value=lambda c, o: float(o))
    world["history"] = [
        {"customer_id": 1, "offer_id": 1, "week": 37},   # window weeks 37..39
        {"customer_id": 1, "offer_id": 2, "week": 38},
        {"customer_id": 2, "offer_id": 1, "week": 36},   # before the window
        {"customer_id": 2, "offer_id": 2, "week": 39},
        {"customer_id": 3, "offer_id": 1, "week": 40},   # the planning week: not counted
        {"customer_id": 4, "offer_id": 1, "week": 38},
        {"customer_id": 4, "offer_id": 2, "week": 39},
        {"customer_id": 4, "offer_id": 3, "week": 39},
        {"customer_id": 4, "offer_id": 4, "week": 39},
        {"customer_id": 3, "offer_id": 99, "week": 39},  # unknown offer: ignored
    ]
    free = plan(tmp_path / "free", world, rules={"max_offers_per_customer": 5})
    assert free.assignments.height == 20
    ruled = plan(tmp_path / "ruled", world, rules={"max_offers_per_customer": 5,
                                                   "max_offers_per_window": 3,
                                                   "window_weeks": 4})
    counts = dict(ruled.assignments.group_by("customer_id").len().iter_rows())
    assert counts == {1: 1, 2: 2, 3: 3}
    assert offers_of(ruled.assignments, 1) == {5}
    assert offers_of(ruled.assignments, 3) == {3, 4, 5}


# --------------------------------------------------------------------------------------------------
# offer caps and budgets


def _budget_world(budget: float | None, **extra: Any) -> dict:
    # one offer, discount 2, p 0.2: every pair costs 0.4; customer c is worth 5 - c
    world = base_world()
    world["offers"] = [offer(1, discount=2.0, budget=budget, **extra)]
    world["scores"] = [score(c, 1, 0.2, 5.0 - c) for c in range(1, 5)]
    return world


@pytest.mark.parametrize("budget_scale, expected", [(1.0, {1, 2}), (0.5, {1}), (2.0, {1, 2, 3, 4}),
                                                    (0.0, set())])
def test_offer_budget_with_budget_scale(tmp_path, budget_scale, expected):
    free = plan(tmp_path / "free", _budget_world(None), rules={"budget_scale": budget_scale})
    assert customers_of(free.assignments, 1) == {1, 2, 3, 4}
    ruled = plan(tmp_path / "ruled", _budget_world(1.0), rules={"budget_scale": budget_scale})
    assert customers_of(ruled.assignments, 1) == expected
    row = ruled.offers_summary.row(0, named=True)
    assert row["budget"] == pytest.approx(1.0 * budget_scale)
    assert row["expected_cost"] == pytest.approx(0.4 * len(expected))
    assert row["expected_cost"] <= 1.0 * budget_scale + 1e-9


def test_max_customers(tmp_path):
    free = plan(tmp_path / "free", _budget_world(None))
    assert customers_of(free.assignments, 1) == {1, 2, 3, 4}
    ruled = plan(tmp_path / "ruled", _budget_world(None, max_customers=2))
    assert customers_of(ruled.assignments, 1) == {1, 2}
    assert ruled.offers_summary.row(0, named=True)["customers"] == 2
    zero = plan(tmp_path / "zero", _budget_world(None, max_customers=0))
    assert zero.assignments.height == 0


def test_global_budget_is_never_scaled(tmp_path):
    world = base_world()
    world["offers"] = [offer(1, discount=2.0), offer(2, "DAIRY", discount=2.0)]
    world["scores"] = [score(c, o, 0.2, 10.0 - c - o) for c in range(1, 5) for o in (1, 2)]
    free = plan(tmp_path / "free", world, rules={"budget_scale": 10.0})
    assert free.assignments.height == 8
    for scale in (1.0, 10.0, 0.1):
        ruled = plan(tmp_path / f"ruled{scale}", world,
                     rules={"global_budget": 1.0, "budget_scale": scale})
        # 0.4 per pair: at most two pairs under 1.0, the two best (customer 1's)
        assert pairs(ruled.assignments) == {(1, 1), (1, 2)}, scale
        assert ruled.offers_summary.get_column("expected_cost").sum() <= 1.0 + 1e-9


def test_global_budget_none_override_switches_the_cap_off(tmp_path):
    world = full(base_world(), [offer(1, discount=2.0)], p=0.2)
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "scenario.toml", rules={"global_budget": 1.0})
    capped = run_scenario(load_scenario(path), write=False)
    assert capped.assignments.height == 2
    scenario = load_scenario(path, ["rules.global_budget=none"])
    assert scenario.rules.global_budget is None
    assert run_scenario(scenario, write=False).assignments.height == 4


def _target_world(min_customers: int | None) -> dict:
    world = base_world()
    world["offers"] = [offer(1), offer(2, "DAIRY", min_customers=min_customers),
                       offer(3, "SNACKS", min_customers=None if min_customers is None else 3)]
    world["scores"] = ([score(c, 1, 0.5, 5.0) for c in range(1, 5)]
                       + [score(c, 2, 0.5, 1.0) for c in range(1, 5)]
                       + [score(1, 3, 0.5, 0.5)])   # offer 3 can reach one customer only
    return world


def test_min_customers_target_met_where_the_rules_allow(tmp_path):
    free = plan(tmp_path / "free", _target_world(None), rules={"max_offers_per_customer": 1})
    assert customers_of(free.assignments, 1) == {1, 2, 3, 4}
    assert free.manifest["min_customers_shortfalls"] == []

    ruled = plan(tmp_path / "ruled", _target_world(3), rules={"max_offers_per_customer": 1})
    # offer 2 needs three of the four customers: the cap of 1 makes them give up offer 1
    assert len(customers_of(ruled.assignments, 2)) >= 3
    summary = {r["offer_id"]: r for r in ruled.offers_summary.iter_rows(named=True)}
    assert summary[2]["shortfall"] == 0
    assert 2 not in {r["offer_id"] for r in ruled.manifest["min_customers_shortfalls"]}


def test_min_customers_shortfall_reported_when_impossible(tmp_path):
    ruled = plan(tmp_path / "ruled", _target_world(3), rules={"max_offers_per_customer": 10})
    # offer 3 is scored for customer 1 only: a shortfall of 2 (3 if the plan leaves it out)
    summary = {r["offer_id"]: r for r in ruled.offers_summary.iter_rows(named=True)}
    assert summary[3]["customers"] <= 1
    assert summary[3]["min_customers"] == 3
    assert summary[3]["shortfall"] == 3 - summary[3]["customers"]
    assert summary[1]["shortfall"] == 0 and summary[2]["shortfall"] == 0
    shortfalls = {r["offer_id"]: r for r in ruled.manifest["min_customers_shortfalls"]}
    assert set(shortfalls) == {3}
    assert shortfalls[3] == {"offer_id": 3, "min_customers": 3,
                             "customers": summary[3]["customers"],
                             "shortfall": summary[3]["shortfall"]}
    on_disk = (tmp_path / "ruled" / "run" / "manifest.json").read_text()
    assert '"min_customers_shortfalls"' in on_disk and '"shortfall": ' in on_disk


# --------------------------------------------------------------------------------------------------
# scoring paths, IDs, ranks


def test_scores_path_uses_only_listed_pairs_and_exact_values(tmp_path):
    world = base_world()
    world["offers"] = [offer(1), offer(2, "DAIRY", discount=3.0), offer(3, "SNACKS")]
    listed = {(1, 1): (0.123456789, 3.14159265358979), (1, 2): (0.987654321, 2.718281828459045),
              (2, 3): (1.0, 0.000123), (3, 2): (0.0, 7.5), (4, 1): (0.3333333333333333, 1e6)}
    world["scores"] = [score(c, o, p, v) for (c, o), (p, v) in listed.items()]
    result = plan(tmp_path, world)
    assert pairs(result.assignments) == set(listed)
    for row in result.assignments.iter_rows(named=True):
        p, v = listed[(row["customer_id"], row["offer_id"])]
        assert row["p_redeem"] == p
        assert row["score"] == v
        discount = {1: 1.0, 2: 3.0, 3: 1.0}[row["offer_id"]]
        assert row["expected_cost"] == pytest.approx(p * discount, rel=1e-12)
    assert result.objective == pytest.approx(sum(v for _, v in listed.values()))
    on_disk = pl.read_parquet(tmp_path / "run" / "assignments.parquet")
    assert on_disk.equals(result.assignments)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    from optimizer.apps.synthetic import write_demo_data

    folder = tmp_path_factory.mktemp("demo") / "data"
    write_demo_data(folder, customers=300, offers=20, seed=1)
    return folder


def _demo_scenario(root: Path, demo: Path, output: str = "run", **solver: Any) -> Path:
    return write_scenario(root / "scenario.toml", data=str(demo), output=output,
                          rules={"max_offers_per_customer": 3, "max_offers_per_category": 1,
                                 "cooldown_weeks": 4, "max_offers_per_window": 6,
                                 "window_weeks": 4, "global_budget": 200.0,
                                 "sensitive_categories": ["INFANT FORMULA", "FAMILY PLANNING"]},
                          solver=solver or None)


def test_affinity_path_runs_and_passes_check(tmp_path, demo_data):
    assert not (demo_data / "scores.parquet").exists()
    scenario = load_scenario(_demo_scenario(tmp_path, demo_data))
    result = run_scenario(scenario)
    assert result.assignments.height > 0
    assert result.manifest["lifetime_value"]["model"] != "none (scores table)"
    report = check_run(scenario)
    assert report.ok, report.describe()
    assert report.assignments == result.assignments.height


def test_determinism_byte_identical_outputs(tmp_path, demo_data):
    files = ["assignments.parquet", "assignments.csv", "offers_summary.parquet",
             "offers_summary.csv"]
    out = []
    for tag in ("one", "two"):
        scenario = load_scenario(_demo_scenario(tmp_path / tag, demo_data))
        run_scenario(scenario)
        out.append({f: (scenario.output / f).read_bytes() for f in files})
    assert out[0] == out[1]


def test_chunk_size_does_not_change_the_plan(tmp_path, tmp_path_factory):
    from optimizer.apps.synthetic import write_demo_data

    data = tmp_path / "data"
    write_demo_data(data, customers=100, offers=15, seed=3)
    default = run_scenario(load_scenario(_demo_scenario(tmp_path / "a", data)), write=False)
    chunked = run_scenario(load_scenario(_demo_scenario(tmp_path / "b", data, chunk_size=7)),
                           write=False)
    assert default.assignments.height > 0
    assert default.assignments.equals(chunked.assignments)
    assert default.offers_summary.drop("shadow_price").equals(
        chunked.offers_summary.drop("shadow_price"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_integer_ids_stay_integers(tmp_path, fmt):
    result = plan(tmp_path, full(base_world(), [offer(1), offer(2, "DAIRY")]), fmt=fmt)
    on_disk = pl.read_parquet(tmp_path / "run" / "assignments.parquet")
    assert on_disk.schema["customer_id"] == pl.Int64
    assert on_disk.schema["offer_id"] == pl.Int64
    assert pairs(on_disk) == {(c, o) for c in range(1, 5) for o in (1, 2)}
    summary = pl.read_parquet(tmp_path / "run" / "offers_summary.parquet")
    assert summary.schema["offer_id"] == pl.Int64
    assert result.assignments.schema["customer_id"] == pl.Int64


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_string_ids_stay_strings(tmp_path, fmt):
    customers = ["C1", "007", "c-3", "42x"]   # "007" is text: leading zeros are kept
    world = {
        "customers": [{"customer_id": c} for c in customers],
        "products": [{"product_id": "P101", "category": "PORK"},
                     {"product_id": "0102", "category": "DAIRY"}],
        "offers": [offer("O1", "PORK"), offer("00O2", None)],
        "offer_products": [{"offer_id": "00O2", "product_id": "0102"}],
        "transactions": [{"customer_id": "C1", "product_id": "P101", "week": 39,
                          "sales_value": 1.0}],
        "scores": [score(c, o) for c in customers for o in ("O1", "00O2")],
        "restrictions": [{"customer_id": "007", "category": "pork", "rule": "exclude"}],
    }
    result = plan(tmp_path, world, fmt=fmt)
    on_disk = pl.read_parquet(tmp_path / "run" / "assignments.parquet")
    assert on_disk.schema["customer_id"] == pl.Utf8
    assert on_disk.schema["offer_id"] == pl.Utf8
    assert pairs(on_disk) == {(c, o) for c in customers for o in ("O1", "00O2")} - {("007", "O1")}
    assert result.offers_summary.schema["offer_id"] == pl.Utf8
    csv_text = (tmp_path / "run" / "assignments.csv").read_text()
    assert "007," in csv_text


def test_text_ids_are_trimmed_consistently(tmp_path):
    world = {
        "customers": [{"customer_id": "C1 "}, {"customer_id": " C2"}],
        "products": [{"product_id": "P1", "category": "PORK"}],
        "offers": [offer(" O1", "PORK"), offer("O2", "DAIRY")],
        "transactions": [{"customer_id": "C1", "product_id": "P1 ", "week": 39,
                          "sales_value": 1.0}],
        "scores": [score(c, o) for c in ("C1", "C2 ") for o in ("O1 ", " O2")],
        "restrictions": [{"customer_id": " C2 ", "category": "pork", "rule": "exclude"}],
    }
    result = plan(tmp_path, world)
    assert pairs(result.assignments) == {("C1", "O1"), ("C1", "O2"), ("C2", "O2")}
    assert result.manifest["dropped_rows"]["transactions_unknown_product"] == 0


def test_rank_is_one_to_n_per_customer_by_score(tmp_path):
    world = full(base_world(), [offer(o) for o in range(1, 6)],
                 value=lambda c, o: float((o * 7 + c * 3) % 11 + 1))
    result = plan(tmp_path, world, rules={"max_offers_per_customer": 4})
    for _, group in result.assignments.group_by("customer_id"):
        group = group.sort("rank")
        assert group.get_column("rank").to_list() == list(range(1, group.height + 1))
        scores = group.get_column("score").to_list()
        assert scores == sorted(scores, reverse=True)


# --------------------------------------------------------------------------------------------------
# the command line


def test_cli_set_override_changes_the_run(tmp_path):
    write_world(tmp_path / "data", full(base_world(), [offer(1), offer(2, "DAIRY"), offer(3)],
                                        value=lambda c, o: float(o)))
    path = write_scenario(tmp_path / "scenario.toml", output="run_a")
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(path), "--quiet"])
    assert first.exit_code == 0, first.output
    run_b = str(tmp_path / "run_b")
    second = runner.invoke(main, ["run", str(path), "--quiet", "--set",
                                  "rules.max_offers_per_customer=1", "--set", f"output={run_b!r}"])
    assert second.exit_code == 0, second.output
    a = pl.read_parquet(tmp_path / "run_a" / "assignments.parquet")
    b = pl.read_parquet(tmp_path / "run_b" / "assignments.parquet")
    assert a.height == 12
    assert b.height == 4 and set(b.get_column("offer_id")) == {3}
    manifest = (tmp_path / "run_b" / "manifest.json").read_text()
    assert '"max_offers_per_customer": 1' in manifest
    checked = runner.invoke(main, ["check", str(path), str(tmp_path / "run_b"), "--set",
                                   "rules.max_offers_per_customer=1"])
    assert checked.exit_code == 0, checked.output
    # checked against another cap, the run breaks it: exit 1, naming the setting too ...
    refused = runner.invoke(main, ["check", str(path), str(tmp_path / "run_a"), "--set",
                                   "rules.max_offers_per_customer=1"])
    assert refused.exit_code == 1, refused.output
    assert "[max_offers_per_customer]" in refused.stdout
    assert "rules.max_offers_per_customer: the run had 5, here 1" in refused.output
    # ... and with --force the unrestricted run breaks the cap of 1
    bad = runner.invoke(main, ["check", str(path), str(tmp_path / "run_a"), "--set",
                               "rules.max_offers_per_customer=1", "--force"])
    assert bad.exit_code == 1
