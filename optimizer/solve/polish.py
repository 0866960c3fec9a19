"""Core-problem polish: re-solve the uncertain part of a Lagrangian plan exactly with CP-SAT.

After the price passes most customers' decisions are settled: their reduced values under the final
prices are far from every threshold, so no plan close to the optimum would change them. What is
left uncertain is a *core* (Balas & Zemel 1980; Pisinger's core algorithms for knapsack problems),
the customers whose plan differs from their best response at the final prices or who hold
candidates of offers whose budget, ``max_customers`` or the global budget binds (or whose
``min_customers`` target is short), ranked by how close those candidates' reduced values are to
the customer's threshold. The polish:

1. picks core customers in that order up to ``max_pairs`` candidate pairs (all customers and all
   pairs when the whole problem fits, which makes the polish exact on small instances); a core
   customer keeps her chosen pairs and her best unchosen ones free;
2. fixes every other decision and computes the residual capacities (budget minus the spend of the
   fixed pairs, and so on);
3. solves the core as an integer program with OR-Tools CP-SAT, hinted with the Lagrangian plan.
   Costs are rounded *up* and capacities *down* to integers, so every integer-feasible plan is
   feasible for the true (float) problem; each offer's customer count may not fall below
   ``min(its count in the Lagrangian plan, min_customers)`` (a target is never traded for value);
4. accepts the result only if it passes a float re-check of every rule and its true objective is
   higher.

CP-SAT runs on one worker, with a fixed seed and a *deterministic* time limit (work units, not
wall time), so the same inputs give the same plan on any machine and load.

When the core is the whole problem, a second CP-SAT model with costs rounded *down*, capacities
and values rounded *up* (a relaxation of the true problem) gives a proven upper bound; the reported
bound becomes the smaller of it and the Lagrangian bound. Otherwise the Lagrangian bound stands.

No Python loop runs over pairs or customers in the selection or the model build except the calls
the CP-SAT API needs (one per variable and one per customer constraint); every coefficient and index
array is computed with numpy.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from optimizer.core.interrupt import import_held, keep_sigint_handler, run_interruptible
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    Prices,
    Solution,
    Status,
    relative_gap,
)
from optimizer.solve import polish_campaign as campaign
from optimizer.solve.cpsat_rows import SCALE, capacity_row, row, runs
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.greedy import select

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

_EXTRA_UNCHOSEN = 6  # unchosen candidates a core customer keeps free (beyond her chosen ones)
_ACCEPT_RTOL = 1e-12  # a polished plan must beat the plan by more than this (relative)
_FEAS_RTOL, _FEAS_ATOL = 1e-12, 1e-12  # float re-check of caps (the tolerance of repair)


@dataclass(frozen=True)
class PolishSettings:
    """max_pairs: candidate pairs in the core at most (0 = no polish); deterministic_time: CP-SAT's
    deterministic time limit (its work units, about seconds on one core) per model; seed: CP-SAT's
    random seed; gap_tolerance: the gap at which a tightened bound reports ``optimal``."""

    max_pairs: int = 10_000
    deterministic_time: float = 1.0
    seed: int = 0
    gap_tolerance: float = 1e-3
    tighten_bound: bool = True


@dataclass
class PolishedSolution(Solution):
    """A :class:`Solution` with the polish's record (``polish``: see :func:`polish`)."""

    polish: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Core:
    """The free pairs of the core, in customer order (chunk-independent)."""

    block: np.ndarray      # block index of each free pair
    row: np.ndarray        # row in its block
    slot: np.ndarray       # slot in its row
    customer: np.ndarray   # 0..n_core-1, the core customer owning the pair
    offer: np.ndarray
    value: np.ndarray
    cost: np.ndarray
    chosen: np.ndarray     # in the plan being polished (the hint)
    cap: np.ndarray        # per core customer
    n_customers: int
    whole: bool            # every pair of the problem is free


def _flat(problem: AssignmentProblem, per_block: list[np.ndarray]) -> np.ndarray:
    """Concatenate a per-pair array over the valid slots of every block (customer order)."""
    parts = [a[b.offer >= 0] for b, a in zip(problem.blocks, per_block)]
    return np.concatenate(parts) if parts else np.zeros(0)


