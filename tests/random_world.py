"""Random small input folders with every rule switched on, for the property tests.

:func:`random_world` draws, from one integer seed and a few sizes, a whole input folder (customers,
products, offers with windows / budgets / min and max customers, ``offer_products`` with
multi-category and category-less offers, ``restrictions`` with ``exclude`` and ``opt_in`` rows in
odd spellings, ``history`` for the cooldown and the frequency window, and a ``scores`` table so
values are controlled) and a scenario with every cap, a global budget, ``budget_scale`` and
sensitive categories. :func:`run_with_problem` runs the real pipeline and captures the
:class:`~optimizer.model.problem.AssignmentProblem` it handed to the solver, so a test can solve the very
same instance exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.tiny_world import WEEK, write_scenario, write_world

CATEGORIES = ["PORK", "BAKERY", "DAIRY", "SNACKS", "INFANT FORMULA", "FAMILY PLANNING", "BEERS"]
SENSITIVE = ["Infant Formula", "family planning "]  # spelled unlike the products on purpose


def _spell(rng: np.random.Generator, category: str) -> str:
    """The same category as a planner might type it: case and spaces vary."""
    return [category, category.lower(), f" {category.title()} "][int(rng.integers(0, 3))]


def random_world(seed: int, n_customers: int, n_offers: int, string_ids: bool = False,
                 targets: bool = True, campaign: bool = False, channels: bool = False
                 ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """``(world, rules)``: the tables of a random instance and its scenario's ``[rules]``.
    ``campaign``: add the always-on campaign rules too (:func:`add_campaign`); ``channels``:
    channels and consent (:func:`add_channels`)."""
    rng = np.random.default_rng(seed)
    cid = (lambda i: f"C{i:03d}") if string_ids else (lambda i: i)
    oid = (lambda j: f"O{j:02d}") if string_ids else (lambda j: 100 + j)
    customers = [{"customer_id": cid(i), "segment": "a"} for i in range(n_customers)]
    products = [{"product_id": 10 * k + r, "category": name}
                for k, name in enumerate(CATEGORIES) for r in range(2)]
    offers, offer_products = [], []
    for j in range(n_offers):
        k = int(rng.integers(0, len(CATEGORIES)))
        no_category = rng.random() < 0.15
        row: dict[str, Any] = {
            "offer_id": oid(j),
            "category": None if no_category else _spell(rng, CATEGORIES[k]),
            "discount": round(float(rng.uniform(0.5, 3.0)), 3),
            "budget": (None if rng.random() < 0.3
                       else round(float(rng.uniform(0.05, 1.5) * n_customers / n_offers), 3)),
            "max_customers": None, "min_customers": None, "start_week": None, "end_week": None,
        }
        if rng.random() < 0.25:
            row["max_customers"] = int(rng.integers(0, max(1, n_customers // 2) + 1))
        if rng.random() < 0.2 and targets:
            top = row["max_customers"] if row["max_customers"] is not None else n_customers
            row["min_customers"] = int(rng.integers(0, top + 1))
        if rng.random() < 0.2:
            row["start_week"] = int(rng.integers(WEEK - 2, WEEK + 2))
        if rng.random() < 0.2:
            low = row["start_week"] if row["start_week"] is not None else WEEK - 2
            row["end_week"] = int(rng.integers(low, WEEK + 2))
        offers.append(row)
        if no_category or rng.random() < 0.3:  # products: one or two more categories
            for other in rng.choice(len(CATEGORIES), int(rng.integers(1, 3)), replace=False):
                offer_products.append({"offer_id": oid(j),
                                       "product_id": 10 * int(other) + int(rng.integers(0, 2))})
    restrictions = []
    for i in range(n_customers):
        if rng.random() < 0.25:
            restrictions.append({"customer_id": cid(i), "rule": "exclude",
                                 "category": _spell(rng, CATEGORIES[int(rng.integers(0, 5))])})
        for sensitive in ("INFANT FORMULA", "FAMILY PLANNING"):
            if rng.random() < 0.4:
                restrictions.append({"customer_id": cid(i), "rule": "opt_in",
                                     "category": _spell(rng, sensitive)})
    history = []
    for i in range(n_customers):
        for _ in range(int(rng.integers(0, 4))):
            history.append({"customer_id": cid(i), "offer_id": oid(int(rng.integers(0, n_offers))),
                            "week": int(rng.integers(WEEK - 7, WEEK + 2))})
    if n_customers and rng.random() < 0.3:  # rows naming a gone offer are ignored
        history.append({"customer_id": cid(0), "offer_id": oid(n_offers + 5), "week": WEEK - 1})
    scores = []
    for i in range(n_customers):
        for j in range(n_offers):
            if rng.random() < 0.6:
                p = float(rng.uniform(0.0, 0.6))
                value = 0.0 if rng.random() < 0.05 else p * float(rng.uniform(0.2, 5.0))
                scores.append({"customer_id": cid(i), "offer_id": oid(j),
                               "p_redeem": round(p, 6), "value": round(value, 6)})
    world = {
        "customers": customers, "products": products, "offers": offers,
        "transactions": [{"customer_id": cid(0), "product_id": 10, "week": WEEK - 1,
                          "sales_value": 2.5}],
        "scores": scores,
    }
    if offer_products:
        world["offer_products"] = offer_products
    if restrictions:
        world["restrictions"] = restrictions
    if history:
        world["history"] = history
    per_customer = int(rng.integers(0, 5))
    rules: dict[str, Any] = {
        "max_offers_per_customer": per_customer,
        "max_offers_per_category": int(rng.integers(1, 3)),
        "cooldown_weeks": int(rng.integers(0, 5)),
        "max_offers_per_window": int(rng.integers(0, 7)),
        "window_weeks": int(rng.integers(1, 6)),
        "global_budget": round(float(rng.uniform(0.1, 1.0) * n_customers), 3),
        "budget_scale": float(rng.choice([0.0, 0.5, 1.0, 1.0, 1.5])),
        "sensitive_categories": SENSITIVE,
        "sensitive_policy": str(rng.choice(["opt_in", "opt_in", "opt_in", "exclude", "allow"])),
        "excluded_categories": ([_spell(rng, "BEERS")] if rng.random() < 0.3 else []),
    }
    if campaign:
        add_campaign(world, rules, seed, oid)
    if channels:
        add_channels(world, rules, seed, cid)
    return world, rules


def add_channels(world: dict[str, list[dict[str, Any]]], rules: dict[str, Any], seed: int,
                 cid: Any) -> None:
    """One to three channels (capacities small enough to bind, costs per contact up to about
    a pair's value, names spelled with spaces), random consent (some customers none) and
    sometimes a contact budget, from their own generator."""
    rng = np.random.default_rng(seed + 2_000_003)
    n_customers = len(world["customers"])
    n = int(rng.integers(1, 4))
    world["channels"] = [
        {"channel_id": [" email", "sms ", "app"][k],
         "capacity": None if rng.random() < 0.4 else int(rng.integers(0, n_customers + 2)),
         "cost_per_contact": None if rng.random() < 0.2 else round(float(rng.uniform(0, 0.3)), 3)}
        for k in range(n)]
    world["customer_channels"] = [
        {"customer_id": cid(i), "channel_id": ["email", " sms", "app "][k]}
        for i in range(n_customers) for k in range(n) if rng.random() < 0.6]
    if rng.random() < 0.5:
        rules["contact_budget"] = round(float(rng.uniform(0.0, 0.1) * n_customers), 3)


def add_campaign(world: dict[str, list[dict[str, Any]]], rules: dict[str, Any], seed: int,
                 oid: Any) -> None:
    """Offer groups, funders (``offers.funded_by`` and a ``funders`` table) and a rule on an
    ``age_band`` column, drawn from their own generator (the other tables stay as without)."""
    rng = np.random.default_rng(seed + 1_000_003)
    offers, n_customers = world["offers"], len(world["customers"])
    for row in offers:
        row["funded_by"] = [None, "brand_a", "brand_b", " retailer"][int(rng.integers(0, 4))]
    world["funders"] = [
        {"funded_by": "brand_a", "budget": round(float(rng.uniform(0.0, 0.08) * n_customers), 3),
         "min_redemptions": None},
        {"funded_by": "retailer ", "budget": round(float(rng.uniform(0.02, 0.15) * n_customers), 3),
         "min_redemptions": 2.0},
        {"funded_by": "brand_b", "budget": None, "min_redemptions": None}]
    groups = []
    for g in range(int(rng.integers(1, 3))):
        members = rng.choice(len(offers), min(len(offers), int(rng.integers(1, 5))), replace=False)
        limit = int(rng.integers(0, 3))
        groups += [{"group_id": f"family {g}", "offer_id": oid(int(j)), "max_per_customer": limit}
                   for j in members]
    world["offer_groups"] = groups
    for row in world["customers"]:
        row["age_band"] = None if rng.random() < 0.1 else int(rng.integers(16, 60))
    rules["eligibility"] = [{"offer_category": _spell(rng, CATEGORIES[int(rng.integers(0, 4))]),
                             "require": "age_band >= 21"}]


def write_random_world(root: Path, seed: int, n_customers: int, n_offers: int,
                       string_ids: bool = False, fmt: str = "csv", targets: bool = True,
                       campaign: bool = False, channels: bool = False, **solver: Any) -> Path:
    """Write a random world under ``root`` (``data/`` and ``scenario.toml``); the scenario path.
    ``targets=False``: no ``min_customers`` targets (the exact model does not steer for them)."""
    world, rules = random_world(seed, n_customers, n_offers, string_ids, targets, campaign,
                                channels)
    headers = {"scores": ["customer_id", "offer_id", "p_redeem", "value"],
               "customer_channels": ["customer_id", "channel_id"]}
    write_world(root / "data", world, fmt=fmt, headers=headers)
    return write_scenario(root / "scenario.toml", rules=rules,
                          solver={"seed": seed % 1000, **solver} if solver else {"seed": seed % 1000})


def run_with_problem(scenario, **kwargs):
    """``run_scenario(scenario, **kwargs)`` and the problem the pipeline gave its solver (the real
    solver is called; ``optimizer.apps.solve_stage.solve`` is wrapped for the call only)."""
    import pytest

    import optimizer.apps.pipeline as pipeline
    import optimizer.apps.solve_stage as stage

    captured = []
    real = stage.solve

    def spy(problem, settings, **kw):
        captured.append(problem)
        return real(problem, settings, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "solve", spy)
        result = pipeline.run_scenario(scenario, **kwargs)
    assert len(captured) == 1
    return result, captured[0]


def run_and_check(scenario, root: Path):
    """:func:`run_with_problem` without writing the run folder, then its two tables written to
    ``root / "run"`` and ``offeropt check``'s verdict on them (asserted ok); returns the result,
    the problem and the check report."""
    from optimizer.check.verify import check_run

    result, problem = run_with_problem(scenario, write=False)
    run = root / "run"
    run.mkdir()
    result.assignments.write_parquet(run / "assignments.parquet")
    result.offers_summary.write_parquet(run / "offers_summary.parquet")
    report = check_run(scenario, run, complete=False)  # the two tables alone
    assert report.ok, report.describe()
    return result, problem, report
