"""The LP relaxation of the problem, built from numpy arrays in one call (OR-Tools model_builder).

Used for the Lagrangian's starting prices on a sample of customers and by the benchmarks
(:func:`lp_arrays`, the one builder of the LP). Rows:
one cap per customer, one per (customer, category) when categories are capped (an offer with
several categories sits in each of its rows), one per (customer, offer group) with ``offer_groups``,
one budget and one ``max_customers`` per offer, the
global budget, one budget per funder (``funders``), and with channels each capacity and the
contact budget. The returned prices are the LP's duals on the coupling rows.

Channels enter as one column per (customer, consented channel): ``z[i, c]``, the share of her cap
``cap[i]`` sent on channel ``c``, so that ``sum_j x[i, j] <= cap[i] * sum_c z[i, c]`` (a row per
customer), ``sum_i cap[i] z[i, c] <= capacity[c]`` and ``sum cost[c] cap[i] z[i, c] <=
contact_budget``, each contact paying ``cost[c]`` in the objective. Every pair of a customer may go
out on any channel she consented to, so splitting her contacts per pair in proportion to ``z``
gives the per-pair model (:mod:`optimizer.model.channels`, :mod:`optimizer.solve.exact`): the
same LP with a column per customer and channel instead of one per pair and channel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

# model_builder's C++ helper, not its Python wrapper: the wrapper imports pandas, a second of
# every run's start-up, for nothing this module uses
from ortools.linear_solver.python import model_builder_helper as mbh

from optimizer.core.errors import SolverError
from optimizer.core.numerics import fixed_dot
from optimizer.model.problem import AssignmentProblem, Prices


@dataclass(frozen=True)
class LPRelaxation:
    """objective: the LP optimum; prices: duals of the coupling rows; bound: the weak-duality
    bound at every row's duals (:meth:`LPArrays.dual_bound`), an upper bound on every plan of
    the problem solved whatever the solver's tolerance (``inf`` when not computed)."""

    objective: float
    prices: Prices
    bound: float = float("inf")


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
    # per funder the row of its budget (-1: none); per channel the row of its capacity (-1:
    # none) and the contact budget's row (-1: none); empty / -1 without funders or channels
    funder_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    channel_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    contact_row: int = -1

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
    if problem.groups is not None:  # offer groups: per (customer, group) at most its limit
        members = problem.groups.members[offer]  # (pairs, width)
        pair, slot = np.nonzero(members >= 0)
        group = members[pair, slot]
        key = customer[pair] * problem.groups.n_groups + group
        uniq, row_of = np.unique(key, return_inverse=True)
        rows.append(next_row + row_of)
        cols.append(pair)
        data.append(np.ones(pair.size))
        rhs.append(problem.groups.limit[uniq % problem.groups.n_groups].astype(float))
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
        next_row = _one_row(rows, cols, data, rhs, next_row, var, cost, problem.global_budget)
    funder_rows = np.zeros(0, dtype=np.int64)
    if problem.funders is not None:
        funders = problem.funders
        funder_rows = np.full(funders.n_funders, -1, dtype=np.int64)
        capped = np.isfinite(funders.budget)
        funder_rows[capped] = next_row + np.arange(int(capped.sum()))
        row_of = np.append(funder_rows, -1)[funders.of_offer[offer]]
        keep = row_of >= 0
        rows.append(row_of[keep])
        cols.append(var[keep])
        data.append(cost[keep])
        rhs.append(funders.budget[capped])
        next_row += int(capped.sum())
    channel_rows, contact_row = np.zeros(0, dtype=np.int64), -1
    if problem.channels is not None:
        channel_rows, contact_row, next_row, value = _channel_columns(
            problem, customer, caps, next_row, value, rows, cols, data, rhs)
    matrix = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(next_row, value.size))
    return LPArrays(value, matrix, np.concatenate(rhs), coupling, global_row, funder_rows,
                    channel_rows, contact_row)


