"""Why one customer got her offers and not the next-best ones (``offeropt explain``).

Re-runs the cheap steps for one customer (load, features and scoring, eligibility) and reads the
run's assignments and dual prices (manifest ``dual_prices``); it never solves. Every offer gets a
status, with the numbers behind it:

- ``given``: in the plan, with its rank.
- ``ineligible``: a rule forbids the pair (``window``, ``exclude``, ``sensitive``, ``cooldown``).
- ``no_value``: its score is 0 (nothing to gain).
- ``not_candidate``: eligible, but not among her ``affinity.candidates_per_customer`` best scores.
- ``priced_out``: its reduced value ``score - (budget price + global price) * expected_cost -
  count price`` is at or below 0: the offer's budget (or ``max_customers``, or the global budget)
  is worth more spent on other customers.
- ``category_cap``: a given offer in the same category (``max_offers_per_category``) is better.
- ``customer_cap`` / ``window_cap``: her per-customer cap (or her frequency-window room) is full
  of offers with higher reduced values.
- ``repair``: it beats the threshold under the prices, but the final repair step, which keeps
  budgets and caps exact, left it out (typically its budget filled up with other customers).

The solver's steering bonus for offers short of ``min_customers`` is not saved in the manifest,
so such offers can look ``priced_out`` although the plan gave them out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.core.config import Scenario
from optimizer.core.errors import OptimizerError
from optimizer.core.predicate import read_columns
from optimizer.io.validate import Inputs, load_inputs
from optimizer.model.eligibility import compile_rules, customer_caps
from optimizer.model.problem import block_from_candidates, offer_data
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring

EPS = 1e-12


@dataclass
class Explanation:
    """The explanation of one customer's plan. ``offers``: one row per offer (see the module
    docstring for ``status``), given ones first by rank, then by score."""

    customer_id: Any
    run_dir: str
    cap: int
    max_offers_per_customer: int
    global_price: float
    offers: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data (for ``--json``)."""
        return {"customer_id": self.customer_id, "run_dir": self.run_dir, "cap": self.cap,
                "max_offers_per_customer": self.max_offers_per_customer,
                "global_price": self.global_price, "offers": self.offers,
                "warnings": self.warnings}


def _customer_index(inputs: Inputs, customer_id: str) -> int:
    ids = inputs.customers.get_column("customer_id").cast(pl.Utf8)
    hits = np.flatnonzero((ids == str(customer_id).strip()).to_numpy())
    if hits.size == 0:
        raise OptimizerError(f"customer {customer_id!r} is not in the customers table")
    return int(hits[0])


def _scores(inputs: Inputs, scenario: Scenario, cats: Any, c: int) -> tuple[np.ndarray, np.ndarray]:
    """p_redeem and value of every offer for customer index ``c`` (0 where not scored)."""
    n = inputs.n_offers
    if inputs.scores is None:
        model = fit_scoring(inputs, scenario, cats, scenario.week).model
        p, value = model.score(c, c + 1)
        return np.asarray(p)[0], np.asarray(value)[0]
    rows = inputs.scores.filter(pl.col("c") == c)
    p, value = np.zeros(n), np.zeros(n)
    o = rows.get_column("o").to_numpy().astype(np.int64)
    p[o], value[o] = rows.get_column("p_redeem").to_numpy(), rows.get_column("value").to_numpy()
    return p, value


