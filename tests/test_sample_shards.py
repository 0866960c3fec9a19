"""The start's sample drawn on the shards (issue 21: nothing gathers all pairs on the driver):
each shard draws the driver's random numbers for its rows (the seeded PCG64 stream advanced past
the rows before it), the executor joins the pieces of a block cut at a shard's edge, and the
picked blocks and the sample LP's prices are the driver's, bit for bit: shards that cut blocks
anywhere, held here, behind a pickling wire, built from the scores table (no ``p_redeem``) or
on a Dask cluster, and a coupled problem whose whole problem is the sample. The driver's side
needs no blocks: the customers are counted from the shards' ranges."""
from __future__ import annotations

import dataclasses
import pickle
from typing import Sequence

import numpy as np
import pytest

from optimizer.apps.synthetic import write_demo_data
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices
from optimizer.solve.lagrangian._kernels import serial_map
from optimizer.solve.lagrangian.built_shard import BuiltShard
from optimizer.solve.lagrangian.executor import LocalShards, ShardExecutor
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.lagrangian.sample_rows import drawn_rows, picked_blocks
from optimizer.solve.lagrangian.shards import source_args
from optimizer.solve.lagrangian.start import sample_lp
from tests.test_coupled_budgets import coupled_problem
from tests.test_shards import CallsSeen, WireShards
from tests.test_solver_vs_exact import random_problem
from tests.tiny_world import built_for_workers

_FIELDS = ("customers", "offer", "value", "cost", "cap")


def _drivers_sample(problem: AssignmentProblem, customers: int, seed: int
                    ) -> list[CandidateBlock]:
    """The driver's draw as it was written before the shards drew it (the oracle): one
    generator, ``rng.random(rows)`` block after block."""
    total = sum(b.n_customers for b in problem.blocks)
    if total <= customers:
        return list(problem.blocks)
    rng = np.random.default_rng(seed)
    picked = []
    for block in problem.blocks:
        rows = np.flatnonzero(rng.random(block.n_customers) < customers / total)
        if rows.size:
            picked.append(CandidateBlock(block.customers[rows], block.offer[rows],
                                         block.value[rows], block.cost[rows],
                                         block.p_redeem[rows], block.cap[rows]))
    return picked


def _same_blocks(got: Sequence[CandidateBlock], want: Sequence[CandidateBlock]) -> None:
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        for name in _FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def _same_prices(a: Prices, b: Prices) -> None:
    for f in dataclasses.fields(Prices):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            assert np.array_equal(x, y), f.name  # bits: no tolerance


def _same_lp(problem: AssignmentProblem, customers: int, seed: int, ex: ShardExecutor,
             whole: bool) -> None:
    """The sample LP from the driver's blocks, from the shards, and from the shards with no
    block on the driver: the same prices and bound, to the bit."""
    drivers = sample_lp(problem, customers, seed)
    assert drivers is not None and drivers[1] == whole
    for blocks in (problem.blocks, []):  # [] : the driver holds no pairs
        found = sample_lp(dataclasses.replace(problem, blocks=blocks), customers, seed, ex)
        assert found is not None and found[1] == whole
        _same_prices(found[0].prices, drivers[0].prices)
        assert found[0].bound == drivers[0].bound and found[0].objective == drivers[0].objective


def test_a_shards_stream_is_the_drivers_past_its_first_row():
    """PCG64 makes each double from one 64-bit output: the stream advanced by ``lo`` draws the
    driver's doubles of rows ``lo`` on, and by one more it does not (the advance is exact)."""
    sizes = [7, 0, 7, 3, 50]
    for seed in (0, 5, 123):
        whole = np.random.default_rng(seed).random(200)
        for lo in (0, 1, 7, 30):
            rows = list(drawn_rows(sizes, lo, 0.5, seed))
            flat = np.concatenate([r + s for r, s in zip(rows, np.r_[0, np.cumsum(sizes)])])
            assert np.array_equal(flat, np.flatnonzero(whole[lo:lo + sum(sizes)] < 0.5))
        bits = np.random.PCG64(seed)
        bits.advance(8)
        assert not np.array_equal(np.random.Generator(bits).random(10), whole[7:17])


