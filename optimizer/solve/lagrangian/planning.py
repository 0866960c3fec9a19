"""The scale method's plans (:mod:`.method`): each pass's feasible plan from the customers' first
plans, and the best plan seen.

A plan is the customers' best responses repaired and refilled within every capacity, trimmed to
the groups and funders, then sent on channels. The channels' assignment (a transportation LP over
the plan's pairs) is its dearest step, so a plan whose channels' upper bound
(:func:`.channels.ceiling`) cannot beat the best plan is not finished: it would change nothing.
Where the repair and refill run on the shards (:func:`plan_on_shards`), each plan stays on the
shards: they apply the cuts and their grants, trim each customer to the offer groups, answer
O(offers) sums and keep the best plan, gathered once at the end (:meth:`BestPlan.final`).
"""
from __future__ import annotations

import time

import numpy as np

from optimizer.core.parallel import ThreadMap
from optimizer.model.problem import AssignmentProblem, Prices, relative_gap
from optimizer.solve.lagrangian import channels as channel_rules
from optimizer.solve.lagrangian import funders as funder_rules
from optimizer.solve.lagrangian import groups as group_rules
from optimizer.solve.lagrangian import repair_shards
from optimizer.solve.lagrangian.executor import ShardExecutor
from optimizer.solve.lagrangian.refill_shards import sharded_refill
from optimizer.solve.lagrangian.repair import refill, repair

_TARGET_PASSES = 3  # passes given to min_customers targets before a small gap may stop the solve


class BestPlan:
    """The best plan seen: targets first (a plan closer to every ``min_customers`` wins), then the
    objective; plans within ``target_step`` of the least shortfall seen compete on objective, so
    a plan is not kept over a much better one for a few customers more."""

    def __init__(self, problem: AssignmentProblem, prices: Prices, target_step: int) -> None:
        self.problem, self.target_step = problem, target_step
        self.objective = -np.inf
        # None: the best plan is kept on the shards of ``on_shards`` (:meth:`offer_on_shards`)
        self.chosen: list[np.ndarray] | None = [np.zeros_like(b.offer, dtype=bool)
                                                for b in problem.blocks]
        self.on_shards: ShardExecutor | None = None
        self.prices, self.short = prices, np.iinfo(np.int64).max
        self.least_short = self.short
        self.views = channel_rules.PricedViews(problem)  # the plans' priced values, one set

    def consider(self, chosen: list[np.ndarray], objective: float, prices: Prices,
                 run: ThreadMap | None = None) -> int:
        """Keep the plan if it is the best so far; returns its shortfall (``run``: the solve's
        threads, for the plan's walk)."""
        short = self.problem.shortfall(chosen, run)
        self.offer(chosen, objective, prices, short)
        return short

    def offer(self, chosen: list[np.ndarray] | None, objective: float, prices: Prices,
              short: int) -> bool:
        """The rule of :meth:`consider` for a plan whose shortfall ``short`` is known (it may
        belong to another problem over the same offers, as a pricing round's plan does): keep
        it if it is the best so far; returns whether it was kept."""
        self.least_short = min(self.least_short, short)
        slack = self.least_short + self.target_step
        if short <= slack and (objective > self.objective or self.short > slack):
            self.objective, self.chosen, self.prices, self.short = objective, chosen, prices, short
            return True
        return False

    def offer_on_shards(self, ex: ShardExecutor, made: tuple[int, list[tuple]],
                        objective: float, prices: Prices, short: int) -> None:
        """:meth:`offer` for a plan kept on the shards of ``ex`` (``made``: its number and
        each shard's recipe, :meth:`.shard.Shard.plan_keep`): if it wins, the shards keep it."""
        if self.offer(None, objective, prices, short):
            ex.plan_keep(*made)
            self.on_shards = ex

    def final(self) -> list[np.ndarray]:
        """The best plan's masks (gathered once from the shards where they kept it)."""
        if self.chosen is not None:
            return self.chosen
        assert self.on_shards is not None
        return self.on_shards.plan_best()

    def final_problem(self, ex: ShardExecutor
                      ) -> tuple[AssignmentProblem | None, list[np.ndarray]]:
        """The best plan as :meth:`final` gives it, with ``None``; where the driver holds no
        pairs (the problem's layout only: the Dask workers hold them), the problem of the plan's
        chosen pairs, gathered once from the shards of ``ex`` (the layout kept: its
        ``n_pairs`` stays every candidate's count), and its masks."""
        if self.problem.layout is None:
            return None, self.final()
        return ex.chosen_problem()

    def beats(self, ceiling: float, short: int) -> bool:
        """Whether the best plan so far wins over any plan of objective at most ``ceiling`` and
        shortfall at least ``short``, which would not lower the least shortfall either: such a
        plan changes nothing in :meth:`consider` (and need not be finished)."""
        return (short >= self.least_short
                and self.short <= self.least_short + self.target_step
                and ceiling < self.objective - 1e-9 * abs(self.objective))

    def certified(self, best_bound: float, tolerance: float, iteration: int) -> bool:
        """Whether the best plan's gap to ``best_bound`` is within ``tolerance`` (a plan short
        of its targets gets ``_TARGET_PASSES`` passes before a small gap may stop the solve)."""
        gap = plan_gap(best_bound, self.objective, self.problem.fixed_value)
        return (gap is not None and gap <= tolerance
                and not (self.short and iteration < _TARGET_PASSES))


def target_step(problem: AssignmentProblem, tolerance: float) -> int:
    """The shortfall within which plans compete on objective (:class:`BestPlan`): ``tolerance``
    (``solver.target_tolerance``) of the customers every ``min_customers`` asks for, at least 1."""
    return max(1, int(tolerance * float(problem.offers.min_customers.sum())))


