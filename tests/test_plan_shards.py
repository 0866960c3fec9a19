"""The plan kept on the shards (issue 21, ``solver.repair = "shards"``): each shard applies the
repair's drops and its own refill grants to its plan, trims it to the offer groups and sends
O(offers) sums; the best plan stays on the shards (its recipe replayed on a shard rebuilt) and
is gathered once at the end. The pass loop's plans are those of the driver's masks path, bit
for bit."""
from __future__ import annotations

import dataclasses
import pickle
from typing import Sequence

import numpy as np
import pytest

from optimizer.model.problem import AssignmentProblem
from optimizer.solve import certified
from optimizer.solve.lagrangian import groups as group_rules
from optimizer.solve.lagrangian import planning, refill_shards
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.shard import Shard, remembered, replayed
from optimizer.solve.lagrangian.shards import shard_args
from tests.test_campaign_solver import with_groups
from tests.test_shards import WireShards, _same
from tests.test_solver_vs_exact import random_problem


def _problem(seed: int = 11, groups: bool = False) -> AssignmentProblem:
    """500 customers in blocks of 7, multi-category offers under category caps of 1, a binding
    global budget, offers' budgets and ``max_customers``, and ``min_customers`` targets;
    ``groups``: 3 offer groups too (limits 0 to 2, offers in up to two)."""
    problem = random_problem(seed, 500, 12, 6, multi=True, per_category=1, global_share=0.25)
    targets = np.zeros(problem.offers.n_offers, dtype=np.int64)
    targets[:3] = 40
    problem = dataclasses.replace(problem, offers=dataclasses.replace(problem.offers,
                                                                      min_customers=targets))
    return with_groups(problem, seed, 3) if groups else problem


_SETTINGS = LagrangianSettings(max_iterations=10, shard_customers=97, sample_customers=60,
                               gap_tolerance=1e-6, threads=2, repair_on_shards=True)


class Seen(WireShards):
    """Wire shards that keep every ``plan_apply`` call's arguments (the cuts and grants)."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int) -> None:
        super().__init__(problem, shard_customers)
        self.applied: list[Sequence[tuple]] = []
        self.methods: set[str] = set()

    def map(self, method: str, args: Sequence[tuple]) -> list:
        self.methods.add(method)
        if method == "plan_apply":
            self.applied.append(args)
        return super().map(method, args)


class Losing(WireShards):
    """Wire shards whose shard ``k`` is lost before the ``nth`` call of ``lose_at`` (every one
    when ``nth`` is 0): rebuilt from its arguments and replayed as
    :class:`.backends.dask_shards.DaskShards` replays (:func:`.shard.replayed`)."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int, lose_at: str,
                 nth: int, k: int) -> None:
        super().__init__(problem, shard_customers)
        self.lose_at, self.nth, self.k, self.seen, self.lost = lose_at, nth, k, 0, 0
        self.replay: list = []
        self.kept_from_before = 0  # best plans made again from their recipe (rebuilt shards)

    def map(self, method: str, args: Sequence[tuple]) -> list:
        if method == self.lose_at:
            self.seen += 1
            if self.nth in (0, self.seen):
                self.lost += 1
                self.shards[self.k] = Rebuilt(*pickle.loads(pickle.dumps(
                    shard_args(self.problem, self.specs[self.k]))))
                for call, call_args in replayed(self.replay, method):
                    getattr(self.shards[self.k], call)(*pickle.loads(pickle.dumps(
                        call_args[self.k])))
        self.replay = remembered(self.replay, method, args)
        out = super().map(method, args)
        self.kept_from_before += sum(getattr(shard, "remade", 0) for shard in self.shards)
        for shard in self.shards:
            shard.__dict__.pop("remade", None)
        return out


class Rebuilt(Shard):
    """A shard rebuilt: ``remade`` counts the best plans it made again from their recipe."""

    def plan_keep(self, plan_id: int, recipe: tuple) -> None:
        self.remade = getattr(self, "remade", 0) + (self._made[0] != plan_id)
        super().plan_keep(plan_id, recipe)


@pytest.mark.parametrize(("seed", "shard", "groups"), [
    (11, 97, False), (4, 30, False), (23, 250, False), (11, 97, True), (4, 30, True)])
def test_plans_on_the_shards_are_the_masks_paths(monkeypatch, seed, shard, groups):
    """Targets, category caps and a binding global budget (and offer groups): the plans kept on
    the shards give the trace (objectives to the bit), prices and chosen masks of the plans
    gathered to the driver's masks (the repair and refill on the shards both ways), behind the
    wire and locally; the shards' drops, grants and group trims are not empty (the test fails
    if a shard skips them), and no plan's first rows cross the wire."""
    monkeypatch.setattr(refill_shards, "_BATCH", 3)
    trimmed = _count_trims(monkeypatch)
    problem = _problem(seed, groups)
    settings = dataclasses.replace(_SETTINGS, shard_customers=shard)
    wire = Seen(problem, shard)
    on_shards = solve_lagrangian(problem, settings, shards=wire)
    assert "plan_rows_packed" not in wire.methods and "plan_best_packed" in wire.methods
    assert any(any(a[0] for a in args) for args in wire.applied)  # a cut dropped pairs
    assert any(any(a[1].size for a in args) for args in wire.applied)  # the refill granted
    assert bool(trimmed) == groups  # the trim dropped pairs on a shard's plan
    certified(problem, on_shards)
    assert any(e.get("shortfall") for e in on_shards.trace)  # the targets are short at times
    assert on_shards.prices.global_budget > 0
    assert on_shards.objective == problem.objective(on_shards.chosen)
    _same(on_shards, solve_lagrangian(problem, settings))
    report = wire.report()["bytes_per_pass"]
    assert report["final_gather"] > 0
    monkeypatch.setattr(planning, "plan_on_shards", lambda *a: False)
    masks = Seen(problem, shard)
    _same(on_shards, solve_lagrangian(problem, settings, shards=masks))
    assert "plan_rows_packed" in masks.methods and not masks.applied