def _one_row(rows: list[np.ndarray], cols: list[np.ndarray], data: list[np.ndarray],
             rhs: list[np.ndarray], row: int, columns: np.ndarray, weights: np.ndarray,
             capacity: float) -> int:
    """Append one row ``weights . x[columns] <= capacity`` as row ``row``; returns the next
    row (the global budget's and the contact budget's rows)."""
    rows.append(np.full(columns.size, row))
    cols.append(columns)
    data.append(weights)
    rhs.append(np.array([capacity]))
    return row + 1


def _channel_columns(problem: AssignmentProblem, customer: np.ndarray, caps: np.ndarray,
                     next_row: int, value: np.ndarray, rows: list[np.ndarray],
                     cols: list[np.ndarray], data: list[np.ndarray], rhs: list[np.ndarray]
                     ) -> tuple[np.ndarray, int, int, np.ndarray]:
    """The channels' columns and rows (module docstring), appended to ``rows``, ``cols``,
    ``data`` and ``rhs`` after the pairs' ``value.size`` columns; returns (each channel's
    capacity row or -1, the contact budget's row or -1, the next row, every column's value)."""
    channels = problem.channels
    assert channels is not None
    ids = np.concatenate([b.customers for b in problem.blocks]).astype(np.int64)
    live = caps > 0  # a customer without consent has cap 0 (channel_caps)
    who, channel = np.nonzero(channels.consent[ids] & live[:, None])
    n_vars, n_cols = value.size, who.size
    col = n_vars + np.arange(n_cols)
    weight = caps[who]
    # sum_j x[i, j] - cap[i] * sum_c z[i, c] <= 0: one row per customer with a pair
    tie_row = np.full(caps.size, -1, dtype=np.int64)
    has_pairs = np.bincount(customer, minlength=caps.size) > 0
    tie_row[has_pairs] = next_row + np.arange(int(has_pairs.sum()))
    tied = tie_row[customer] >= 0
    sends = tie_row[who] >= 0  # the channel columns of customers with a pair
    rows.extend([tie_row[customer][tied], tie_row[who][sends]])
    cols.extend([np.arange(n_vars)[tied], col[sends]])
    data.extend([np.ones(int(tied.sum())), -weight[sends]])
    rhs.append(np.zeros(int(has_pairs.sum())))
    next_row += int(has_pairs.sum())
    channel_rows = np.full(channels.n_channels, -1, dtype=np.int64)
    capped = np.isfinite(channels.capacity)
    channel_rows[capped] = next_row + np.arange(int(capped.sum()))
    keep = channel_rows[channel] >= 0
    rows.append(channel_rows[channel][keep])
    cols.append(col[keep])
    data.append(weight[keep])
    rhs.append(channels.capacity[capped].astype(float))
    next_row += int(capped.sum())
    contact_row = -1
    if np.isfinite(channels.contact_budget):
        contact_row = next_row
        next_row = _one_row(rows, cols, data, rhs, next_row, col, channels.cost[channel] * weight,
                            float(channels.contact_budget))
    return (channel_rows, contact_row, next_row,
            np.concatenate([value, -channels.cost[channel] * weight]))


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
    bound = _dual_bound(matrix, upper, value, duals)

    def per_row(row: np.ndarray) -> np.ndarray:  # each entry's row's dual (0 without a row)
        return np.where(row >= 0, duals[np.maximum(row, 0)], 0.0)

    funders, channels = problem.funders, problem.channels
    prices = Prices(per_row(coupling["budget"]), per_row(coupling["count"]),
                    float(duals[global_row]) if global_row >= 0 else 0.0,
                    np.zeros(offers.n_offers),
                    per_row(lp.funder_rows) if funders is not None else None,
                    funders.of_offer if funders is not None else None,
                    per_row(lp.channel_rows) if channels is not None else None,
                    float(duals[lp.contact_row]) if lp.contact_row >= 0 else 0.0)
    return LPRelaxation(float(solver.objective_value()), prices, bound)


def _dual_bound(matrix: sp.csr_matrix, upper: np.ndarray, value: np.ndarray, y: np.ndarray
                ) -> float:
    """Weak duality: for ``y >= 0``, ``upper . y + sum max(0, value - A'y)`` bounds the LP."""
    y = np.maximum(y, 0.0)
    return fixed_dot(upper, y) + float(np.maximum(value - matrix.T @ y, 0.0).sum())
