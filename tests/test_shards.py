"""The scale method's shard seam (issue 21) without a cluster: the one pass loop over shards that
live behind a wire (every call's arguments and answers pickled, the plans' rows as packed bits)
gives the bits of the shards held in this process, for shards that cut the blocks anywhere, with
offer groups, funder budgets, targets and multi-category offers; the shards' layout; and shards
that build their own blocks from the scores table hold the driver's pieces."""
from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Sequence

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import write_demo_data
from optimizer.model.problem import AssignmentProblem, Solution
from optimizer.solve import certified
from optimizer.solve.lagrangian.built_shard import BuiltShard
from optimizer.solve.lagrangian.critical import _PARTS
from optimizer.solve.lagrangian.executor import LocalShards, ShardExecutor
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.shard import Shard, remembered, replayed
from optimizer.solve.lagrangian.shards import (
    block_pieces,
    part_cuts,
    shard_args,
    shard_ranges,
    shard_specs,
    source_args,
)
from tests.test_campaign_solver import with_funders, with_groups
from tests.test_solver_vs_exact import random_problem
from tests.tiny_world import built_for_workers


class WireShards(ShardExecutor):
    """Shards as a remote executor sees them: built from pickled arguments (copies, not views of
    the problem's blocks), every call and answer through pickle, plans as packed bits."""

    measure = packed = True

    def __init__(self, problem: AssignmentProblem, shard_customers: int) -> None:
        super().__init__(problem, shard_customers)
        self.shards = [Shard(*pickle.loads(pickle.dumps(shard_args(problem, spec))))
                       for spec in self.specs]

    def map(self, method: str, args: Sequence[tuple]) -> list:
        out = [pickle.loads(pickle.dumps(getattr(s, method)(*pickle.loads(pickle.dumps(a)))))
               for s, a in zip(self.shards, args)]
        self._count(method, args, out)
        return out