def _tight_offers(problem: AssignmentProblem, prices: Prices, chosen: list[np.ndarray]
                  ) -> np.ndarray:
    """Offers whose coupling constraints bind (or could): a candidate would not fit, a positive
    price, or a ``min_customers`` target not met."""
    offers = problem.offers
    used = problem.usage(chosen)
    spend, count = used.spend, used.customers
    offer_all = _flat(problem, [b.offer for b in problem.blocks]).astype(np.int64)
    cost_all = _flat(problem, [b.cost for b in problem.blocks])
    max_cost = np.zeros(offers.n_offers)
    if offer_all.size:
        np.maximum.at(max_cost, offer_all, cost_all)
    finite_b = np.isfinite(offers.budget)
    budget_left = np.where(finite_b, offers.budget, 0.0) - spend
    tight = finite_b & ((budget_left < max_cost) | (prices.budget > 0))
    finite_c = np.isfinite(offers.max_customers)
    tight |= finite_c & ((np.where(finite_c, offers.max_customers, 0) - count < 1)
                         | (prices.count > 0))
    tight |= offers.min_customers > count
    tight |= campaign.tight_offers(problem, prices.funder, spend, max_cost)
    if np.isfinite(problem.global_budget) and offer_all.size:
        if problem.global_budget - spend.sum() < max_cost.max() or prices.global_budget > 0:
            tight[:] = True
    return tight


