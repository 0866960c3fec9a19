"""The plan's refill on the shards (issue 21, ``refill_shards.py``): each shard's customers
propose, the driver grants in the kernel's order from the proposals that can still fit, and the
plan is the driver's refill's (``repair.refill``) bit for bit, for shards of any size behind a
pickling wire, with binding budgets, category caps, tied priorities and batches of one; the
whole solve gives the same plan with the refill on the driver; a shard lost mid-refill is
rebuilt and replayed to the same bits."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.model.problem import AssignmentProblem, Prices
from optimizer.solve.lagrangian import _refill_kernels as refill_kernels
from optimizer.solve.lagrangian import refill_shards, repair, repair_shards
from optimizer.solve.lagrangian._kernels import serial_map
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.repair import refill
from tests.test_campaign_solver import with_groups
from tests.test_repair_shards import _tied
from tests.test_shards import LosingShards, WireShards, _same
from tests.test_solver_vs_exact import random_problem


class Counting(WireShards):
    """Shards behind the wire that count their calls by name."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int) -> None:
        super().__init__(problem, shard_customers)
        self.calls: dict[str, int] = {}

    def map(self, method, args):  # noqa: ANN001, ANN201 - a test double
        self.calls[method] = self.calls.get(method, 0) + 1
        return super().map(method, args)


def _refilled(problem: AssignmentProblem, chosen: list[np.ndarray], prices: Prices, shard: int,
              on_shards: bool) -> tuple[list[np.ndarray], Counting]:
    """``chosen`` repaired on ``shard``-customer shards, then refilled on them or on the
    driver (from the same kept spend: the path the refill on shards replaces)."""
    ex = Counting(problem, shard)
    for spec, s in zip(ex.specs, ex.shards):
        s.plan = [chosen[b][f:e].copy() for b, f, e in spec.pieces]
    out = [c.copy() for c in chosen]
    done = repair_shards.sharded_repair(ex, problem, out)
    spent = (done.spend, done.count, done.total)
    if on_shards:
        refill_shards.sharded_refill(ex, problem, out, prices, done.applied, spent)
    else:
        refill(problem, out, prices, spent=spent)
    return out, ex


def _prices(rng: np.random.Generator, m: int, tied: bool) -> Prices:
    """Random prices (on a grid of quarters when ``tied``: many equal priorities), a target
    bonus half the time."""
    def draw(scale: float) -> np.ndarray:
        x = rng.random(m) * scale * (rng.random(m) < 0.5)
        return np.round(x * 4) / 4 if tied else x

    glob = float(draw(0.5)[0]) if m else 0.0
    target = draw(0.3) if rng.random() < 0.5 else None
    return Prices(draw(1.0), draw(0.3), glob, target)


@given(seed=st.integers(0, 10_000), shard=st.integers(1, 60), tied=st.booleans(),
       per_category=st.sampled_from([None, 1, 2]), share=st.sampled_from([None, 0.05, 0.2, 0.6]),
       batch=st.integers(1, 4), density=st.floats(0.05, 0.7))
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_sharded_refill_grants_the_drivers_pairs(monkeypatch, seed, shard, tied, per_category,
                                                 share, batch, density):
    """Random instances (offers' budgets and ``max_customers``, a global budget or none,
    category caps, customers of 0 to 3 slots), random plans repaired on the shards, random prices
    with a target bonus half the time, shards of 1 to 60 customers cutting blocks of 1 to 19
    anywhere, 1 to 4 proposals a shard sent first: the driver's refill's plan, bit for bit."""
    rng = np.random.default_rng(seed)
    problem = random_problem(seed, int(rng.integers(5, 300)), 10, 6, multi=bool(seed % 2),
                             per_category=per_category, global_share=share,
                             block=int(rng.integers(1, 20)))
    problem = _tied(problem) if tied else problem
    chosen = [(b.offer >= 0) & (rng.random(b.offer.shape) < density) for b in problem.blocks]
    prices = _prices(rng, problem.offers.n_offers, tied)
    monkeypatch.setattr(refill_shards, "_BATCH", batch)
    driver, _ = _refilled(problem, chosen, prices, shard, on_shards=False)
    shards, _ = _refilled(problem, chosen, prices, shard, on_shards=True)
    assert all(np.array_equal(a, b) for a, b in zip(driver, shards))


