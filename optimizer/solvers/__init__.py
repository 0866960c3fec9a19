"""Solvers of :class:`optimizer.problem.AssignmentProblem`; each returns a :class:`Solution`."""
from __future__ import annotations

from typing import Callable

from ..config import Solver
from ..problem import AssignmentProblem, Prices, Solution
from .exact import solve_exact
from .lagrangian import LagrangianSettings, solve_lagrangian


def solve(problem: AssignmentProblem, settings: Solver, warm_start: Prices | None = None,
          progress: Callable[[dict[str, float]], None] | None = None) -> Solution:
    """Solve with the scenario's ``solver.method``."""
    if settings.method == "exact":
        return solve_exact(problem, time_limit_s=settings.time_limit_s,
                           gap_tolerance=settings.gap_tolerance)
    return solve_lagrangian(
        problem,
        LagrangianSettings(gap_tolerance=settings.gap_tolerance,
                           max_iterations=settings.max_iterations,
                           time_limit_s=settings.time_limit_s, seed=settings.seed),
        warm_start=warm_start, progress=progress)


__all__ = ["solve", "solve_exact", "solve_lagrangian", "LagrangianSettings"]