def _customer_keys(problem: AssignmentProblem, block: CandidateBlock, mask: np.ndarray,
                   reduced: np.ndarray, tight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per customer of a block: whether her plan differs from her best response, and how close
    her decisions on tight offers are to flipping (smaller = more uncertain; inf = no tight pair).
    """
    offers = problem.offers
    if problem.max_per_category is None or not offers.multi_category.any():
        # one category per offer: the relaxed best response is the exact one; the kernel takes
        # the reduced values as its values at zero prices
        zeros = np.zeros(offers.n_offers)
        best = kernels.respond(reduced, np.zeros_like(reduced), block.offer, block.cap, zeros,
                               zeros, 0.0, zeros, offers.categories[:, 0],
                               problem.max_per_category)[0]
    else:
        best = select(reduced, block.offer, block.cap, offers.categories,
                      problem.max_per_category, relaxed=False, depth_cap=problem.max_cap).chosen
    differs = (best != mask).any(axis=1)
    valid = block.offer >= 0
    count = mask.sum(axis=1)
    at_cap = count >= block.cap
    lowest_in = np.where(mask, reduced, np.inf).min(axis=1)
    best_out = np.where(valid & ~mask, reduced, -np.inf).max(axis=1)
    # an unchosen pair enters above the weakest chosen one (customer full) or above zero; a
    # chosen pair leaves below the best unchosen one (customer full) or below zero
    enter = np.where(at_cap, lowest_in, 0.0)
    leave = np.where(at_cap, np.maximum(best_out, 0.0), 0.0)
    margin = np.where(mask, reduced - leave[:, None], enter[:, None] - reduced)
    margin = np.maximum(margin, 0.0)
    pair_tight = valid & tight[np.maximum(block.offer, 0)]
    closeness = np.where(pair_tight, margin, np.inf).min(axis=1)
    return differs, closeness


def _free_slots(block: CandidateBlock, mask: np.ndarray, reduced: np.ndarray,
                extra: int | None) -> np.ndarray:
    """The pairs a core customer keeps free: her chosen ones and her ``extra`` best unchosen ones
    of positive value (all when ``extra`` is None); none for a customer with no room."""
    live = (block.offer >= 0) & (block.value > 0) & (block.cap > 0)[:, None]
    out = live & ~mask
    if extra is not None and out.shape[1] > extra:
        score = np.where(out, reduced, -np.inf)
        # stable: ties by slot, i.e. by offer index, whatever the chunking
        order = np.argsort(-score, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :], axis=1)
        out &= rank < extra
    return mask | out


def _reduced(block: CandidateBlock, prices: Prices) -> np.ndarray:
    target = prices.target if prices.target is not None else np.zeros_like(prices.budget)
    return kernels.reduced_values(block.value, block.cost, block.offer, prices.cost_price,
                                  prices.count, prices.global_budget, target)


def _picked_free(block: CandidateBlock, mask: np.ndarray, rows_in: np.ndarray, prices: Prices
                 ) -> np.ndarray:
    """:func:`_free_slots` of the picked customers only (ranking everyone's candidates would
    cost a sort of every pair), as a full-size mask."""
    free = np.zeros_like(mask)
    rows = np.flatnonzero(rows_in)
    if rows.size:
        sub = CandidateBlock(block.customers[rows], block.offer[rows], block.value[rows],
                             block.cost[rows], block.p_redeem[rows], block.cap[rows])
        free[rows] = _free_slots(sub, mask[rows], _reduced(sub, prices), _EXTRA_UNCHOSEN)
    return free


def select_core(problem: AssignmentProblem, plan: list[np.ndarray], prices: Prices,
                max_pairs: int) -> _Core:
    """The core: customers ranked by uncertainty, taken while their free pairs fit ``max_pairs``."""
    whole = problem.n_pairs <= max_pairs
    if whole:
        free = [_free_slots(b, m, _reduced(b, prices), None)
                for b, m in zip(problem.blocks, plan)]
        picked = [np.ones(b.n_customers, dtype=bool) for b in problem.blocks]
    else:
        tight = _tight_offers(problem, prices, plan)
        differs, closeness, sizes = [], [], []
        for block, mask in zip(problem.blocks, plan):
            d, c = _customer_keys(problem, block, mask, _reduced(block, prices), tight)
            differs.append(d)
            closeness.append(c)
            # what _free_slots keeps, counted without ranking anyone
            unchosen = ((block.offer >= 0) & (block.value > 0) & ~mask).sum(axis=1)
            sizes.append(mask.sum(axis=1) + np.where(block.cap > 0, np.minimum(
                unchosen, _EXTRA_UNCHOSEN), 0))
        d_all = np.concatenate(differs) if differs else np.zeros(0, dtype=bool)
        c_all = np.concatenate(closeness) if closeness else np.zeros(0)
        s_all = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.int64)
        # customers whose decisions cannot move (no tight pair, plan = best response) stay out
        candidate = (d_all | np.isfinite(c_all)) & (s_all > 0)
        order = np.lexsort((np.arange(d_all.size), c_all, ~d_all))
        order = order[candidate[order]]
        fits = np.cumsum(s_all[order]) <= max_pairs
        chosen_customers = np.zeros(d_all.size, dtype=bool)
        chosen_customers[order[fits]] = True
        bounds = np.cumsum([0] + [b.n_customers for b in problem.blocks])
        picked = [chosen_customers[bounds[i]:bounds[i + 1]] for i in range(len(problem.blocks))]
        free = [_picked_free(block, mask, rows_in, prices)
                for block, mask, rows_in in zip(problem.blocks, plan, picked)]
    parts = []
    for b, (block, mask, f, rows_in) in enumerate(zip(problem.blocks, plan, free, picked)):
        f = f & rows_in[:, None]
        row, slot = np.nonzero(f)
        parts.append((np.full(row.size, b), row, slot, block.offer[row, slot],
                      block.value[row, slot], block.cost[row, slot], mask[row, slot],
                      block.customers[row]))
    if parts:
        blk, row, slot, offer, value, cost, hint, _ = (np.concatenate(c) for c in zip(*parts))
    else:
        blk = row = slot = offer = np.zeros(0, dtype=np.int64)
        value = cost = np.zeros(0)
        hint = np.zeros(0, dtype=bool)
    # core customers numbered in order of appearance (blocks and rows are in customer order)
    key = blk.astype(np.int64) * (1 + max((b.n_customers for b in problem.blocks), default=0)) + row
    new = np.ones(key.size, dtype=bool)
    new[1:] = key[1:] != key[:-1]
    customer = np.cumsum(new) - 1
    firsts = np.flatnonzero(new)
    caps = np.array([], dtype=np.int64)
    if firsts.size:
        caps = np.concatenate([
            problem.blocks[b].cap[row[firsts][blk[firsts] == b]]
            for b in np.unique(blk[firsts])]).astype(np.int64)
    return _Core(blk.astype(np.int64), row.astype(np.int64), slot.astype(np.int64),
                 customer.astype(np.int64), offer.astype(np.int64), value, cost, hint, caps,
                 int(firsts.size), bool(whole))


def _residuals(problem: AssignmentProblem, plan: list[np.ndarray], core: _Core
               ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray | None]:
    """Budget, ``max_customers`` and global budget left by the fixed pairs, each offer's count
    floor in the core (``min(plan count, min_customers)`` minus the fixed count), and each
    funder's budget left (``None`` without funders)."""
    offers = problem.offers
    fixed = [m.copy() for m in plan]
    for b in np.unique(core.block):
        sel = core.block == b
        fixed[b][core.row[sel], core.slot[sel]] = False
    used = problem.usage(fixed)
    spend, count = used.spend, used.customers
    plan_count = problem.usage(plan).customers
    budget_left = offers.budget - spend
    count_left = offers.max_customers - count
    global_left = problem.global_budget - float(spend.sum())
    floor = np.minimum(plan_count, offers.min_customers) - count
    return budget_left, count_left, global_left, floor, campaign.funder_left(problem, fixed)


def build_model(problem: AssignmentProblem, core: _Core, budget_left: np.ndarray,
                count_left: np.ndarray, global_left: float, floor: np.ndarray | None,
                relax: bool, funder_left: np.ndarray | None = None
                ) -> tuple[cp_model.CpModel, float]:
    """The core as a CP-SAT model over one boolean per free pair (variable ``k`` is pair ``k``);
    returns the model and the objective's scale (integer objective = scale x value).
    ``funder_left``: funders' budgets left by the fixed pairs (whole budgets when ``None``)."""
    from ortools.sat.python import cp_model  # here, not above: it imports pandas (start-up)

    offers = problem.offers
    model = cp_model.CpModel()
    n = core.offer.size
    xs = [model.new_bool_var("") for _ in range(n)]  # one API call per variable
    proto = model.proto
    index = np.arange(n, dtype=np.int64)
    ones = np.ones(n, dtype=np.int64)
    # per customer: at most her cap
    order, starts, ends = runs(core.customer)
    sizes = ends - starts
    caps = core.cap[core.customer[order[starts]]] if n else np.zeros(0, dtype=np.int64)
    for s, e, cap in zip(starts[sizes > caps], ends[sizes > caps], caps[sizes > caps]):
        row(proto, index[order[s:e]], ones[s:e], 0, int(cap))
    # per customer and category: at most max_per_category
    if problem.max_per_category is not None and n:
        width = offers.categories.shape[1]
        cat = offers.categories[core.offer]                        # (n, width)
        pair = np.repeat(index, width)
        cat = cat.ravel()
        keep = cat >= 0
        pair, cat = pair[keep], cat[keep]
        key = core.customer[pair] * max(offers.n_categories, 1) + cat
        order, starts, ends = runs(key)
        big = (ends - starts) > problem.max_per_category
        for s, e in zip(starts[big], ends[big]):
            members = pair[order[s:e]]
            row(proto, members, np.ones(members.size, dtype=np.int64), 0,
                 problem.max_per_category)
    # per offer: budget, max_customers, and the count floor that keeps targets
    order, starts, ends = runs(core.offer)
    for s, e in zip(starts, ends):
        members = order[s:e]
        j = int(core.offer[members[0]])
        if np.isfinite(budget_left[j]):
            capacity_row(proto, members, core.cost[members], float(budget_left[j]), relax)
        if np.isfinite(count_left[j]):
            limit = int(np.floor(count_left[j] + (1e-9 if relax else 0.0)))
            if members.size > limit:
                row(proto, members, np.ones(members.size, dtype=np.int64), 0, max(limit, 0))
        if floor is not None and floor[j] > 0:
            row(proto, members, np.ones(members.size, dtype=np.int64), int(floor[j]),
                 members.size)
    if np.isfinite(global_left):
        capacity_row(proto, index, core.cost, float(global_left), relax)
    campaign.add_rows(problem, core, proto, funder_left, relax)  # groups, funders
    top = float(core.value.max()) if n else 0.0
    scale = SCALE / top if top > 0 else 1.0
    if relax:
        value_int = np.ceil(core.value * scale * (1 + 1e-12))
    else:
        value_int = np.round(core.value * scale)
    model.maximize(cp_model.LinearExpr.weighted_sum(xs, value_int.astype(np.int64).tolist()))
    proto.solution_hint.vars.extend(index.tolist())
    proto.solution_hint.values.extend(core.chosen.astype(np.int64).tolist())
    return model, scale


def _run(model: cp_model.CpModel, settings: PolishSettings
         ) -> tuple[cp_model.CpSolver, cp_model.CpSolverStatus]:
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = 1
    params.random_seed = int(settings.seed)
    params.max_deterministic_time = float(settings.deterministic_time)
    params.log_search_progress = False
    # presolve's dominance and overlap detection can spend the whole limit on a large core
    # before the search starts (measured on the demo's 20,000-pair core); the hint and the LP
    # need no presolve to improve on the plan
    params.cp_model_presolve = False
    # Ctrl-C is the run's to handle: CP-SAT's own handler would end the search, swallow the
    # interrupt and then reset SIGINT to the system default (the next Ctrl-C kills the process
    # with its temporary files); the solve runs on a thread the interrupt can stop instead
    params.catch_sigint_signal = False
    try:
        with keep_sigint_handler():
            status = run_interruptible(lambda: solver.solve(model), solver.stop_search)
    except KeyboardInterrupt:
        # the solver is destroyed now, not at interpreter exit (where its destructor aborts
        # the process): the traceback keeps this frame, and a reference cycle keeps the solver
        del solver, model
        gc.collect()
        raise
    return solver, status


def polish(problem: AssignmentProblem, solution: Solution, settings: PolishSettings
           ) -> PolishedSolution:
    """Polish ``solution`` (a feasible plan of ``problem``) on its core; see the module docstring.

    The returned solution's ``polish`` records: ``pairs`` and ``customers`` in the core,
    ``whole_problem``, ``objective_before`` / ``objective_after``, ``bound_before`` /
    ``bound_after``, ``status`` (CP-SAT's), ``accepted``, ``bound_status`` (the relaxation's
    CP-SAT status, when run) and ``seconds``.
    """
    cp_model = import_held("ortools.sat.python.cp_model")

    start = time.perf_counter()
    plan = [m.copy() for m in solution.chosen]
    record: dict[str, Any] = {"pairs": 0, "customers": 0, "whole_problem": False,
                              "objective_before": float(solution.objective),
                              "objective_after": float(solution.objective),
                              "bound_before": float(solution.bound),
                              "bound_after": float(solution.bound),
                              "status": "skipped", "accepted": False}
    chosen, objective, bound, status = solution.chosen, solution.objective, solution.bound, \
        solution.status
    if settings.max_pairs > 0 and problem.blocks:
        core = select_core(problem, plan, solution.prices, settings.max_pairs)
        record.update(pairs=int(core.offer.size), customers=core.n_customers,
                      whole_problem=core.whole)
        if core.whole and not core.offer.size and settings.tighten_bound:
            # no pair of positive value that any customer has room for: nothing beats 0
            bound = min(bound, max(objective, 0.0))
            record["bound_after"] = float(bound)
        if core.offer.size:
            budget_left, count_left, global_left, floor, left = _residuals(problem, plan, core)
            model, _ = build_model(problem, core, budget_left, count_left, global_left, floor,
                                   relax=False, funder_left=left)
            solver, cp_status = _run(model, settings)
            record["status"] = solver.status_name(cp_status)
            if cp_status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                x = np.asarray(solver.response_proto.solution, dtype=np.int64)[:core.offer.size] > 0
                trial = [m.copy() for m in plan]
                for b in np.unique(core.block):
                    sel = core.block == b
                    trial[b][core.row[sel], core.slot[sel]] = x[sel]
                trial_objective = problem.objective(trial)
                old_count = problem.usage(plan).customers
                new_count = problem.usage(trial).customers
                targets = problem.offers.min_customers
                keeps_targets = bool((new_count >= np.minimum(old_count, targets)).all())
                better = trial_objective > solution.objective * (1 + _ACCEPT_RTOL) + 1e-12
                if better and keeps_targets and problem.feasible(trial, _FEAS_RTOL, _FEAS_ATOL):
                    chosen, objective = trial, trial_objective
                    record.update(accepted=True, objective_after=float(trial_objective))
            if core.whole and settings.tighten_bound and cp_status == cp_model.OPTIMAL:
                # a relaxation of the true problem: its proven bound is a valid upper bound
                relaxed, scale = build_model(problem, core, problem.offers.budget,
                                             problem.offers.max_customers,
                                             problem.global_budget, None, relax=True)
                solver_r, status_r = _run(relaxed, settings)
                record["bound_status"] = solver_r.status_name(status_r)
                if status_r in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                    proven = float(solver_r.best_objective_bound) / scale * (1 + 1e-12)
                    if proven < bound:
                        bound = max(proven, objective)
                    record["bound_after"] = float(bound)
    gap = relative_gap(bound + problem.fixed_value, objective + problem.fixed_value)
    if (record["accepted"] or bound < solution.bound) and gap <= settings.gap_tolerance:
        status = Status.OPTIMAL
    record["seconds"] = time.perf_counter() - start
    return PolishedSolution(chosen=chosen, objective=float(objective), bound=float(bound),
                            status=status,
                            method=solution.method, iterations=solution.iterations,
                            prices=solution.prices, trace=solution.trace, polish=record)