def test_refill_grants_refuses_and_asks_again(monkeypatch, caplog):
    """An instance where the refill adds pairs, the global budget refuses some proposals and
    the driver asks the shards for the next ones that still fit: the same plan, and the
    comparison is not between two plans the refill left alone."""
    monkeypatch.setattr(refill_shards, "_BATCH", 2)
    rng = np.random.default_rng(1)
    problem = _tied(random_problem(3, 300, 10, 6, multi=True, per_category=1,
                                   global_share=0.15, block=9))
    chosen = [(b.offer >= 0) & (rng.random(b.offer.shape) < 0.1) for b in problem.blocks]
    prices = Prices.zeros(problem.offers.n_offers)
    driver, _ = _refilled(problem, chosen, prices, 23, on_shards=False)
    with caplog.at_level(logging.INFO, logger=refill_shards.__name__):
        shards, ex = _refilled(problem, chosen, prices, 23, on_shards=True)
    assert all(np.array_equal(a, b) for a, b in zip(driver, shards))
    before = sum(int(c.sum()) for c in chosen)
    assert sum(int(c.sum()) for c in shards) > before  # the refill added pairs
    assert ex.calls["refill_round"] >= 2 and ex.calls["refill_collect"] >= 1
    figures = caplog.records[-1].args[1]  # per round: proposals, sent, granted, calls
    assert any(sent > granted for _, sent, granted, _ in figures)  # refusals
    assert sum(f[1] for f in figures) < sum(f[0] for f in figures)  # not every one sent
    # the plan within the global budget it refused proposals for
    spent = sum(float(b.cost[c].sum()) for b, c in zip(problem.blocks, shards))
    assert spent <= problem.global_budget * (1 + 1e-9)


def _plain_problem() -> AssignmentProblem:
    """400 customers in blocks of 7, offer groups, category caps, a binding global budget."""
    return with_groups(random_problem(6, 400, 12, 6, multi=True, per_category=1,
                                      global_share=0.2), 6, 3)


def test_pass_loop_with_the_refill_on_shards_gives_the_drivers_plan(monkeypatch):
    """The whole solve with the repair on shards: the refill on the shards (the default there)
    and on the driver give the same trace and plan, locally and behind the wire; the refill's
    calls are counted apart."""
    monkeypatch.setattr(refill_shards, "_BATCH", 3)
    problem = _plain_problem()
    lagrangian = LagrangianSettings(max_iterations=8, shard_customers=37, sample_customers=60,
                                    gap_tolerance=1e-6, threads=2, repair_on_shards=True)
    wire = Counting(problem, 37)
    on_shards = solve_lagrangian(problem, lagrangian, shards=wire)
    assert wire.calls.get("refill_collect", 0) > 0
    assert wire.report()["bytes_per_pass"]["refill_max"] > 0
    calls = []
    real = refill_shards.sharded_refill
    monkeypatch.setattr(refill_shards, "sharded_refill", lambda *a: calls.append(1) or real(*a))
    driver = Counting(problem, 37)
    driver.refill_on_shards = False
    _same(on_shards, solve_lagrangian(problem, lagrangian, shards=driver))
    assert "refill_round" not in driver.calls
    _same(on_shards, solve_lagrangian(problem, lagrangian))


