"""The strategies a simulated quarter compares, each planned through the product's own run.

Every strategy plans its week with :func:`optimizer.apps.pipeline.run_scenario` on its own input
folder (the tables its world wrote so far), with the scenario's rules, budgets, controls and the
history loop (``append_history``), so every plan is a run folder that ``offeropt check`` verifies:

* ``customer_first``: the product as a retailer runs it (its scoring fitted on the folder, the
  solver); no ``scores`` table.
* ``offer_first``: the habit the product replaces. The product's scoring is fitted the same way;
  then offer by offer (offer order), each picks the customers with the highest ``p_redeem`` who
  are still allowed it (rules, her cap, her category cap) until the next one would overrun its
  budget (or ``max_customers``, or the global budget left). The picks go to the run as a
  ``scores`` table (``value = p_redeem``), which the solver takes whole (they fit every cap).
* ``popular`` and ``random``: the same solver and rules, with the pair's value the offer's
  popularity (:func:`optimizer.scoring.baselines.popularity`, one ranking for everyone) or a
  seeded uniform number; random lists each customer's ``candidates_per_customer`` best allowed
  offers by that value, popular every allowed offer (the same top k for everyone would leave the
  other offers' budgets unspent).

**Equal spend.** Budgets are on expected cost, ``p_redeem x discount``, and every strategy prices
its sends with the same ``p_redeem`` (the product's scoring fitted on its own folder), under the
same offer budgets and global budget: each plan fills the same budgets by its own choice of
customers, so all strategies plan the same spend wherever the budgets bind (the simulate scenario
makes them bind). The spend that happens (redemptions x discount) is reported per strategy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from optimizer.apps.pipeline import RunResult, run_scenario
from optimizer.core.config import Scenario
from optimizer.io.validate import Inputs, load_inputs
from optimizer.model.eligibility import compile_rules, customer_caps
from optimizer.model.problem import offer_data
from optimizer.scoring.baselines import popularity
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring

STRATEGIES = ("customer_first", "offer_first", "popular", "random")
_TINY = 1e-9


def _scores_paths(data: Path) -> list[Path]:
    return [data / "scores.parquet", data / "scores.csv"]


def _allowed_scores(inputs: Inputs, scenario: Scenario) -> tuple[np.ndarray, np.ndarray, dict]:
    """The product's ``p_redeem`` of every pair, the mask of the allowed pairs, and the rest of
    what the baselines need (caps, offers, categories)."""
    cats = offer_categories(inputs)
    week = scenario.week
    scoring = fit_scoring(inputs, scenario, cats, week)
    rules = compile_rules(inputs, scenario.rules, week, cats)
    caps, _ = customer_caps(inputs, scenario.rules, week)
    n, m = inputs.n_customers, inputs.n_offers
    p = np.zeros((n, m))
    allowed = np.zeros((n, m), bool)
    size = scenario.solver.chunk_size
    grid = np.arange(m, dtype=np.int64)
    for start in range(0, n, size):  # chunks of customers, vectorised within
        stop = min(start + size, n)
        p[start:stop] = scoring.model.score(start, stop)[0]
        customers = np.arange(start, stop, dtype=np.int64)
        allowed[start:stop] = rules.allowed(customers, np.broadcast_to(grid, (stop - start, m)))
    offers = offer_data(inputs.offers, cats.table, cats.names, scenario.rules.budget_scale)
    return p, allowed & (p > 0), {"caps": caps, "offers": offers, "cats": cats}


def offer_first_pairs(p: np.ndarray, allowed: np.ndarray, caps: np.ndarray, offers,
                      max_per_category: int | None, global_budget: float | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Offer by offer, its best customers by ``p`` still allowed it, until its budget: the
    (customer, offer) index pairs picked (module docstring). A loop over offers, vectorised over
    customers."""
    n, m = p.shape
    room = caps.astype(np.int64).copy()
    n_cats = len(offers.category_names)
    used = np.zeros((n, max(n_cats, 1)), np.int64)
    left = float("inf") if global_budget is None else float(global_budget)
    picked_c, picked_o = [], []
    for j in range(m):
        cats_j = offers.categories[j][offers.categories[j] >= 0]
        ok = allowed[:, j] & (room > 0)
        if max_per_category is not None and cats_j.size:
            ok &= (used[:, cats_j] < max_per_category).all(axis=1)
        who = np.flatnonzero(ok)
        if who.size == 0:
            continue
        who = who[np.argsort(-p[who, j], kind="stable")]
        cost = np.cumsum(p[who, j] * offers.discount[j])
        limit = min(float(offers.budget[j]), left)
        take = int(np.searchsorted(cost, limit * (1 + 1e-12), side="right"))
        if np.isfinite(offers.max_customers[j]):
            take = min(take, int(offers.max_customers[j]))
        chosen = who[:take]
        if chosen.size == 0:
            continue
        left -= float(cost[take - 1])
        room[chosen] -= 1
        for k in cats_j:
            used[chosen, k] += 1
        picked_c.append(chosen)
        picked_o.append(np.full(chosen.size, j, np.int64))
    if not picked_c:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(picked_c), np.concatenate(picked_o)


