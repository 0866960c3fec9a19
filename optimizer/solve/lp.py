"""The LP relaxation of the problem, built from numpy arrays in one call (OR-Tools model_builder).

Used for the Lagrangian's starting prices on a sample of customers and by the benchmarks
(:func:`lp_arrays`, the one builder of the LP). Rows:
one cap per customer, one per (customer, category) when categories are capped (an offer with
several categories sits in each of its rows), one budget and one ``max_customers`` per offer, and
the global budget. The returned prices are the LP's duals on the coupling rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# model_builder's C++ helper, not its Python wrapper: the wrapper imports pandas, a second of
# every run's start-up, for nothing this module uses
from ortools.linear_solver.python import model_builder_helper as mbh

from optimizer.core.errors import SolverError
from optimizer.model.problem import AssignmentProblem, Prices


@dataclass(frozen=True)
class LPRelaxation:
    """objective: the LP optimum; prices: duals of the budget, max_customers and global rows."""

    objective: float
    prices: Prices


@dataclass(frozen=True)
class LPArrays:
    """``max value . x  s.t.  matrix x <= upper, 0 <= x <= 1`` of a problem (module docstring
    for the rows); ``coupling``: per offer the row of its budget (``"budget"``) and of its
    ``max_customers`` (``"count"``), -1 without; ``global_row``: the global budget's, or -1."""

    value: np.ndarray
    matrix: sp.csr_matrix
    upper: np.ndarray
    coupling: dict[str, np.ndarray]
    global_row: int

    def dual_bound(self, y: np.ndarray) -> float:
        """Weak duality: for ``y >= 0``, ``upper . y + sum max(0, value - A'y)`` bounds the LP
        (and every plan)."""
        return _dual_bound(self.matrix, self.upper, self.value, y)


def lp_arrays(problem: AssignmentProblem) -> LPArrays:
    """The LP relaxation of ``problem`` as sparse arrays (``solve_lp`` and the benchmarks)."""
    offers = problem.offers
    valid = [b.offer >= 0 for b in problem.blocks]
    offer = np.concatenate([b.offer[v] for b, v in zip(problem.blocks, valid)])
    value = np.concatenate([b.value[v] for b, v in zip(problem.blocks, valid)])
    cost = np.concatenate([b.cost[v] for b, v in zip(problem.blocks, valid)])
    starts = np.cumsum([0] + [b.n_customers for b in problem.blocks])
    customer = np.concatenate([np.nonzero(v)[0] + s for v, s in zip(valid, starts[:-1])])
    caps = np.concatenate([b.cap.astype(float) for b in problem.blocks])
    n_vars, var = offer.size, np.arange(offer.size)
    rows, cols, data, rhs = [customer], [var], [np.ones(n_vars)], [caps]
    next_row = int(starts[-1])
    if problem.max_per_category is not None:
        cats = offers.categories[offer]  # (pairs, width)
        pair, slot = np.nonzero(cats >= 0)
        key = customer[pair] * offers.n_categories + cats[pair, slot]
        uniq, row_of = np.unique(key, return_inverse=True)
        rows.append(next_row + row_of)
        cols.append(pair)
        data.append(np.ones(pair.size))
        rhs.append(np.full(uniq.size, float(problem.max_per_category)))
        next_row += uniq.size
    coupling: dict[str, np.ndarray] = {}
    for name, weights, capacity in (("budget", cost, offers.budget),
                                    ("count", np.ones(n_vars), offers.max_customers)):
        row_of_offer = np.full(offers.n_offers, -1)
        finite = np.isfinite(capacity)
        row_of_offer[finite] = next_row + np.arange(int(finite.sum()))
        keep = row_of_offer[offer] >= 0
        rows.append(row_of_offer[offer][keep])
        cols.append(var[keep])
        data.append(weights[keep])
        rhs.append(capacity[finite])
        coupling[name] = row_of_offer
        next_row += int(finite.sum())
    global_row = -1
    if np.isfinite(problem.global_budget):
        global_row = next_row
        rows.append(np.full(n_vars, next_row))
        cols.append(var)
        data.append(cost)
        rhs.append(np.array([problem.global_budget]))
        next_row += 1
    matrix = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(next_row, n_vars))
    return LPArrays(value, matrix, np.concatenate(rhs), coupling, global_row)


def solve_lp(problem: AssignmentProblem, backend: str = "GLOP", time_limit_s: float = 60.0,
             pdlp_tolerance: float | None = None) -> LPRelaxation:
    """Solve the LP relaxation of ``problem`` with an OR-Tools LP backend (GLOP or PDLP).

    ``pdlp_tolerance``: PDLP's relative and absolute optimality tolerance (its default when
    ``None``); a loose one is enough where the LP only gives starting prices.
    """
    offers = problem.offers
    lp = lp_arrays(problem)
    value, matrix, upper, coupling, global_row = (lp.value, lp.matrix, lp.upper, lp.coupling,
                                                  lp.global_row)
    n_vars, next_row = value.size, upper.size
    model = mbh.ModelBuilderHelper()
    # OR-Tools' stub spells its array type ndarray[float64, ...] (no shape), which no real array
    # matches; the arrays are float64 vectors and a CSR matrix, as the binding expects
    lower_row = np.full(next_row, -np.inf)
    model.fill_model_from_sparse_data(
        np.zeros(n_vars), np.ones(n_vars), value, lower_row, upper, matrix)  # type: ignore[arg-type]
    model.set_maximize(True)
    solver = mbh.ModelSolverHelper(backend)
    solver.set_time_limit_in_seconds(time_limit_s)
    if backend == "PDLP" and pdlp_tolerance is not None:
        solver.set_solver_specific_parameters(
            "termination_criteria { simple_optimality_criteria { "
            f"eps_optimal_relative: {pdlp_tolerance} eps_optimal_absolute: {pdlp_tolerance} }} }}")
    solver.clear_log_callback()
    solver.solve(model)
    status = solver.status()
    if status != mbh.SolveStatus.OPTIMAL:
        raise SolverError(f"{backend} did not solve the LP relaxation (status {status.name})")
    duals = np.asarray(solver.dual_values())
    # the duals' sign convention in a maximisation differs between backends: the right sign is
    # the one whose weak-duality bound is the smaller (both are valid for non-negative duals)
    duals = max((duals, -duals), key=lambda y: -_dual_bound(matrix, upper, value, y))
    duals = np.maximum(duals, 0.0)

    def per_offer(row_of_offer: np.ndarray) -> np.ndarray:
        return np.where(row_of_offer >= 0, duals[np.maximum(row_of_offer, 0)], 0.0)

    prices = Prices(per_offer(coupling["budget"]), per_offer(coupling["count"]),
                    float(duals[global_row]) if global_row >= 0 else 0.0,
                    np.zeros(offers.n_offers))
    return LPRelaxation(float(solver.objective_value()), prices)


def _dual_bound(matrix: sp.csr_matrix, upper: np.ndarray, value: np.ndarray, y: np.ndarray
                ) -> float:
    """Weak duality: for ``y >= 0``, ``upper . y + sum max(0, value - A'y)`` bounds the LP."""
    y = np.maximum(y, 0.0)
    return float(upper @ y + np.maximum(value - matrix.T @ y, 0.0).sum())