@pytest.mark.parametrize("lose_at", ["refill_round", "refill_collect"])
def test_a_shard_lost_mid_refill_is_replayed(monkeypatch, caplog, lose_at):
    """A shard lost before every ``lose_at`` call, rebuilt and replayed (``repair_start``,
    ``refill_start`` and the last ``refill_round`` among the stateful calls), gives the same
    plan: each round's call carries the shard's grants so far; and the shards read the same
    budgets and customers left (a rebuilt one too, from the changes each call sends: it fails
    with a collect's changes since the last collect)."""
    monkeypatch.setattr(refill_shards, "_BATCH", 2)
    seen: set[bytes] = set()
    batch = refill_shards.batch

    def kept(pool, after, left, limit):  # noqa: ANN001, ANN202 - a test double
        if pool.offer.size:  # not an earlier plan's round replayed before the last start
            seen.add(left[0].tobytes() + left[1].tobytes() + np.float64(left[2]).tobytes())
        return batch(pool, after, left, limit)

    monkeypatch.setattr(refill_shards, "batch", kept)
    problem = _plain_problem()
    lagrangian = LagrangianSettings(max_iterations=5, shard_customers=100, gap_tolerance=0.0,
                                    repair_on_shards=True)
    with caplog.at_level(logging.INFO, logger=refill_shards.__name__):
        local = solve_lagrangian(problem, lagrangian)
    figures = [r.args for r in caplog.records if r.name == refill_shards.__name__]
    caplog.clear()
    local_seen, seen = seen, set()

    class Lost(LosingShards):
        lost_calls = 0

        def map(self, method, args):  # noqa: ANN001, ANN201 - a test double
            self.lost_calls += method == self.lose_at
            return super().map(method, args)

    losing = Lost(problem, 100, lose_at)
    with caplog.at_level(logging.INFO, logger=refill_shards.__name__):
        _same(local, solve_lagrangian(problem, lagrangian, shards=losing))
    assert losing.lost_calls > 0
    assert [r.args for r in caplog.records if r.name == refill_shards.__name__] == figures
    assert any(calls > 1 for _, rounds in figures for *_, calls in rounds)  # collects made
    assert seen == local_seen


def test_tied_proposals_on_two_shards_go_to_the_first_customer():
    """Two customers on two shards propose pairs of equal priority: the first customer's is
    granted first, as the driver's kernel grants it (ties: customer order), and only one fits."""
    problem = random_problem(0, 2, 1, 1, multi=False, per_category=None, global_share=None,
                             block=1)
    blocks = [dataclasses.replace(b, offer=np.zeros((1, 1), dtype=np.int64),
                                  value=np.ones((1, 1)), cost=np.ones((1, 1)),
                                  cap=np.ones(1, dtype=np.int64)) for b in problem.blocks]
    offers = dataclasses.replace(problem.offers, budget=np.array([1.0]),
                                 max_customers=np.array([np.inf]))
    problem = dataclasses.replace(problem, offers=offers, blocks=blocks)
    chosen = [np.zeros((1, 1), dtype=bool) for _ in blocks]
    prices = Prices.zeros(1)
    for shard in (1, 2):
        out, _ = _refilled(problem, chosen, prices, shard, on_shards=True)
        assert [bool(c[0, 0]) for c in out] == [True, False]


