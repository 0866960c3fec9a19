"""The exact reference: the same problem as a mixed-integer program solved by SCIP (OR-Tools).

One binary per candidate pair and one row per constraint of :mod:`optimizer.model.problem`. It is the
yardstick the scale method is tested against on small instances, and a ``method = "exact"`` choice
for small real runs. ``min_customers`` targets are not modelled (they are targets, not rules), so
its optimum is the best plan under the hard rules alone, the same quantity the Lagrangian bound
bounds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.linear_solver import pywraplp

from optimizer.core.errors import SolverError
from optimizer.core.interrupt import keep_sigint_handler
from optimizer.model.channels import ChannelPlan
from optimizer.model.problem import AssignmentProblem, Prices, Solution, Status


@dataclass
class _Model:
    """The MIP (or LP) of a problem in a pywraplp solver: its variables, each block's variable
    index per slot (-1: empty), the objective and the coupling rows (for the LP's duals)."""

    variables: list[Any]
    var_of: list[np.ndarray]
    objective: Any
    budget_rows: dict[int, Any]
    count_rows: dict[int, Any]
    global_row: Any
    funder_rows: dict[int, Any] = field(default_factory=dict)
    # with channels: (block, row, slot, channel, variable) of each pair's channel choice
    channel_vars: list[tuple[int, int, int, int, Any]] = field(default_factory=list)


def _build(solver: Any, problem: AssignmentProblem, relax: bool) -> _Model:
    """One variable per candidate, the customer and category caps, every offer's budget and
    ``max_customers`` and the global budget, in ``solver``."""
    offers = problem.offers
    var_of: list[np.ndarray] = []
    variables = []
    by_offer: dict[int, list[tuple[object, float]]] = {}
    global_terms = []
    objective = solver.Objective()
    channel_vars: list[tuple[int, int, int, int, Any]] = []
    for k, block in enumerate(problem.blocks):
        index = np.full(block.offer.shape, -1, dtype=np.int64)
        for row in range(block.n_customers):
            slots = np.flatnonzero(block.offer[row] >= 0)
            row_vars = []
            cat_terms: dict[int, list[object]] = {}
            group_terms: dict[int, list[object]] = {}
            for slot in slots:
                j = int(block.offer[row, slot])
                var = (solver.NumVar(0, 1, "") if relax else solver.BoolVar(""))
                index[row, slot] = len(variables)
                variables.append(var)
                row_vars.append(var)
                objective.SetCoefficient(var, float(block.value[row, slot]))
                if problem.channels is not None:
                    channel_vars.extend(_channel_choice(solver, problem, objective, var,
                                                        (k, row, int(slot)),
                                                        int(block.customers[row]), relax))
                cost = float(block.cost[row, slot])
                by_offer.setdefault(j, []).append((var, cost))
                global_terms.append((var, cost))
                for cat in offers.categories[j]:
                    if cat >= 0:
                        cat_terms.setdefault(int(cat), []).append(var)
                if problem.groups is not None:
                    for g in problem.groups.members[j]:
                        if g >= 0:
                            group_terms.setdefault(int(g), []).append(var)
            if row_vars:
                solver.Add(sum(row_vars) <= int(block.cap[row]))
            if problem.max_per_category is not None:
                for terms in cat_terms.values():
                    if len(terms) > problem.max_per_category:
                        solver.Add(sum(terms) <= problem.max_per_category)
            for g, terms in group_terms.items():  # exclusive offers (offer_groups)
                assert problem.groups is not None
                if len(terms) > int(problem.groups.limit[g]):
                    solver.Add(sum(terms) <= int(problem.groups.limit[g]))
        var_of.append(index)
    budget_rows, count_rows = {}, {}
    for j, terms in by_offer.items():
        if np.isfinite(offers.budget[j]):
            budget_rows[j] = solver.Add(sum(c * v for v, c in terms) <= float(offers.budget[j]))
        if np.isfinite(offers.max_customers[j]):
            count_rows[j] = solver.Add(sum(v for v, _ in terms) <= float(offers.max_customers[j]))
    funder_rows = {}
    if problem.funders is not None:  # budgets per funder over the offers they fund
        funders = problem.funders
        for f in np.flatnonzero(np.isfinite(funders.budget)):
            terms = [t for j in np.flatnonzero(funders.of_offer == f) for t in by_offer.get(j, [])]
            if terms:
                funder_rows[int(f)] = solver.Add(sum(c * v for v, c in terms)
                                                 <= float(funders.budget[f]))
    global_row = None
    if np.isfinite(problem.global_budget) and global_terms:
        global_row = solver.Add(sum(c * v for v, c in global_terms) <= problem.global_budget)
    if problem.channels is not None:
        _channel_rows(solver, problem, channel_vars)
    return _Model(variables, var_of, objective, budget_rows, count_rows, global_row, funder_rows,
                  channel_vars)


def _channel_choice(solver: Any, problem: AssignmentProblem, objective: Any, var: Any,
                    at: tuple[int, int, int], customer: int, relax: bool
                    ) -> list[tuple[int, int, int, int, Any]]:
    """One variable per consented channel of a pair, summing to the pair's; each pays its
    channel's cost per contact in the objective."""
    channels = problem.channels
    assert channels is not None
    out = []
    for c in np.flatnonzero(channels.consent[customer]):
        y = solver.NumVar(0, 1, "") if relax else solver.BoolVar("")
        objective.SetCoefficient(y, -float(channels.cost[c]))
        out.append((*at, int(c), y))
    if out:
        solver.Add(sum(t[-1] for t in out) == var)
    else:  # no consented channel: the pair cannot go out
        solver.Add(var == 0)
    return out


def _channel_rows(solver: Any, problem: AssignmentProblem,
                  channel_vars: list[tuple[int, int, int, int, Any]]) -> None:
    """Each channel's capacity and the contact budget over the channel choices."""
    channels = problem.channels
    assert channels is not None
    for c in np.flatnonzero(np.isfinite(channels.capacity)):
        terms = [t[-1] for t in channel_vars if t[3] == c]
        if terms:
            solver.Add(sum(terms) <= float(channels.capacity[c]))
    if np.isfinite(channels.contact_budget) and channel_vars:
        solver.Add(sum(float(channels.cost[t[3]]) * t[-1] for t in channel_vars)
                   <= channels.contact_budget)


def _channel_plan(chosen: list[np.ndarray], channel_vars: list[tuple[int, int, int, int, Any]]
                  ) -> ChannelPlan:
    """The chosen masks with each chosen pair's channel (its largest channel variable)."""
    channel = [np.full(m.shape, -1, dtype=np.int64) for m in chosen]
    best = [np.zeros(m.shape) for m in chosen]
    for k, row, slot, c, y in channel_vars:
        value = y.solution_value()
        if chosen[k][row, slot] and value > best[k][row, slot]:
            best[k][row, slot], channel[k][row, slot] = value, c
    return ChannelPlan(chosen, channel)


def solve_exact(problem: AssignmentProblem, time_limit_s: float = 60.0,
                gap_tolerance: float = 1e-9, relax: bool = False, backend: str = "SCIP",
                pinned: list[np.ndarray] | None = None,
                pinned_channels: list[np.ndarray] | None = None) -> Solution:
    """Solve ``problem`` with an OR-Tools MIP (or, with ``relax=True``, its LP relaxation).

    ``backend`` is any pywraplp solver id (``SCIP``, ``CBC``, ``GLOP`` and ``PDLP`` for LPs).
    ``pinned``: per block, a mask of slots fixed to 1 (``rules.pin``, :mod:`optimizer.model.pins`);
    pins no plan can keep leave the model without a plan (:class:`SolverError`).
    ``pinned_channels``: with channels, per block each pinned slot's channel index (-1 elsewhere),
    fixed too (the pins' channels, :class:`optimizer.model.pins.PinPlan`).
    """
    solver = pywraplp.Solver.CreateSolver(backend)
    if solver is None:
        raise SolverError(f"OR-Tools backend {backend} is not available")
    offers = problem.offers
    built = _build(solver, problem, relax)
    variables, var_of, objective = built.variables, built.var_of, built.objective
    for index, mask in zip(var_of, pinned or []):  # pinned pairs: x = 1
        for k in index[mask & (index >= 0)]:
            variables[int(k)].SetLb(1.0)
    if pinned_channels is not None:  # pinned pairs go out on their channels
        for k, row, slot, c, y in built.channel_vars:
            if pinned_channels[k][row, slot] == c:
                y.SetLb(1.0)
    budget_rows, count_rows, global_row = built.budget_rows, built.count_rows, built.global_row
    objective.SetMaximization()
    solver.SetTimeLimit(int(time_limit_s * 1000))
    if not relax and backend == "SCIP":
        # misc/catchctrlc off: SCIP's own handler would end the solve and swallow the Ctrl-C
        solver.SetSolverSpecificParametersAsString(f"limits/gap = {gap_tolerance}\n"
                                                   "misc/catchctrlc = FALSE\n")
    start = time.perf_counter()
    with keep_sigint_handler():
        status = solver.Solve()
    seconds = time.perf_counter() - start
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        raise SolverError(f"{backend} found no plan (status {status})")
    values = np.array([v.solution_value() for v in variables]) if variables else np.zeros(0)
    picked = np.append(values > 0.5, False)  # index -1 (empty slot) reads the final False
    chosen = [picked[np.where(idx >= 0, idx, -1)] for idx in var_of]
    if problem.channels is not None:
        chosen = _channel_plan(chosen, built.channel_vars)
    value = float(objective.Value())
    if relax:
        # an LP stopped early proves nothing: its current value is not a bound
        bound = value if status == pywraplp.Solver.OPTIMAL else float("inf")
    else:
        bound = value if status == pywraplp.Solver.OPTIMAL else float(objective.BestBound())
    if not relax and status == pywraplp.Solver.OPTIMAL:
        bound = max(value, float(objective.BestBound()))
    prices = Prices.zeros(offers.n_offers)
    if relax:
        for j, row in budget_rows.items():
            prices.budget[j] = row.dual_value()
        for j, row in count_rows.items():
            prices.count[j] = row.dual_value()
        if global_row is not None:
            prices.global_budget = float(global_row.dual_value())
        if problem.funders is not None:
            prices.funder = np.zeros(problem.funders.n_funders)
            prices.funder_of = problem.funders.of_offer
            for f, row in built.funder_rows.items():
                prices.funder[f] = row.dual_value()
    return Solution(
        chosen=chosen, objective=value, bound=bound,
        status=Status.OPTIMAL if status == pywraplp.Solver.OPTIMAL else Status.TIME_LIMIT,
        method=f"exact-{backend.lower()}" + ("-lp" if relax else ""),
        iterations=int(solver.iterations()), prices=prices,
        trace=[{"seconds": seconds, "objective": value, "bound": bound}],
    )