def _top_pairs(value: np.ndarray, allowed: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's ``keep`` allowed pairs of highest value (ties: lower offer first)."""
    v = np.where(allowed, value, -np.inf)
    keep = min(keep, v.shape[1])
    order = np.argsort(-v, axis=1, kind="stable")[:, :keep]
    rows = np.broadcast_to(np.arange(v.shape[0])[:, None], order.shape)
    ok = np.isfinite(v[rows, order])
    return rows[ok], order[ok]


def _write_scores(inputs: Inputs, data: Path, c: np.ndarray, o: np.ndarray, p: np.ndarray,
                  value: np.ndarray) -> None:
    order = np.lexsort((o, c))
    c, o = c[order], o[order]
    frame = pl.DataFrame({
        "customer_id": inputs.customers.get_column("customer_id").gather(c),
        "offer_id": inputs.offers.get_column("offer_id").gather(o),
        "p_redeem": p[c, o], "value": value[c, o]})
    tmp = data / ".scores.parquet.tmp"
    frame.write_parquet(tmp)
    tmp.replace(data / "scores.parquet")


def plan_week(strategy: str, scenario: Scenario, seed: int) -> RunResult:
    """Plan ``scenario.week`` for ``strategy`` on ``scenario.data`` and write its run folder,
    appending the sends to the folder's history (module docstring)."""
    for path in _scores_paths(scenario.data):  # last week's baseline list is not an input
        path.unlink(missing_ok=True)
    if strategy == "customer_first":
        return run_scenario(scenario, append_history=True)
    inputs = load_inputs(scenario.data, scores_url=scenario.scores_url)
    p, allowed, extra = _allowed_scores(inputs, scenario)
    n, m = p.shape
    if strategy == "offer_first":
        c, o = offer_first_pairs(p, allowed, extra["caps"], extra["offers"],
                                 scenario.rules.max_offers_per_category,
                                 scenario.rules.global_budget)
        value = np.maximum(p, _TINY)
    else:
        if strategy == "popular":
            pop = popularity(inputs, extra["cats"], scenario.week)
            value = np.broadcast_to(pop + _TINY * (m - np.arange(m)), (n, m))
        elif strategy == "random":
            rng = np.random.default_rng([seed, scenario.solver.seed, scenario.week, 11])
            value = rng.random((n, m)) + _TINY
        else:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        # popular ranks the offers alike for everyone: a top-k list would name the same k offers
        # for all and leave the other offers' budgets unspent, so it lists every allowed pair
        keep = m if strategy == "popular" else scenario.affinity.candidates_per_customer
        c, o = _top_pairs(value, allowed, keep)
    _write_scores(inputs, scenario.data, c, o, p, value)
    return run_scenario(scenario, append_history=True)