@given(seed=st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_taken_entries_are_those_at_the_granted_positions(seed):
    """The entries a round's grants take (positions ``customer << 24 | slot``, some of no entry
    of the pool, some twice): those whose position ``np.isin`` finds, and each owner's count."""
    rng = np.random.default_rng(seed)
    n_owner = int(rng.integers(0, 30))
    customer = np.sort(rng.choice(1 << 30, n_owner, replace=False)).astype(np.int64)
    sizes = rng.integers(1, 6, n_owner)
    start = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    slot = np.concatenate([rng.permutation(8)[:k] for k in sizes]).astype(np.int16) \
        if n_owner else np.zeros(0, dtype=np.int16)
    owner = np.repeat(np.arange(n_owner), sizes)
    pos = (customer[owner] << 24) | slot
    stray = (rng.integers(0, 1 << 30, 5).astype(np.int64) << 24) | rng.integers(0, 8, 5)
    granted = np.concatenate([rng.choice(pos, min(pos.size, 7)) if pos.size else pos, stray,
                              customer[:2] << 24 | 9]).astype(np.int64)
    taken, used = refill_kernels.taken_entries(start, customer, slot, granted, 24)
    assert np.array_equal(taken, np.isin(pos, granted))
    assert np.array_equal(used, np.bincount(owner[taken], minlength=n_owner))


def test_the_refill_pools_hold_no_owner_column_or_int64_per_entry():
    """A shard's pool, and the driver's it is built from, hold per entry its offer (int32),
    cost and priority (float64), slot (int16) and category keys (int32): its row, owner,
    customer and position are derived from its owner's (the shard's held customer, position
    and owner in int64, 24 bytes more an entry, and offer and keys 4 more each)."""
    problem = random_problem(3, 200, 10, 6, multi=True, per_category=1, global_share=None)
    offers = problem.offers
    chosen = [np.zeros(b.offer.shape, dtype=bool) for b in problem.blocks]
    left = (offers.budget.copy(), offers.max_customers.astype(float), np.inf)
    prices = Prices.zeros(offers.n_offers)
    driver = repair._pool(problem, chosen, prices, offers.budget > 0, offers.budget, serial_map)
    pool = refill_shards.shard_pool(problem, chosen, prices, left, 0, serial_map)
    n = pool.offer.shape[0]
    assert n > pool.slots.shape[0] > 0 and pool.cat_key.shape[1] == 2
    for held in (driver, pool):
        per_entry = {f.name: getattr(held, f.name) for f in dataclasses.fields(held)
                     if getattr(held, f.name).shape[:1] == (n,)}
        assert set(per_entry) == {"offer", "cost", "priority", "cat_key", "slot"}
        assert sum(a.nbytes for a in per_entry.values()) == n * (4 + 8 + 8 + 2 * 4 + 2)
    refill_shards.propose(pool, np.zeros(0, dtype=np.int64), left, 1)
    whole = pool.customer[np.searchsorted(pool.start, pool.proposed, side="right") - 1]
    assert np.array_equal(pool.proposed_customer, whole)


def test_caps_past_int32_refill_as_caps_at_the_slots(monkeypatch):
    """A customer's cap of 2**31 or more (no cap in effect: a row holds ``slots`` offers) refills
    as a cap of ``slots`` does, on the driver and on shards: her free slots are not wrapped by
    the pools' int32 columns (they made her cap negative: no pair refilled), and the pool's
    depth is not sized by the cap."""
    problem = random_problem(3, 400, 8, 5, multi=False, per_category=None, global_share=None,
                             block=100)
    offers = problem.offers

    def capped(cap: int) -> AssignmentProblem:
        return dataclasses.replace(problem, blocks=[
            dataclasses.replace(b, cap=np.full(b.n_customers, cap, dtype=np.int64))
            for b in problem.blocks])

    plans = []
    for cap in (5, 2**31 + 5, 2**40):
        q = capped(cap)
        chosen = [np.zeros(b.offer.shape, dtype=bool) for b in q.blocks]
        refill(q, chosen, Prices.zeros(offers.n_offers))
        left = (offers.budget.copy(), offers.max_customers.astype(float), np.inf)
        pool = refill_shards.shard_pool(q, [np.zeros(b.offer.shape, dtype=bool)
                                            for b in q.blocks],
                                        Prices.zeros(offers.n_offers), left, 0, serial_map)
        plans.append((chosen, pool.slots))
    (want, want_slots), *others = plans
    assert sum(int(m.sum()) for m in want) > 100
    for chosen, slots in others:
        assert all(np.array_equal(a, b) for a, b in zip(chosen, want))
        assert np.array_equal(slots, want_slots)
