"""The run's solve stage: the solve with the week's pins fixed, then, on the affinity path, the
pricing rounds that bring left-out candidates back where the final prices say they pay.

Pricing rounds are column generation (Desrosiers, J. and Lubbecke, M. E. (2005), A primer in
column generation, in Column Generation, Springer, 1-32) over the candidates: the solve sees each
customer's ``affinity.candidates_per_customer`` best offers by value, but where budgets bind,
the offers she values most are the dearest, and her best response at the final prices may lie
among the offers she was never given. Each round prices every left-out eligible pair at the
solution's prices (:func:`~optimizer.solve.lagrangian.truncation.priced_pairs`), adds each
customer's best positive ones that can raise her best response (worth more than what they would
displace in it) to her candidates (:func:`~optimizer.model.build.with_candidates`) and solves
again from those prices. A round's plan is kept only when the solver's own rule for comparing
plans prefers it (:meth:`~optimizer.solve.lagrangian.planning.BestPlan.offer`: closer to the
``min_customers`` targets first, then worth more); the rounds stop when no left-out pair prices
in, when a round's plan is not kept, or after ``affinity.pricing_rounds``. The manifest's ``candidates.pricing_rounds`` lists
each round.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from optimizer.core.config import Scenario
from optimizer.model import pins
from optimizer.model.build import Built, with_candidates
from optimizer.model.problem import Prices, Solution, Status
from optimizer.scoring.affinity import AffinityModel
from optimizer.solve import certified, solve
from optimizer.solve.lagrangian.planning import BestPlan, target_step
from optimizer.solve.lagrangian.truncation import priced_pairs

Progress = Callable[[dict[str, float | None]], None]


def solve_pinned(built: Built, scenario: Scenario, warm_start: Prices | None,
                 progress: Progress) -> Solution:
    """The solve; with ``rules.pin`` the kept pins are fixed and the solver plans the rest of the
    week (:mod:`optimizer.model.pins`), then the pins go back into the plan, certified whole."""
    problem = built.problem
    if built.pins is not None:
        pins.apply(problem, built.pins)
    solution = solve(problem, scenario.solver, warm_start=warm_start, progress=progress,
                     source=built.source)
    if built.source_note:  # the workers could not build their own shards: say why
        solution.backend["shards_built_on_driver_because"] = built.source_note
    if built.pins is not None:
        solution = certified(problem, pins.restore(problem, built.pins, solution))
        # the solver's gap test saw the rest of the week alone; the status is the whole plan's
        # (its gap may also have widened: a category her pins fill in part was relaxed in the
        # solve and repaired after it, a gap no more passes would close)
        if solution.gap <= scenario.solver.gap_tolerance:
            solution.status = Status.OPTIMAL
        elif solution.status == Status.OPTIMAL:
            solution.status = Status.STALLED
    return solution


def solve_week(built: Built, scenario: Scenario, model: AffinityModel | None,
               warm_start: Prices | None, progress: Progress, started: float
               ) -> tuple[Built, Solution, list[dict[str, Any]] | None]:
    """The solve (:func:`solve_pinned`), then the pricing rounds where the scenario asks for them
    on the affinity path (:func:`pricing_rounds`; ``None``: no rounds asked). Where the Dask
    workers held every pair, the problem returned is the plan's own (its chosen pairs only:
    :attr:`~optimizer.model.problem.Solution.plan_problem`)."""
    solution = solve_pinned(built, scenario, warm_start, progress)
    if solution.plan_problem is not None:  # the workers held every pair: the plan's own problem
        return replace(built, problem=solution.plan_problem), solution, None
    if model is None or not scenario.affinity.pricing_rounds:
        return built, solution, None
    return pricing_rounds(built, scenario, model, solution, progress, started)


def pricing_rounds(built: Built, scenario: Scenario, model: AffinityModel, solution: Solution,
                   progress: Progress, started: float
                   ) -> tuple[Built, Solution, list[dict[str, Any]]]:
    """Up to ``affinity.pricing_rounds`` rounds of pricing (module docstring) after the first
    solve, which started at ``started`` (``time.perf_counter``): the problem and plan kept, and
    per round the pairs priced in and those skipped as unable to help, the round's objective,
    bound, targets' shortfall and candidate pairs, and whether its plan was kept. The rounds' solves share what ``solver.time_limit_s`` leaves."""
    rounds: list[dict[str, Any]] = []
    # the plans compete by the solver's own rule, targets first (a round's plan has its own
    # problem: each plan's shortfall is taken on the problem it was made for)
    best = BestPlan(built.problem, solution.prices,
                    target_step(built.problem, scenario.solver.target_tolerance))
    best.offer(solution.chosen, solution.objective, solution.prices,
               built.problem.shortfall(solution.chosen))
    added = np.zeros(0, dtype=np.int64)  # every round's pairs stay among the candidates
    for _ in range(scenario.affinity.pricing_rounds):
        left = scenario.solver.time_limit_s - (time.perf_counter() - started)
        if left <= 0:
            rounds.append({"skipped": "solver.time_limit_s reached"})
            break
        tick = time.perf_counter()
        extra, unable = priced_pairs(model, built.inputs, scenario, built.rules, built.problem,
                                     solution, built.dropped, built.previous)
        entry: dict[str, Any] = {"pairs_priced_in": int(extra.size),
                                 "pairs_unable_to_help": unable,
                                 "seconds": {"price": time.perf_counter() - tick}}
        rounds.append(entry)
        if not extra.size:
            break
        added = np.union1d(added, extra)
        tick = time.perf_counter()
        again = with_candidates(built, scenario, model, added)
        entry["seconds"]["build"] = time.perf_counter() - tick
        within = scenario.model_copy(update={"solver": scenario.solver.model_copy(
            update={"time_limit_s": max(scenario.solver.time_limit_s
                                        - (time.perf_counter() - started), 1e-3)})})
        tick = time.perf_counter()
        plan = solve_pinned(again, within, solution.prices, progress)
        entry["seconds"]["solve"] = time.perf_counter() - tick
        short = again.problem.shortfall(plan.chosen)
        kept = best.offer(plan.chosen, plan.objective, plan.prices, short)
        entry.update(candidate_pairs=again.problem.n_pairs, objective=plan.objective,
                     bound=plan.bound, status=str(plan.status), passes=plan.iterations,
                     target_shortfall=short, kept=kept)
        if not kept:
            break
        built, solution = again, plan
    return built, solution, rounds


__all__ = ["pricing_rounds", "solve_pinned", "solve_week"]