def test_the_kept_plans_are_one_bit_a_slot():
    """Each shard holds the plans it keeps across calls (the last first plan, the last plan
    made and the best) as packed bits, one bit a candidate slot, and sends the best's bits as
    held, without unpacking them: the bytes of ``np.packbits`` of its best masks."""
    problem = _problem()
    wire = Seen(problem, 97)
    solve_lagrangian(problem, _SETTINGS, shards=wire)
    assert "plan_best_packed" in wire.methods
    for s in wire.shards:
        best = s.plan_best()
        assert sum(int(m.sum()) for m in best) > 0
        for kept in (s._plan, s._made[1], s._best):
            assert [(bits.dtype, bits.nbytes, shape) for bits, shape in kept] == [
                (np.uint8, -(-m.size // 8), m.shape) for m in best]
        sent = s.plan_best_packed()
        assert all(a is b for a, (b, _) in zip(sent, s._best))
        assert all(np.array_equal(a, np.packbits(m, axis=None)) for a, m in zip(sent, best))


@pytest.mark.parametrize(("lose_at", "nth", "seed", "passes", "groups"), [
    ("plan_make", 2, 11, 10, False), ("plan_best_packed", 0, 11, 10, False),
    ("respond", 4, 11, 10, False),
    # the best plan a replanned pass's (made from the plain responses): its recipe says so
    ("plan_best_packed", 0, 5, 4, False), ("respond_plain", 2, 5, 4, False),
    # offer groups: the best plan remade from its recipe is trimmed again
    ("plan_best_packed", 0, 11, 10, True)])
def test_a_shard_lost_keeps_the_best_plan(lose_at, nth, seed, passes, groups):
    """A shard lost before the second plan, before the final gather, or mid-solve, rebuilt
    and replayed (the best plan from its recipe: its prices, cuts and the shard's grants),
    gives the same plan and bytes; the best plan was an earlier pass's when it was lost."""
    problem = _problem(seed, groups)
    settings = dataclasses.replace(_SETTINGS, max_iterations=passes)
    local = solve_lagrangian(problem, settings)
    for k in (0, 3):
        losing = Losing(problem, 97, lose_at, nth, k)
        _same(local, solve_lagrangian(problem, settings, shards=losing))
        assert losing.lost > 0
    assert losing.kept_from_before > 0
    if seed == 5:  # the best plan is a replanned pass's: no pass's own objective
        assert local.objective not in {e.get("objective") for e in local.trace}
        kept = [c for c in losing.replay if c[0] == "plan_keep"][0][1]
        assert kept[0][1][1]  # its recipe: the plain responses


def _count_trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the shards' group trims that drop pairs (one entry per such ``plan_apply``)."""
    trimmed: list[int] = []
    real = group_rules.trim_plan

    def trim(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
        before = sum(int(m.sum()) for m in chosen)
        real(problem, chosen)
        if sum(int(m.sum()) for m in chosen) < before:
            trimmed.append(1)

    monkeypatch.setattr(group_rules, "trim_plan", trim)
    return trimmed


def test_the_objective_is_the_exact_sum_rounded_once():
    """The objective is the chosen values' exact sum, correctly rounded (numpy's sum of 1e16,
    1 and 1 loses both ones), and the same float from any split's exact parts (the shards')."""
    from fractions import Fraction

    from optimizer.core.exact_sum import exact_rounded, exact_total

    problem = random_problem(0, 6, 3, 3, multi=False, per_category=None, global_share=None,
                             block=2)
    rng = np.random.default_rng(0)
    blocks = [dataclasses.replace(b, offer=np.tile(np.arange(3), (2, 1)),
                                  value=rng.random((2, 3)) * 10.0 ** rng.integers(-8, 8, (2, 3)))
              for b in problem.blocks]
    blocks[0].value[0] = [1e16, 1.0, 1.0]
    problem = dataclasses.replace(problem, blocks=blocks)
    chosen = [np.ones((2, 3), dtype=bool) for _ in blocks]
    exact = float(sum((Fraction(v) for b in blocks for v in b.value.ravel()), Fraction(0)))
    first = [np.zeros((2, 3), dtype=bool) for _ in blocks]
    first[0][0] = True  # 1e16, 1 and 1 alone
    assert problem.objective(first) == 1e16 + 2 != float(np.sum(blocks[0].value[0]))
    assert problem.objective(chosen) == exact
    parts = [dataclasses.replace(problem, blocks=[b]).objective_exact([c])
             for b, c in zip(blocks, chosen)]
    for order in ([0, 1, 2], [2, 0, 1]):
        assert exact_rounded(exact_total([parts[k] for k in order])) == exact
