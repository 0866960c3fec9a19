"""Solvers of :class:`optimizer.model.problem.AssignmentProblem`; each returns a :class:`Solution`."""
from __future__ import annotations

import math
from typing import Any, Callable

from optimizer.core.config import Solver
from optimizer.core.errors import SolverError
from optimizer.io.memory import POLISH_REACH as _POLISH_REACH
from optimizer.io.memory import polish_reach
from optimizer.model.build import WorkerInputs
from optimizer.model.chosen import read_plan_again
from optimizer.model.problem import AssignmentProblem, Prices, Solution, Status
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.repair_shards import where
from optimizer.solve.polish import PolishedSolution, PolishSettings, polish

# what `offeropt check` allows a capacity (optimizer/check/base.py BUDGET_RTOL, BUDGET_ATOL): a plan
# the checker would reject is never reported
_CHECK_RTOL, _CHECK_ATOL = 1e-9, 1e-6
# how far rounding may put a plan's objective above its bound (two sums of the same magnitudes)
_BOUND_RTOL = 1e-9


# the polish's reach (polish_pairs x _POLISH_REACH pairs): its rule lives with the memory
# estimate, which counts the blocks a driver keeps within it


def solve(problem: AssignmentProblem, settings: Solver, warm_start: Prices | None = None,
          progress: Callable[[dict[str, float | None]], None] | None = None,
          source: WorkerInputs | None = None) -> Solution:
    """Solve with the scenario's ``solver.method``; the lagrangian's plan is then polished on its
    core by CP-SAT (:mod:`.polish`) unless ``solver.polish_pairs`` is 0.

    A plan whose gap the passes already certified within ``gap_tolerance`` is what the user asked
    for, so it is polished only when the whole problem fits the polish (where the polish is exact
    and cheap); at a million customers the polish would cost seconds for a few units of value.
    Nor is it run when the problem has more than ``_POLISH_REACH`` times ``polish_pairs`` pairs.
    A skipped polish is recorded with its reason. ``source``: on ``solver.backend = "dask"``,
    the inputs from which the workers build their own shards (else the driver's blocks are sent);
    on ``"local"``, where the plan's chosen pairs read their ``p_redeem`` again (the blocks
    hold none: :func:`optimizer.model.chosen.read_plan_again`).
    """
    solution = _solve(problem, settings, warm_start, progress, source)
    if settings.backend == "local" and source is not None:  # the blocks hold no p_redeem
        solution.plan_problem, solution.chosen = read_plan_again(
            problem, solution.chosen, source.source, source.customers)
    # where the workers held the pairs, or p_redeem is read again, the plan is judged on its
    # own chosen pairs
    return certified(problem if solution.plan_problem is None else solution.plan_problem,
                     solution)


def _lagrangian(problem: AssignmentProblem, settings: Solver, lagrangian: LagrangianSettings,
                warm_start: Prices | None,
                progress: Callable[[dict[str, float | None]], None] | None,
                source: WorkerInputs | None = None) -> tuple[Solution, dict[str, Any]]:
    """The scale method in this process, or on the shards of a Dask cluster; with the
    manifest's record of where it ran (backend name, workers, shards, bytes per pass)."""
    if settings.backend == "local":
        return (solve_lagrangian(problem, lagrangian, warm_start=warm_start, progress=progress),
                {"name": "local", "workers": 1,
                 "repair": where(problem, lagrangian.repair_on_shards)})
    from optimizer.solve.backends.dask_shards import DaskShards  # the dask extra

    if problem.layout is not None and source is None:  # build_problem's rule, broken
        raise SolverError("the driver holds no candidate pair but the workers cannot build "
                          "their own shards; no output was written")

    # the polish's reach: where the shards' reports show no more pairs, the driver holds the
    # blocks after all (the polish runs as in the local run)
    reach = polish_reach(settings) if settings.polish_pairs > 0 else None
    shards = DaskShards(problem, settings.shard_customers, settings.scheduler, settings.workers,
                        settings.memory_limit_gb, source, settings.kernel_cache, reach)
    try:  # the same pass loop, its shards on the workers
        solution = solve_lagrangian(problem, lagrangian, warm_start=warm_start,
                                    progress=progress, shards=shards)
    finally:
        shards.close()
    return solution, {"name": "dask", "scheduler": settings.scheduler or "LocalCluster",
                      "driver_holds_pairs": problem.layout is None, **shards.report()}


