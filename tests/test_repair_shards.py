"""The plan's repair from per-shard partial results (issue 21, ``repair_shards.py``): the shards'
exact tallies into priority buckets, the crossing bucket's pairs gathered and cut, give the pairs
the driver's repair keeps (``repair.repair``) for shards of any size cutting blocks anywhere,
behind a pickling wire, with ties at the cut, crossing buckets split again; exact sums do not
depend on the order or the split of their terms; the pass loop with the repair on shards gives
the plan of the repair on the driver, and a shard lost mid-repair is replayed to the same bits."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.core.exact_sum import (
    exact_add,
    exact_each,
    exact_float,
    exact_sign,
    exact_sub,
    exact_tally,
    normalized,
)
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData
from optimizer.solve.lagrangian import repair_shards
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.repair import repair
from tests.test_campaign_solver import with_groups
from tests.test_shards import LosingShards, WireShards, _same
from tests.test_solver_vs_exact import random_problem


def _exact_value(a: tuple[int, np.ndarray], r: int) -> Fraction:
    first, limbs = a[0], normalized(a[1])
    return sum((Fraction(int(limbs[r, k])) * Fraction(2) ** (32 * (first + k))
                for k in range(limbs.shape[1])), Fraction(0))


def test_exact_sums_are_exact_whatever_the_order_and_split():
    rng = np.random.default_rng(3)
    x = np.r_[rng.random(2000) * 10.0 ** rng.integers(-30, 30, 2000), -rng.random(100),
              0.0, 5e-324, 1e300, 0.1, 0.2, 0.3]
    group = rng.integers(0, 5, x.size)
    whole = exact_tally(group, x, 5)
    for r in range(5):
        assert _exact_value(whole, r) == sum((Fraction(float(v)) for v in x[group == r]),
                                             Fraction(0))
    # shuffled and split in three: the same exact sums, the same floats read from them
    order = rng.permutation(x.size)
    parts = np.array_split(order, [700, 1900])
    split = exact_tally(group[parts[0]], x[parts[0]], 5)
    for p in parts[1:]:
        split = exact_add(split, exact_tally(group[p], x[p], 5))
    assert (exact_sign(exact_sub(whole, split)) == 0).all()
    assert np.array_equal(exact_float(whole), exact_float(split))
    # 0.1 + 0.2 is not 0.3 exactly: the sign says so, where floats round it away
    three = exact_tally(np.zeros(2, dtype=np.int64), np.array([0.1, 0.2]), 1)
    assert exact_sign(exact_sub(three, exact_each(np.array([0.3]))))[0] == 1
    with pytest.raises(ValueError, match="finite"):
        exact_tally(np.zeros(1, dtype=np.int64), np.array([np.inf]), 1)


def _on_shards(problem: AssignmentProblem, chosen: list[np.ndarray], shard: int
               ) -> list[np.ndarray]:
    """``chosen`` repaired on ``shard``-customer shards behind the wire (their plan set)."""
    ex = WireShards(problem, shard)
    for spec, s in zip(ex.specs, ex.shards):
        s.plan = [chosen[b][f:e].copy() for b, f, e in spec.pieces]
    out = [c.copy() for c in chosen]
    done = repair_shards.sharded_repair(ex, problem, out)
    kept_cost = sum(float(b.cost[c].sum()) for b, c in zip(problem.blocks, out))
    assert done.total == pytest.approx(kept_cost, rel=1e-12, abs=1e-12)
    assert done.count.sum() == sum(int(c.sum()) for c in out)
    return out


def _on_driver(problem: AssignmentProblem, chosen: list[np.ndarray]) -> list[np.ndarray]:
    out = [c.copy() for c in chosen]
    repair(problem, out)
    return out


def _tied(problem: AssignmentProblem) -> AssignmentProblem:
    """Values and costs on a grid of quarters: many equal priorities, some at every cut."""
    def grid(a: np.ndarray, pair: np.ndarray) -> np.ndarray:
        return np.where(pair, np.round(a * 4) / 4 + 0.25, 0.0)

    return dataclasses.replace(problem, blocks=[
        dataclasses.replace(b, value=grid(b.value, b.offer >= 0), cost=grid(b.cost, b.offer >= 0))
        for b in problem.blocks])


@given(seed=st.integers(0, 10_000), shard=st.integers(1, 60), tied=st.booleans(),
       split=st.booleans(), share=st.floats(0.02, 0.6))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_sharded_repair_keeps_the_drivers_pairs(monkeypatch, seed, shard, tied, split, share):
    """Random instances (offers' budgets and ``max_customers``, a global budget), random plans,
    shards of 1 to 60 customers cutting blocks of 1 to 19 anywhere, crossing buckets over 3
    pairs split again (``split``): the driver's repair's pairs, bit for bit."""
    rng = np.random.default_rng(seed)
    problem = random_problem(seed, int(rng.integers(5, 400)), 10, 6, multi=False,
                             per_category=None, global_share=share,
                             block=int(rng.integers(1, 20)))
    problem = _tied(problem) if tied else problem
    chosen = [(b.offer >= 0) & (rng.random(b.offer.shape) < 0.7) for b in problem.blocks]
    monkeypatch.setattr(repair_shards, "_COLLECT", 3 if split else 4096)
    driver = _on_driver(problem, chosen)
    assert all(np.array_equal(a, b) for a, b in zip(driver, _on_shards(problem, chosen, shard)))


def test_cuts_drop_pairs_and_split_buckets(monkeypatch):
    """The random instances above do cut (pairs dropped by every kind of cut) and split buckets:
    the comparison is not between two plans that keep everything."""
    calls: list[str] = []

    class Counting(WireShards):
        def map(self, method, args):  # noqa: ANN001, ANN201 - a test double
            calls.append(method)
            return super().map(method, args)

    monkeypatch.setattr(repair_shards, "_COLLECT", 3)
    problem = _tied(random_problem(4, 400, 10, 6, multi=False, per_category=None,
                                   global_share=0.1, block=9))
    chosen = [(b.offer >= 0) for b in problem.blocks]
    ex = Counting(problem, 37)
    for spec, s in zip(ex.specs, ex.shards):
        s.plan = [chosen[b][f:e].copy() for b, f, e in spec.pieces]
    out = [c.copy() for c in chosen]
    repair_shards.sharded_repair(ex, problem, out)
    assert all(np.array_equal(a, b) for a, b in zip(out, _on_driver(problem, chosen)))
    kept = sum(int(c.sum()) for c in out)
    assert 0 < kept < sum(int(c.sum()) for c in chosen)
    assert calls.count("repair_points") > 3  # several rounds of buckets, split again
    assert "repair_best" in calls


def test_ties_at_the_cut_keep_the_first_customers():
    """Ten customers, one pair each of equal value and cost, a budget of 4.5: the four first
    customers keep theirs, whatever the shards (the cut falls inside a shard, across two)."""
    offers = OfferData(np.ones(1), np.array([4.5]), np.array([np.inf]),
                       np.zeros(1, dtype=np.int64), np.full((1, 2), -1), ["c"])
    blocks = [CandidateBlock(np.arange(k, k + 5), np.zeros((5, 1), dtype=np.int64),
                             np.ones((5, 1)), np.ones((5, 1)), np.ones((5, 1)),
                             np.ones(5, dtype=np.int64)) for k in (0, 5)]
    problem = AssignmentProblem(offers, blocks, None, np.inf, 10)
    chosen = [np.ones((5, 1), dtype=bool) for _ in blocks]
    for shard in (1, 2, 3, 4, 7, 10):
        kept = np.concatenate(_on_shards(problem, chosen, shard))[:, 0]
        assert kept.tolist() == [True] * 4 + [False] * 6, shard
    assert np.concatenate(_on_driver(problem, chosen))[:, 0].tolist() == [True] * 4 + [False] * 6


def _plain_problem() -> AssignmentProblem:
    """400 customers in blocks of 7, offer groups, a binding global budget, no funders."""
    return with_groups(random_problem(6, 400, 12, 6, multi=True, per_category=1,
                                      global_share=0.2), 6, 3)


def test_pass_loop_with_the_repair_on_shards_gives_the_drivers_plan(monkeypatch):
    """The whole solve: the repair on shards (asked for, without funders and channels) and the
    repair on the driver (the default) give the same trace and plan; so do shards behind the
    wire."""
    problem = _plain_problem()
    assert repair_shards.where(problem) == "shards"
    assert repair_shards.where(problem, asked=False) == "driver (solver.repair = driver)"
    lagrangian = LagrangianSettings(max_iterations=10, shard_customers=37, sample_customers=60,
                                    gap_tolerance=1e-6, threads=2, repair_on_shards=True)
    on_shards = solve_lagrangian(problem, lagrangian)
    wire = WireShards(problem, 37)
    _same(on_shards, solve_lagrangian(problem, lagrangian, shards=wire))
    report = wire.report()  # the repair's calls counted apart (what the plan's repair moves)
    assert report["repair"] == "shards" and report["bytes_per_pass"]["repair_max"] > 0
    calls = []
    real = repair_shards.sharded_repair
    monkeypatch.setattr(repair_shards, "sharded_repair", lambda *a: calls.append(1) or real(*a))
    on_driver = solve_lagrangian(problem, dataclasses.replace(lagrangian, repair_on_shards=False))
    assert not calls  # the default repairs on the driver's pairs
    _same(on_shards, on_driver)


@pytest.mark.parametrize("lose_at", ["repair_tallies", "repair_collect", "repair_done"])
def test_a_shard_lost_mid_repair_is_replayed(monkeypatch, lose_at):
    """A shard lost before every ``lose_at`` call, rebuilt and replayed (``plan_rows`` and
    ``repair_start`` among the stateful calls), gives the same plan: every repair call carries
    the cuts made so far."""
    monkeypatch.setattr(repair_shards, "_COLLECT", 3)
    problem = _plain_problem()
    lagrangian = LagrangianSettings(max_iterations=6, shard_customers=100, gap_tolerance=0.0,
                                    repair_on_shards=True)
    local = solve_lagrangian(problem, lagrangian)

    class Counting(LosingShards):
        lost_calls = 0

        def map(self, method, args):  # noqa: ANN001, ANN201 - a test double
            self.lost_calls += method == self.lose_at
            return super().map(method, args)

    losing = Counting(problem, 100, lose_at)
    _same(local, solve_lagrangian(problem, lagrangian, shards=losing))
    assert losing.lost_calls > 0  # shards were lost mid-repair, rebuilt and replayed


def test_exact_float_reads_negative_values_beside_large_ones():
    """A float read back from its exact form is itself, negative ones too, whatever the other
    rows hold: a row of 1e300 beside a row of -1 widens every row's limbs to 2**1000 and more,
    and a negative value read from the top limb first (its sign carried at 2**1088) came back
    NaN (``-inf + inf``)."""
    x = np.array([-1.0, 1e300, -1e308, -np.finfo(float).max, -5e-324, -2.5e-310, 0.1, -0.0,
                  np.finfo(float).max, -1e-300, 7.0])
    assert np.array_equal(exact_float(exact_each(x)), x)
    for v in x:  # each alone as well
        assert exact_float(exact_each(np.array([v])))[0] == v
    # a negative sum read the same as minus the positive one
    rng = np.random.default_rng(5)
    y = rng.random(500) * 10.0 ** rng.integers(-8, 8, 500)
    group = rng.integers(0, 7, 500)
    assert np.array_equal(exact_float(exact_tally(group, -y, 7)),
                          -exact_float(exact_tally(group, y, 7)))


def test_exact_tally_refuses_a_group_outside_its_rows():
    """The compiled kernel checks no index: a group of -1 was added to the last row, one of
    ``n_rows`` written past the table (nothing said)."""
    for group in ([0, -1], [0, 2]):
        with pytest.raises(ValueError, match="groups"):
            exact_tally(np.array(group), np.array([1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="groups"):
        exact_tally(np.zeros(3, dtype=np.int64), np.array([1.0, 2.0]), 2)