class LosingShards(WireShards):
    """:class:`WireShards` whose shard holding the most candidates of narrowed buckets is lost
    just before every call ``lose_at`` (``lost``: how many they held in all): rebuilt from its
    arguments, it replays the last ``respond`` and, since it, the last call of each other
    stateful kind (:data:`STATEFUL`, as :class:`.backends.dask_shards.DaskShards` does)."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int, lose_at: str) -> None:
        super().__init__(problem, shard_customers)
        self.lose_at, self.lost = lose_at, 0
        self.replay: list[tuple[str, Sequence[tuple]]] = []

    def map(self, method: str, args: Sequence[tuple]) -> list:
        if method == self.lose_at:
            k = int(np.argmax([s._kept[0].size for s in self.shards]))
            self.lost += self.shards[k]._kept[0].size
            self.shards[k] = Shard(*pickle.loads(pickle.dumps(shard_args(self.problem,
                                                                         self.specs[k]))))
            for call, call_args in replayed(self.replay, method):
                getattr(self.shards[k], call)(*pickle.loads(pickle.dumps(call_args[k])))
        self.replay = remembered(self.replay, method, args)
        return super().map(method, args)


class CallsSeen(LocalShards):
    """In-process shards that remember which calls they answered."""

    seen: set[str]

    def map(self, method: str, args: Sequence[tuple]) -> list:
        self.seen = getattr(self, "seen", set()) | {method}
        return super().map(method, args)


def _campaign_problem() -> AssignmentProblem:
    """300 customers in blocks of 7, multi-category offers, groups, funder budgets (one binds)
    and a few min_customers targets."""
    problem = random_problem(5, 300, 12, 6, multi=True, per_category=1, global_share=None)
    problem = with_funders(with_groups(problem, 5, 3), 5, 3, 0.1)
    targets = np.zeros(problem.offers.n_offers, dtype=np.int64)
    targets[:2] = 25
    return dataclasses.replace(problem, offers=dataclasses.replace(problem.offers,
                                                                   min_customers=targets))


def _same(a: Solution, b: Solution) -> None:
    def bare(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "seconds"} for e in trace]

    assert bare(a.trace) == bare(b.trace)
    assert (a.objective, a.bound, a.status, a.iterations) == (b.objective, b.bound, b.status,
                                                              b.iterations)
    assert all(np.array_equal(x, y) for x, y in zip(a.chosen, b.chosen))
    assert np.array_equal(a.prices.budget, b.prices.budget)
    assert np.array_equal(a.prices.funder, b.prices.funder)


@pytest.mark.parametrize("shard", [37, 100])
def test_shards_behind_a_wire_give_the_in_process_bits(shard):
    problem = _campaign_problem()
    settings = LagrangianSettings(max_iterations=15, shard_customers=shard, sample_customers=60,
                                  gap_tolerance=1e-6, threads=2)
    local = solve_lagrangian(problem, settings)
    wire = WireShards(problem, shard)
    remote = solve_lagrangian(problem, settings, shards=wire)
    _same(local, remote)
    certified(problem, remote)  # every rule kept, groups and funder budgets included
    assert problem.funders is not None and remote.prices.funder is not None
    assert remote.prices.funder.max() > 0  # a funder budget binds: its price moved on shards
    report = wire.report()
    assert report["shards"] == -(-300 // shard)
    assert report["bytes_per_pass"]["passes"] == remote.iterations
    assert report["bytes_per_pass"]["prices_max"] > 0 and report["bytes_per_pass"]["plan_max"] > 0


@pytest.mark.parametrize("lose_at", ["kept_tallies", "kept_collect"])
def test_narrowed_buckets_behind_a_wire_give_the_in_process_bits(monkeypatch, lose_at):
    """Crossing buckets of more than 16 candidates narrowed (:mod:`.narrow`; the global budget
    and two funders' bind): the wire gives the in-process bits, and so do shards lost before
    every ``lose_at`` call, rebuilt and replayed (without ``collect`` in :data:`STATEFUL` they
    lose the candidates they kept: another plan); the prices are exact, so the plan is the one
    without narrowing."""
    problem = with_funders(random_problem(9, 3000, 10, 6, multi=False, per_category=None,
                                          global_share=0.3, block=100), 9, 3, 0.1)
    settings = LagrangianSettings(max_iterations=8, shard_customers=700, gap_tolerance=0.0)
    plain = solve_lagrangian(problem, settings)
    monkeypatch.setattr(ShardExecutor, "split_above", 16)
    local = solve_lagrangian(problem, settings)
    wire = LosingShards(problem, 700, lose_at)
    _same(local, solve_lagrangian(problem, settings, shards=wire))
    assert wire.lost > 0  # the lost shards held candidates of narrowed buckets
    assert all(np.array_equal(x, y) for x, y in zip(plain.chosen, local.chosen))
    assert plain.objective == local.objective
    assert local.prices.global_budget > 0 and local.prices.funder is not None
    assert (local.prices.funder > 0).sum() >= 2


def test_one_shard_whatever_the_threads():
    """One shard over every block: the same plan on 1 and 2 threads (each shard's sums are
    one array, whatever the chunking)."""
    problem = _campaign_problem()
    settings = LagrangianSettings(max_iterations=10, sample_customers=60)
    _same(solve_lagrangian(problem, settings),
          solve_lagrangian(problem, dataclasses.replace(settings, threads=2)))


def test_shard_layout():
    assert shard_ranges(250, 100) == [(0, 100), (100, 200), (200, 250)]
    assert shard_ranges(0, 100) == [(0, 0)]
    # blocks of 7, 7, 7: the shard [5, 16) holds rows 5-7 of block 0, all of 1, 0-2 of 2
    assert block_pieces([7, 7, 7], 5, 16) == [(0, 5, 7), (1, 0, 7), (2, 0, 2)]
    assert part_cuts(100, 4, 30).tolist() == [0, 25, 30, 50, 60, 75, 90, 100]
    problem = _campaign_problem()
    ex = LocalShards(problem, 37, map)  # type: ignore[arg-type]
    assert [s.lo for s in ex.specs] == list(range(0, 300, 37))
    assert sum(s.problem.n_customers for s in ex.shards) == 300
    assert all(s.problem.max_cap == problem.max_cap for s in ex.shards)


def test_channels_on_shards_behind_a_wire_give_the_in_process_bits():
    """Each shard prices its own blocks for channels and sends back the channels' per-pair
    reads; joined in shard order, the wire gives the in-process bits and every rule holds."""
    from tests.test_channels_solver import _assert_channels_hold, with_channels

    problem = with_channels(random_problem(7, 300, 12, 6, multi=False, per_category=None,
                                           global_share=None), 7, 3, 0.1, 0.3)
    settings = LagrangianSettings(max_iterations=15, shard_customers=37, sample_customers=60,
                                  gap_tolerance=1e-6, threads=2)
    local = solve_lagrangian(problem, settings)
    remote = solve_lagrangian(problem, settings, shards=WireShards(problem, 37))
    _same(local, remote)
    assert np.array_equal(local.prices.channel, remote.prices.channel)
    assert all(np.array_equal(x, y) for x, y in zip(local.chosen.channel, remote.chosen.channel))
    certified(problem, remote)
    _assert_channels_hold(problem, remote.chosen)
    assert remote.prices.channel is not None and remote.prices.channel.max() > 0  # a cap binds


@pytest.mark.parametrize("chunk, shard, shuffle", [(70, 100, False), (50_000, 64, True)])
def test_worker_built_shards_hold_the_drivers_pieces(tmp_path, chunk, shard, shuffle):
    """A shard that builds its own blocks from its customers' rows of the scores table
    (:class:`BuiltShard`, what a Dask worker runs) holds exactly the driver's pieces of its
    blocks (widened to the block's slots where it was built narrower), whether the table is
    sorted or not; the passes' unused p_redeem is not kept."""
    data = tmp_path / "data"
    write_demo_data(data, customers=300, offers=20, seed=1, scores_per_customer=8)
    # customers with 0 to 8 listed offers, so a piece of a chunk may need fewer slots than the
    # chunk; rows shuffled out of (customer, offer) order, or left in it
    scores = pl.read_parquet(data / "scores.parquet")
    scores = scores.filter(pl.col("offer_id").rank("ordinal").over("customer_id")
                           <= pl.col("customer_id").rank("dense") % 9)
    if shuffle:
        scores = scores.sample(fraction=1.0, shuffle=True, seed=2)
    scores.write_parquet(data / "scores.parquet")
    built = built_for_workers(data, tmp_path / "s.toml", chunk, shard)
    problem, widened, sent = built.problem, 0, []
    # every worker is sent the source once without the rules' pair keys, each shard its own
    shared, rules = built.source.shared(), built.source.source.rules
    assert sum(k.size for k in (rules.excluded_keys, rules.opted_in_keys, rules.cooldown_keys))
    assert not (shared.rules.excluded_keys.size or shared.rules.cooldown_keys.size)
    for spec in shard_specs(problem, shard, _PARTS):
        customers, caps, keys = built.source.rows(spec.lo, spec.hi)
        own = BuiltShard(*source_args(problem, spec), shared, customers, caps, keys)
        sent.append(keys)
        assert own._rows[0].rules.cooldown_keys is keys[2]  # the shard's rules hold its keys
        drivers = shard_args(problem, spec)[0].blocks
        assert len(own.problem.blocks) == len(drivers) == len(spec.pieces)
        for got, want in zip(own.problem.blocks, drivers):
            for name in ("customers", "offer", "value", "cost", "cap"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name), name)
            assert not got.p_redeem.any() and got.p_redeem.strides == (0, 0)
            # a piece whose customers use fewer slots than its block: built narrower, widened
            used = int((want.offer >= 0).sum(axis=1).max()) if want.offer.size else 0
            widened += used < want.offer.shape[1]
    assert problem.n_pairs > 0
    for k, whole in enumerate((rules.excluded_keys, rules.opted_in_keys, rules.cooldown_keys)):
        np.testing.assert_array_equal(np.concatenate([keys[k] for keys in sent]), whole)
    if chunk == 70:  # chunks cut by shards: some pieces were built narrower than their block
        assert widened > 0


@pytest.mark.parametrize("shard, split", [(2_500, None), (7_000, None), (2_500, 30),
                                          (7_000, 30)])
def test_critical_prices_on_shards_are_the_whole_samples(shard, split, monkeypatch):
    """Each shard places boundaries on its own sample and the driver merges them (some groups
    over the 64 boundaries kept, so the merge picks): other boundaries than the whole sample's,
    the same critical prices, read off a plain sort of every candidate; the same bits again
    when the crossing buckets of more than ``split`` candidates are narrowed first."""
    # margins one per slot, written in by hand (not each customer's two limits)
    monkeypatch.setattr("optimizer.solve.lagrangian.margins.compact", lambda problem: False)
    from optimizer.solve.lagrangian._kernels import serial_map
    from optimizer.solve.lagrangian.critical import Candidates, critical_prices
    from optimizer.solve.lagrangian.sketch import WIDTH

    problem = random_problem(4, 30_000, 8, 8, multi=False, per_category=None,
                             global_share=0.3, block=900)
    rng = np.random.default_rng(5)
    margins = [rng.normal(0.3, 0.5, b.offer.shape) for b in problem.blocks]
    ex = CallsSeen(problem, shard, serial_map)
    ex.split_above = split
    for held, spec in zip(ex.shards, ex.specs):  # the shards' margins, read in place
        for mine, (b, first, end) in zip(held.margins, spec.pieces):
            mine[...] = margins[b][first:end]
    whole = Candidates([b.offer for b in problem.blocks], [b.cost for b in problem.blocks],
                       margins)
    offers = problem.offers
    args = (rng.random(8) * 0.1, rng.random(8) * 0.05, offers.budget * 0.2,
            np.full(8, 500.0), problem.global_budget)
    points = ex.map("sketch", [(0, (args[0], args[1], np.zeros(0), 0.0, np.zeros(0)),
                                args[2] / len(ex.specs))] * len(ex.specs))
    assert (sum(p[0] for p in points) > WIDTH).any()  # the merge picks among the points
    for got, want in zip(critical_prices(ex.candidates, *args), critical_prices(whole, *args)):
        np.testing.assert_array_equal(got, want)
    assert ("kept_collect" in ex.seen) == (split is not None)  # narrowed: 30 < the buckets
    budget_price, glob, count = critical_prices(whole, *args)
    assert (budget_price > 0).sum() >= 3 and glob > 0 and (count > 0).any()  # all bind


class Collecting(WireShards):
    """:class:`WireShards` that count the crossing buckets' candidates sent back per pass."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int) -> None:
        super().__init__(problem, shard_customers)
        self.collected: list[int] = []

    def map(self, method: str, args: Sequence[tuple]) -> list:
        out = super().map(method, args)
        if method == "respond":
            self.collected.append(0)
        elif method in ("collect", "funder_collect", "kept_collect"):
            self.collected[-1] += sum((o if method == "kept_collect" else o[0])[0].size
                                      for o in out)
        return out


def test_prices_traffic_per_pass_does_not_grow_with_customers():
    """The price passes send per shard O(offers) bytes: the shards' boundary sketches of their
    sample (every 61st customer's candidates) and of their funded candidates, not those
    candidates, so 8 times the customers in the same number of shards move about the same bytes
    per pass (measured: 110 and 141 KB; 384 KB and 2.57 MB when the shards sent their samples
    and funded candidates). What grows is the crossing buckets (the sample's error at the
    crossing grows like the square root of the candidates): collected whole, 1,337 and 2,871
    candidates a pass at most; narrowed past 128 candidates (:mod:`.narrow`), 231 and 106, and
    the 160 k passes' bytes fall to 105 KB; the same plan."""
    sent: dict[float, list[int]] = {np.inf: [], 128: []}
    collected: dict[float, list[int]] = {np.inf: [], 128: []}
    objective: dict[float, list[float]] = {np.inf: [], 128: []}
    for n in (20_000, 160_000):
        problem = with_funders(random_problem(9, n, 10, 6, multi=False, per_category=None,
                                              global_share=0.3, block=1000), 9, 3, 0.1)
        for split in sent:
            wire = Collecting(problem, n // 2)
            wire.split_above = split
            plan = solve_lagrangian(problem, LagrangianSettings(
                max_iterations=4, shard_customers=n // 2, gap_tolerance=0.0), shards=wire)
            sent[split].append(wire.report()["bytes_per_pass"]["prices_max"])
            collected[split].append(max(wire.collected))
            objective[split].append(plan.objective)
    assert sent[np.inf][1] < 1.5 * sent[np.inf][0], sent
    assert sent[128][1] < sent[np.inf][1], sent
    assert collected[np.inf][1] > 1.8 * collected[np.inf][0], collected  # whole: they grow
    assert collected[128][1] < 1.2 * collected[128][0], collected  # narrowed: they do not
    assert collected[128][1] < collected[np.inf][1] / 10, collected
    assert objective[128] == objective[np.inf]  # exact prices: the same plans
    assert problem.funders is not None