def make_plan(problem: AssignmentProblem, prices: Prices, chosen: list[np.ndarray],
              run: ThreadMap, best: BestPlan, ex: ShardExecutor | None = None
              ) -> tuple[list[np.ndarray], float] | None:
    """A feasible plan from ``chosen``, the customers' first plans at ``prices``
    (:func:`.method.plan_rows`, made on the problem priced for channels), repaired and refilled,
    then sent on channels; ``None`` when its channels' upper bound (:func:`.channels.ceiling`) shows
    that ``best`` beats it whatever the channels (their assignment is the plan's dearest step).
    The problem priced for channels is made in ``best.views`` (:class:`.channels.PricedViews`).
    ``ex``: the shards that made ``chosen`` (their last ``plan_rows``); the repair runs on them
    where :func:`.repair_shards.applies` (``solver.repair = "shards"``, no funder budget, no
    channels), on the driver's pairs
    otherwise (:func:`.repair_shards.where` names which, for the manifest)."""
    whole, problem = problem, best.views.at(prices)  # values net of channels
    if ex is not None and repair_shards.applies(whole, ex.repair_on_shards):
        done = repair_shards.sharded_repair(ex, problem, chosen)
        spent = (done.spend, done.count, done.total)
        if ex.refill_on_shards:  # the same pairs as the driver's refill (refill_shards.py)
            sharded_refill(ex, problem, chosen, prices, done.applied, spent)
        else:
            refill(problem, chosen, prices, spent=spent, map_blocks=run)
    else:
        kept = repair(problem, chosen, run)
        # refill ranks candidates by their reduced values at these prices, target bonus included
        refill(problem, chosen, prices, kept, map_blocks=run)
    group_rules.trim_plan(problem, chosen)  # the refill knows no groups
    funder_rules.cut_plan(problem, chosen)  # nor funders
    if whole.channels is not None and best.beats(
            channel_rules.ceiling(whole, problem, prices, chosen), whole.shortfall(chosen, run)):
        return None
    chosen = channel_rules.assign(whole, chosen)  # nor channels
    return chosen, whole.objective(chosen, run)


def plan_on_shards(problem: AssignmentProblem, ex: ShardExecutor | None) -> bool:
    """Whether each plan stays on the shards of ``ex`` (repaired, refilled, trimmed to the
    offer groups and kept there, only O(offers) sums sent): the repair and refill run there
    (:func:`.repair_shards.applies`)."""
    return (ex is not None and repair_shards.applies(problem, ex.repair_on_shards)
            and ex.refill_on_shards)


def first_plans(problem: AssignmentProblem, prices: Prices, ex: ShardExecutor
                ) -> list[np.ndarray] | None:
    """The customers' first plans at ``prices`` from the shards' last responses: gathered
    (:meth:`.ShardExecutor.plan_rows`), or ``None`` where the plan stays on the shards
    (:func:`plan_on_shards`: each keeps its own)."""
    if plan_on_shards(problem, ex):
        ex.all("plan_make", prices)
        return None
    return ex.plan_rows(prices)


def _shard_plan(problem: AssignmentProblem, prices: Prices, ex: ShardExecutor, plain: bool
                ) -> tuple[float, int, tuple[int, list[tuple]]]:
    """The pass's plan made on the shards (their last ``plan_make``): repaired and refilled
    there; its objective, shortfall, number and each shard's recipe (:meth:`.shard.Shard.
    plan_keep`; ``plain``: made from the plain responses, a replanned pass)."""
    done = repair_shards.sharded_repair(ex, problem, None)
    granted = sharded_refill(ex, problem, None, prices, done.applied,
                             (done.spend, done.count, done.total))
    plan_id, counts, objective = ex.plan_apply(done.applied, granted)
    recipes = [(prices, plain, done.applied, g) for g in granted]
    return objective, problem.shortfall_of(counts), (plan_id, recipes)


def plan_pass(problem: AssignmentProblem, prices: Prices, first: list[np.ndarray] | None,
              run: ThreadMap, best: BestPlan, ex: ShardExecutor | None = None,
              plain: bool = False) -> tuple[float | None, int | None]:
    """The pass's plan from the customers' first plans ``first`` (:func:`make_plan`; ``ex``: the
    shards that made them; ``None``: they stay on the shards, :func:`first_plans`), offered to
    ``best``: its objective and shortfall, ``(None, None)`` when it could not win."""
    if first is None:
        assert ex is not None
        objective, short, kept = _shard_plan(problem, prices, ex, plain)
        best.offer_on_shards(ex, kept, objective, prices, short)
        return objective, short
    made = make_plan(problem, prices, first, run, best, ex)
    if made is None:
        return None, None
    return made[1], best.consider(made[0], made[1], prices, run)


def replan(problem: AssignmentProblem, unplanned: list[Prices], best: BestPlan,
           run: ThreadMap, ex: ShardExecutor, deadline: float) -> int:
    """Plan at each of ``unplanned`` (passes that made no plan) until ``deadline``
    (``time.perf_counter``), keeping the best in ``best``; returns how many were planned."""
    replanned = 0
    for at in unplanned:
        if time.perf_counter() > deadline:
            break
        ex.respond_plain(at)
        plan_pass(problem, at, first_plans(problem, at, ex), run, best, ex, plain=True)
        replanned += 1
    return replanned


def plan_gap(bound: float, objective: float, fixed: float = 0.0) -> float | None:
    """The relative gap (:func:`~optimizer.model.problem.relative_gap`) with ``fixed`` (the
    problem's ``fixed_value``) on both sides, ``None`` before any plan."""
    return None if objective == -np.inf else relative_gap(bound + fixed, objective + fixed)