@pytest.mark.parametrize("seed", [0, 3, 17])
@pytest.mark.parametrize("shard", [30, 97, 250, 1000])
@pytest.mark.parametrize("block", [7, 64])
@pytest.mark.parametrize("wire", [False, True])
def test_the_shards_sample_is_the_drivers(seed, shard, block, wire):
    """Shards of 30 to 1000 customers over blocks of 7 or 64 (most shards cut a block), held
    here or behind the pickling wire: the picked blocks are the driver's (each block's pieces
    joined across shards) and the sample LP's prices are its bits."""
    problem = random_problem(seed, 500, 12, 6, multi=True, per_category=1, global_share=0.25,
                             block=block)
    ex = WireShards(problem, shard) if wire else LocalShards(problem, shard, serial_map)
    cut = sum(len(s.pieces) for s in ex.specs) > len(problem.blocks)
    assert cut == (shard < 500 and shard % block != 0)  # 1000: one shard, nothing cut
    for customers in (60, 200):
        want = _drivers_sample(problem, customers, seed)
        _same_blocks(picked_blocks(problem.blocks, customers / 500, seed), want)
        for got, kept in zip(picked_blocks(problem.blocks, customers / 500, seed), want):
            assert np.array_equal(got.p_redeem, kept.p_redeem)  # the driver's keeps it
        _same_blocks(ex.sample(customers / 500, seed), want)
    _same_lp(problem, 60, seed, ex, whole=False)


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("shard", [13, 25, 60])
def test_a_coupled_problem_small_enough_is_the_whole_sample(seed, shard):
    """A funder budget and channels under 2,000 customers: the LP is the whole problem's; the
    shards send every block (cut at their edges, joined again) and the LP's prices and bound
    are the driver's bits."""
    problem = coupled_problem(seed, 60)
    ex = WireShards(problem, shard)
    _same_blocks(ex.sample(None, seed), problem.blocks)
    _same_lp(problem, 2000, seed, ex, whole=True)


def test_the_solve_draws_its_sample_on_the_shards():
    """The pass loop's start asks the shards for the sample (and the plain problem too small to
    sample asks nothing)."""
    problem = random_problem(4, 500, 12, 6, multi=True, per_category=1, global_share=0.25)
    settings = LagrangianSettings(max_iterations=2, shard_customers=97, sample_customers=60,
                                  threads=1)
    seen = CallsSeen(problem, 97, serial_map)
    solve_lagrangian(problem, settings, shards=seen)
    assert "sample" in seen.seen
    seen = CallsSeen(problem, 97, serial_map)
    solve_lagrangian(problem, dataclasses.replace(settings, sample_customers=600), shards=seen)
    assert "sample" not in seen.seen


class BuiltWire(ShardExecutor):
    """Shards that built their own blocks from the scores table (what a Dask worker holds:
    no ``p_redeem``), every call and answer through pickle."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int, source) -> None:
        super().__init__(problem, shard_customers)
        self.shards = [BuiltShard(*pickle.loads(pickle.dumps(source_args(problem, spec))),
                                  source.source, *source.rows(spec.lo, spec.hi))
                       for spec in self.specs]

    def map(self, method: str, args: Sequence[tuple]) -> list:
        return [pickle.loads(pickle.dumps(getattr(s, method)(*pickle.loads(pickle.dumps(a)))))
                for s, a in zip(self.shards, args)]


@pytest.mark.parametrize("chunk, shard", [(70, 100), (50_000, 64)])
def test_worker_built_shards_draw_the_drivers_sample(tmp_path, chunk, shard):
    """Shards built from the scores table keep no ``p_redeem`` (the LP reads none): their
    sample's blocks and LP prices are the driver's, chunks cut by shards or not."""
    data = tmp_path / "data"
    write_demo_data(data, customers=300, offers=20, seed=1, scores_per_customer=8)
    built = built_for_workers(data, tmp_path / "s.toml", chunk, shard)
    problem = built.problem
    ex = BuiltWire(problem, shard, built.source)
    for seed in (0, 9):
        got = ex.sample(100 / sum(b.n_customers for b in problem.blocks), seed)
        _same_blocks(got, _drivers_sample(problem, 100, seed))
        assert not any(b.p_redeem.any() for b in got)
        _same_lp(problem, 100, seed, ex, whole=False)


@pytest.mark.cluster
def test_dask_shards_draw_the_drivers_sample():
    """Shards on a one-worker Dask cluster: the sampled LP's and the whole coupled LP's prices
    are the driver's bits."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from optimizer.solve.backends.dask_shards import DaskShards

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster:
        for problem, customers, whole in (
                (random_problem(3, 500, 12, 6, True, 1, 0.25), 60, False),
                (coupled_problem(1, 60), 2000, True)):
            ex = DaskShards(problem, 97 if not whole else 25, cluster.scheduler_address, 1)
            try:
                _same_lp(problem, customers, 3, ex, whole)
            finally:
                ex.close()