def _prices(manifest: dict[str, Any], offer_ids: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    saved = manifest.get("dual_prices", {})
    budget = dict(zip(map(str, saved.get("offer_id", [])), saved.get("budget", [])))
    count = dict(zip(map(str, saved.get("offer_id", [])), saved.get("count", [])))
    return (np.array([float(budget.get(i, 0.0)) for i in offer_ids]),
            np.array([float(count.get(i, 0.0)) for i in offer_ids]),
            float(saved.get("global_budget", 0.0)))


def explain_customer(scenario: Scenario, customer_id: str, run_dir: str | Path | None = None
                     ) -> Explanation:
    """Explain the plan of ``customer_id`` in ``run_dir`` (default: the scenario's output)."""
    run = Path(run_dir) if run_dir is not None else scenario.output
    if not (run / "manifest.json").is_file() or not (run / "assignments.parquet").is_file():
        raise OptimizerError(f"{run} is not a run folder of this scenario (run it first)")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    inputs = load_inputs(scenario.data, customer_columns=read_columns(
        [r.require for r in scenario.rules.eligibility]))
    c = _customer_index(inputs, customer_id)
    cats = offer_categories(inputs)
    rules_cfg = scenario.rules
    offers = offer_data(inputs.offers, cats.table, cats.names, rules_cfg.budget_scale)
    offer_ids = [str(x) for x in inputs.offers.get_column("offer_id").to_list()]
    p, value = _scores(inputs, scenario, cats, c)
    cost = p * offers.discount

    rules = compile_rules(inputs, rules_cfg, scenario.week, cats)
    caps, _ = customer_caps(inputs, rules_cfg, scenario.week)
    customers = np.array([c], dtype=np.int64)
    offer_row = np.arange(inputs.n_offers, dtype=np.int64)[None, :]
    reasons = {k: v[0] for k, v in rules.reasons(customers, offer_row).items()}
    allowed = ~np.any(list(reasons.values()), axis=0)
    keep = scenario.affinity.candidates_per_customer if inputs.scores is None else None
    block = block_from_candidates(customers, offer_row, p[None, :], value[None, :],
                                  allowed[None, :], offers.discount, caps[c:c + 1], keep=keep)
    candidate = np.zeros(inputs.n_offers, dtype=bool)
    candidate[block.offer[0][block.offer[0] >= 0]] = True

    budget_price, count_price, global_price = _prices(manifest, offer_ids)
    reduced = value - (budget_price + global_price) * cost - count_price
    mine = (pl.read_parquet(run / "assignments.parquet", glob=False)
            .filter(pl.col("customer_id").cast(pl.Utf8) == str(customer_id).strip()))
    given = {str(r["offer_id"]): r for r in mine.to_dicts()}
    index = {oid: j for j, oid in enumerate(offer_ids)}
    warnings = [f"offer {oid} is in the run but no longer in the offers table"
                for oid in given if oid not in index]
    given_idx = [index[o] for o in given if o in index]
    for j in given_idx:
        if abs(given[offer_ids[j]]["score"] - value[j]) > 1e-6 * max(1.0, abs(value[j])):
            warnings.append(f"offer {offer_ids[j]}: score {given[offer_ids[j]]['score']:.6g} in "
                            f"the run, {value[j]:.6g} recomputed now (inputs, scenario or scoring "
                            "changed since the run)")
    cap = int(caps[c])
    ctx = _Context(cats.table, cats.names, rules_cfg.max_offers_per_category, cap,
                   rules_cfg.max_offers_per_customer, given_idx, reduced, offer_ids,
                   budget_price, count_price, global_price, cost)
    rows = []
    for j in range(inputs.n_offers):
        status, why = ctx.classify(j, given.get(offer_ids[j]), reasons, value, candidate)
        rows.append({
            "offer_id": inputs.offers.get_column("offer_id")[j], "status": status, "why": why,
            "rank": given[offer_ids[j]]["rank"] if offer_ids[j] in given else None,
            "categories": [cats.names[k] for k in cats.table[j] if k >= 0],
            "score": float(value[j]), "p_redeem": float(p[j]), "expected_cost": float(cost[j]),
            "budget_price": float(budget_price[j]), "count_price": float(count_price[j]),
            "reduced_value": float(reduced[j]),
        })
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, -r["score"]))
    return Explanation(customer_id=inputs.customers.get_column("customer_id")[c], run_dir=str(run),
                       cap=cap, max_offers_per_customer=rules_cfg.max_offers_per_customer,
                       global_price=global_price, offers=rows, warnings=warnings)


@dataclass
class _Context:
    categories: np.ndarray
    names: list[str]
    per_category: int | None
    cap: int
    max_offers: int
    given: list[int]
    reduced: np.ndarray
    offer_ids: list[str]
    budget_price: np.ndarray
    count_price: np.ndarray
    global_price: float
    cost: np.ndarray

    def classify(self, j: int, given: dict[str, Any] | None, reasons: dict[str, np.ndarray],
                 value: np.ndarray, candidate: np.ndarray) -> tuple[str, str]:
        r = self.reduced[j]
        if given is not None:
            return "given", f"rank {given['rank']}"
        broken = [name for name, mask in reasons.items() if mask[j]]
        if broken:
            return "ineligible", "forbidden by " + ", ".join(broken)
        if value[j] <= 0:
            return "no_value", "score 0: nothing to gain"
        if not candidate[j]:
            return "not_candidate", "not among her best-scoring eligible offers"
        if r <= EPS:
            return "priced_out", (f"{value[j]:.4f} - ({self.budget_price[j]:.4f} + "
                                  f"{self.global_price:.4f}) x {self.cost[j]:.4f}"
                                  + (f" - {self.count_price[j]:.4f}" if self.count_price[j] else "")
                                  + f" = {r:.4f} <= 0")
        same = self._category_rival(j)
        if same is not None:
            k, rival = same
            return "category_cap", (f"{self.names[k]} taken by offer {self.offer_ids[rival]} "
                                    f"(reduced {self.reduced[rival]:.4f} >= {r:.4f})")
        if len(self.given) >= self.cap:
            weakest = min((self.reduced[g] for g in self.given), default=np.inf)
            if r <= weakest + EPS:
                kind = "window_cap" if self.cap < self.max_offers else "customer_cap"
                what = "window room" if kind == "window_cap" else "cap"
                return kind, (f"{what} {self.cap} full; weakest given reduced "
                              f"{weakest:.4f} >= {r:.4f}")
        return "repair", (f"reduced {r:.4f} beats the threshold; the final repair (exact "
                          "budgets and caps) left it out")

    def _category_rival(self, j: int) -> tuple[int, int] | None:
        if self.per_category is None:
            return None
        for k in self.categories[j][self.categories[j] >= 0]:
            holders = [g for g in self.given if k in self.categories[g]]
            if holders and len(holders) >= self.per_category:
                rival = min(holders, key=lambda g: self.reduced[g])
                if self.reduced[rival] + EPS >= self.reduced[j]:
                    return int(k), rival
        return None
