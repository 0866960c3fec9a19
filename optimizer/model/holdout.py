"""Control groups: withhold the plan's sends to the universal and per-offer controls.

Design (docs/contract.md, "Measurement"): **plan once, then withhold.** The solver plans every
customer as if there were no control group; then

- every send to a customer in the *universal control* (keyed hash of salt and customer_id below
  ``measurement.holdout_share``, :mod:`optimizer.core.keyed_hash`) is withheld: she gets nothing;
- every other send whose (customer, offer) pair hashes below ``measurement.offer_holdout_share``
  is withheld: that customer is the offer's *per-offer control* (she keeps her other offers).

Why this way: treated and control customers are then picked by the same plan and split by a
hash that knows nothing of the plan, so the comparison is a randomised experiment among the
customers the plan would have reached. The withheld sends' budget is *not* spent on anybody else
(budgets are planned net of the withheld sends): re-planning would give the treated customers
offers they would not have got without the control group, and the measured lift would no longer
be the lift of the plan. So the spend is about ``1 - share`` of the plan's, and ``min_customers``
may fall short by the withheld sends (reported like any shortfall).

The universal control is drawn from all customers by the hash; ``controls.*`` lists those of them
the plan would have reached (``offer_id`` empty, reason ``universal_holdout``), and each withheld
(customer, offer) pair of the per-offer control (reason ``offer_holdout``). The hash involves
neither the week nor the chunking nor the row order, so the same salt holds out the same
customers every week, on any machine and thread count.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from optimizer.core.config import Measurement
from optimizer.core.keyed_hash import below, customer_hashes, pair_hashes
from optimizer.io.validate import Inputs
from optimizer.model._plan_kernels import chosen_values
from optimizer.model.channels import carry
from optimizer.model.problem import AssignmentProblem, Solution

CONTROL_COLUMNS = ["customer_id", "offer_id", "week", "reason"]
UNIVERSAL, PER_OFFER = "universal_holdout", "offer_holdout"


@dataclass
class Withheld:
    """The plan after withholding: the solution of the sends made, the controls table and the
    manifest's ``measurement`` record."""

    solution: Solution
    controls: pl.DataFrame
    info: dict[str, Any]


def universal_controls(customer_ids: pl.Series, measurement: Measurement) -> np.ndarray:
    """Per customer (in the order given), whether she is in the universal control."""
    if measurement.holdout_share <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    return below(customer_hashes(customer_ids, measurement.salt), measurement.holdout_share)


def offer_controls(customer_ids: pl.Series, offer_ids: pl.Series,
                   measurement: Measurement) -> np.ndarray:
    """Per (customer, offer) row, whether the pair is in the per-offer control."""
    if measurement.offer_holdout_share <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    return below(pair_hashes(customer_ids, offer_ids, measurement.salt),
                 measurement.offer_holdout_share)


def withhold_controls(inputs: Inputs, problem: AssignmentProblem, solution: Solution,
                      measurement: Measurement, week: int) -> Withheld:
    """Withhold the controls' sends from the solved plan (see the module docstring)."""
    customer_ids = inputs.customers.get_column("customer_id")
    offer_ids = inputs.offers.get_column("offer_id")
    held_customer = universal_controls(customer_ids, measurement)
    # the plan's sends, block by block, in the blocks' order
    positions = [np.nonzero(chosen) for chosen in solution.chosen]
    c = np.concatenate([b.customers[r] for b, (r, _) in zip(problem.blocks, positions)]
                       or [np.zeros(0, np.int64)]).astype(np.int64)
    o = np.concatenate([b.offer[r, s] for b, (r, s) in zip(problem.blocks, positions)]
                       or [np.zeros(0, np.int64)]).astype(np.int64)
    universal = held_customer[c]
    per_offer = np.zeros(c.size, dtype=bool)
    if measurement.offer_holdout_share > 0 and c.size:
        rest = np.flatnonzero(~universal)
        per_offer[rest] = offer_controls(customer_ids.gather(c[rest]), offer_ids.gather(o[rest]),
                                         measurement)
    withheld = universal | per_offer

    # the sends' values and costs in the same block, row and slot order as ``withheld``, summed
    # whole: the same bits for any chunking (the blocks' own sums would depend on it)
    values = chosen_values([b.value for b in problem.blocks], solution.chosen)
    costs = chosen_values([b.cost for b in problem.blocks], solution.chosen)
    planned = problem.objective(solution.chosen)  # less its contact costs, as ``objective``
    withheld_score = float(values[withheld].sum())
    withheld_cost = float(costs[withheld].sum())
    chosen, start = [], 0
    for kept, (rows, slots) in zip(solution.chosen, positions):
        stop = start + rows.size
        drop = withheld[start:stop]
        mask = kept.copy()
        mask[rows[drop], slots[drop]] = False
        chosen.append(mask)
        start = stop
    controls = _controls_frame(customer_ids, offer_ids, c, o, universal, per_offer, week)
    info = {
        "holdout_share": measurement.holdout_share,
        "offer_holdout_share": measurement.offer_holdout_share,
        "salt": measurement.salt,
        "design": "planned for every customer, then the controls' sends withheld; their "
                  "budget is not re-spent",
        "universal_controls": int(np.unique(c[universal]).size),
        "offer_controls": int(per_offer.sum()),
        "withheld_sends": int(withheld.sum()),
        "withheld_expected_cost": withheld_cost,
        "withheld_score": withheld_score,
        "planned_sends": int(c.size),
        "planned_objective": planned,
        "planned_customers_reached": int(np.unique(c).size),
    }
    chosen = carry(solution.chosen, chosen)  # each kept pair keeps its channel
    objective = problem.objective(chosen) if withheld.any() else solution.objective
    return Withheld(replace(solution, chosen=chosen, objective=objective), controls, info)


def _controls_frame(customer_ids: pl.Series, offer_ids: pl.Series, c: np.ndarray, o: np.ndarray,
                    universal: np.ndarray, per_offer: np.ndarray, week: int) -> pl.DataFrame:
    """controls: one row per universal control the plan would have reached (offer_id empty) and
    one per withheld (customer, offer) pair; ordered by customer, her universal row first."""
    held = np.unique(c[universal])
    rows = pl.DataFrame({
        "c": np.concatenate([held, c[per_offer]]).astype(np.int64),
        "o": np.concatenate([np.full(held.size, -1), o[per_offer]]).astype(np.int64),
    }).sort(["c", "o"])
    held_pair = pl.col("o") >= 0
    return rows.select(
        customer_ids.gather(rows.get_column("c")).alias("customer_id"),
        pl.when(held_pair).then(pl.lit(offer_ids.gather(rows.get_column("o").clip(lower_bound=0))))
        .otherwise(None).alias("offer_id"),
        pl.lit(week, dtype=pl.Int64).alias("week"),
        pl.when(held_pair).then(pl.lit(PER_OFFER)).otherwise(pl.lit(UNIVERSAL)).alias("reason"),
    ).select(CONTROL_COLUMNS)


__all__ = ["CONTROL_COLUMNS", "PER_OFFER", "UNIVERSAL", "Withheld", "offer_controls",
           "universal_controls", "withhold_controls"]