def certified(problem: AssignmentProblem, solution: Solution) -> Solution:
    """``solution`` when it can be reported: objective and bound finite, the plan within every
    cap as ``offeropt check`` reads them, and the objective not above the bound. Raises
    :class:`SolverError` otherwise (nothing is written then). An objective above the bound by
    rounding only (relative ``1e-9``) raises the bound to the objective."""
    objective, bound = solution.objective, solution.bound
    if not (math.isfinite(objective) and math.isfinite(bound)):
        raise SolverError(
            f"the plan's objective ({objective}) or upper bound ({bound}) is not a finite number: "
            "the inputs' amounts are too large to add up; no output was written")
    if not problem.feasible(solution.chosen, _CHECK_RTOL, _CHECK_ATOL):
        raise SolverError(
            "the solver's plan breaks a cap or a budget once rounding is counted (amounts of "
            "very different sizes?); no output was written")
    if objective > bound:
        if objective > bound + _BOUND_RTOL * max(abs(objective), abs(bound)):
            raise SolverError(
                f"the plan's objective {objective!r} exceeds its upper bound {bound!r}: the "
                "numbers cannot be trusted (amounts of very different sizes?); no output was "
                "written")
        solution.bound = objective  # equal up to rounding: the gap is 0, not negative
    return solution


def _solve(problem: AssignmentProblem, settings: Solver, warm_start: Prices | None,
           progress: Callable[[dict[str, float | None]], None] | None,
           source: WorkerInputs | None = None) -> Solution:
    if settings.method == "exact":
        return solve_exact(problem, time_limit_s=settings.time_limit_s,
                           gap_tolerance=settings.gap_tolerance)
    solution, backend = _lagrangian(
        problem, settings,
        LagrangianSettings(gap_tolerance=settings.gap_tolerance,
                           max_iterations=settings.max_iterations,
                           time_limit_s=settings.time_limit_s, seed=settings.seed,
                           threads=settings.threads,
                           target_tolerance=settings.target_tolerance,
                           shard_customers=settings.shard_customers,
                           repair_on_shards=settings.repair == "shards"),
        warm_start, progress, source)
    final = _polished(problem, settings, solution, progress)
    final.backend = backend
    return final


def _polished(problem: AssignmentProblem, settings: Solver, solution: Solution,
              progress: Callable[[dict[str, float | None]], None] | None) -> Solution:
    """``solution`` polished by CP-SAT on its core where that can help (see :func:`solve`)."""
    if settings.polish_pairs <= 0:
        return solution
    if problem.channels is not None:  # the polish's CP-SAT model has no channel rows
        return PolishedSolution(**vars(solution), polish={
            "status": "skipped", "reason": "channels: the polish does not model them"})
    pairs = problem.n_pairs
    if problem.layout is not None and pairs <= polish_reach(settings):  # DaskShards' rule broken
        raise SolverError("the driver holds no candidate pair within the polish's reach; no "
                          "output was written")
    whole = pairs <= settings.polish_pairs
    if whole or (solution.status != Status.OPTIMAL and pairs <= polish_reach(settings)):
        if progress is not None:  # the polish can take a while: say so (marked by "polish")
            progress({"polish": float(min(pairs, settings.polish_pairs))})
        return polish(problem, solution, PolishSettings(
            max_pairs=settings.polish_pairs, deterministic_time=settings.polish_time,
            seed=settings.seed, gap_tolerance=settings.gap_tolerance))
    reason = ("the passes certified gap_tolerance" if solution.status == Status.OPTIMAL else
              f"a core of {settings.polish_pairs} pairs is under 1/{_POLISH_REACH} of the "
              f"{pairs} candidate pairs")
    return PolishedSolution(**vars(solution), polish={"status": "skipped", "reason": reason})


__all__ = ["solve", "certified", "polish_reach", "solve_exact", "solve_lagrangian", "LagrangianSettings", "polish",
           "PolishSettings", "PolishedSolution"]
