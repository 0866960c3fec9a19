"""The best plan gathered from the shards as its chosen pairs (issue 21, ``solver.repair =
"shards"``): the chosen-only problem (:func:`optimizer.model.chosen.chosen_problem`) gives every
output the bytes of the whole problem and the gathered masks (assignments, offers' summary,
controls withheld, objective, use, rule checks, chosen pairs), with offer groups, category caps
and a binding global budget; a shard built on a worker reads its chosen pairs' p_redeem again
from the scores table, to the bit."""
from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import write_demo_data
from optimizer.core.config import Measurement
from optimizer.model import chosen as chosen_module
from optimizer.model.build import Built
from optimizer.model.chosen import PlanPairs, chosen_pairs_of, chosen_problem
from optimizer.model.holdout import withhold_controls
from optimizer.model.problem import AssignmentProblem, Prices, Solution
from optimizer.report.tables import assignments_frame, offers_summary_frame
from optimizer.solve.lagrangian import built_shard as shard_module
from optimizer.solve.lagrangian import refill_shards
from optimizer.solve.lagrangian.built_shard import BuiltShard
from optimizer.solve.lagrangian.executor import ShardExecutor
from optimizer.solve.lagrangian.method import solve_lagrangian
from optimizer.solve.lagrangian.shards import shard_args, source_args
from tests.test_plan_shards import _SETTINGS, Losing, _problem
from tests.test_shards import WireShards
from tests.tiny_world import built_for_workers

MEASURE = Measurement(holdout_share=0.1, offer_holdout_share=0.2, salt="chosen")


def _ipc(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc(out)
    return out.getvalue()


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _outputs(inputs: Any, problem: AssignmentProblem, solution: Solution) -> dict[str, Any]:
    """Everything the run writes of a plan, as bytes or exact values."""
    chosen = solution.chosen
    assignments = assignments_frame(inputs, problem, solution)
    held = withhold_controls(inputs, problem, solution, MEASURE, 7)
    used = problem.usage(chosen)
    exact = problem.objective_exact(chosen)
    assert exact is not None
    c, o = problem.chosen_pairs(chosen)
    kept_c, kept_o = problem.chosen_pairs(held.solution.chosen)
    return {
        "assignments": _ipc(assignments),
        "offers_summary": _ipc(offers_summary_frame(inputs, problem, assignments, solution)),
        "controls": _ipc(held.controls), "holdout_info": repr(held.info),
        "withheld": held.info["withheld_sends"],
        "held_objective": held.solution.objective,
        "held_pairs": (_bits(kept_c), _bits(kept_o)),
        "held_spend": _bits(problem.usage(held.solution.chosen).spend),
        "objective": problem.objective(chosen), "objective_exact": (exact[0], _bits(exact[1])),
        "spend": _bits(used.spend), "customers": _bits(used.customers),
        "total_spend": used.total_spend, "shortfall": problem.shortfall(chosen),
        "violations": problem.violations(chosen), "feasible": problem.feasible(chosen),
        "tolerant": problem.violations(chosen, rtol=1e-9, atol=1e-9),
        "pairs": (_bits(c.astype(np.int64)), _bits(o.astype(np.int64))),
    }


def _same_outputs(inputs: Any, problem: AssignmentProblem, solution: Solution,
                  only: AssignmentProblem, masks: list[np.ndarray]) -> dict[str, Any]:
    """The outputs of the chosen-only problem are the whole problem's, key by key."""
    whole = _outputs(inputs, problem, solution)
    mine = _outputs(inputs, only, dataclasses.replace(solution, chosen=masks))
    for key in whole:
        assert mine[key] == whole[key], key
    return whole


def _ids(problem: AssignmentProblem) -> SimpleNamespace:
    """The ID tables the outputs read, for a problem made without inputs."""
    n_offers = problem.offers.n_offers
    return SimpleNamespace(
        customers=pl.DataFrame({"customer_id": [f"C{c:04d}" for c in range(problem.n_customers)],
                                "c": np.arange(problem.n_customers)}),
        offers=pl.DataFrame({"offer_id": [f"O{o:02d}" for o in range(n_offers)],
                             "o": np.arange(n_offers)}),
        n_offers=n_offers)


@pytest.mark.parametrize(("seed", "shard", "groups"), [
    (11, 97, False), (4, 30, True), (23, 250, True)])
def test_chosen_only_problem_gives_the_whole_problems_outputs(monkeypatch, seed, shard, groups):
    """Behind the pickling wire, plans kept on the shards (category caps, a binding global
    budget, targets, offer groups): the best plan gathered as its chosen pairs gives the bytes of
    the whole problem with the gathered masks, for every output; the gather is counted as the
    final traffic."""
    monkeypatch.setattr(refill_shards, "_BATCH", 3)
    problem = _problem(seed, groups)
    settings = dataclasses.replace(_SETTINGS, shard_customers=shard)
    wire = WireShards(problem, shard)
    solution = solve_lagrangian(problem, settings, shards=wire)
    before = wire.traffic[-1]["final"]
    only, masks = wire.chosen_problem()
    gathered = wire.traffic[-1]["final"] - before
    assert 0 < gathered
    assert all(np.array_equal(a, b) for a, b in zip(wire.plan_best(), solution.chosen))
    assert len(only.blocks) == len(wire.specs)
    assert only.n_pairs == sum(int(m.sum()) for m in solution.chosen) > 0
    assert (only.n_customers, only.global_budget, only.groups, only.max_per_category) == (
        problem.n_customers, problem.global_budget, problem.groups, problem.max_per_category)
    out = _same_outputs(_ids(problem), problem, solution, only, masks)
    assert out["feasible"] and solution.prices.global_budget > 0
    assert out["withheld"] > 0  # the controls withheld sends


@pytest.mark.parametrize("groups", [False, True])
def test_chosen_only_problem_breaks_the_rules_as_the_whole(groups):
    """A plan that breaks every rule (every candidate chosen), its pairs taken per shard: the
    chosen-only problem counts the same violations (customer and category caps, budgets,
    ``max_customers``, the global budget, offer groups) and the same outputs."""
    problem = _problem(4, groups)
    every = [b.offer >= 0 for b in problem.blocks]
    wire = WireShards(problem, 60)
    parts = []
    for spec in wire.specs:
        part = shard_args(problem, spec)[0]
        parts.append(chosen_pairs_of(part, [every[b][f:e] for b, f, e in spec.pieces]))
    only, masks = chosen_problem(problem, pickle.loads(pickle.dumps(parts)))
    solution = Solution(every, problem.objective(every), np.inf, "stalled", "test", 0,
                        Prices.zeros(problem.offers.n_offers))
    out = _same_outputs(_ids(problem), problem, solution, only, masks)
    broken = out["violations"]
    assert all(broken[k] for k in ("customer_cap", "category_cap", "budget", "global_budget"))
    assert bool(broken.get("offer_group")) == groups and not out["feasible"]


def test_chosen_pairs_are_in_customer_and_slot_order():
    """A shard's answer: customers ascending with their caps, each one's pairs in slot order."""
    problem = _problem(11)
    block = problem.blocks[0]
    mask = np.zeros(block.offer.shape, dtype=bool)
    mask[1, [0, 2]] = mask[4, 1] = True
    pairs = chosen_pairs_of(dataclasses.replace(problem, blocks=[block]), [mask])
    np.testing.assert_array_equal(pairs.customers, block.customers[[1, 4]])
    np.testing.assert_array_equal(pairs.counts, [2, 1])
    np.testing.assert_array_equal(pairs.cap, block.cap[[1, 4]])
    np.testing.assert_array_equal(pairs.offer, block.offer[[1, 1, 4], [0, 2, 1]])
    np.testing.assert_array_equal(pairs.p_redeem, block.p_redeem[[1, 1, 4], [0, 2, 1]])
    with pytest.raises(ValueError, match="customer order"):
        chosen_problem(problem, [pairs, pairs])


def test_a_shard_lost_before_the_gather_answers_the_same_pairs():
    """A shard lost before ``plan_best_pairs``, rebuilt and replayed (the best plan from its
    recipe), answers the same chosen pairs."""
    problem = _problem(11)
    local = WireShards(problem, 97)
    solve_lagrangian(problem, _SETTINGS, shards=local)
    losing = Losing(problem, 97, "plan_best_pairs", 0, 3)
    solve_lagrangian(problem, _SETTINGS, shards=losing)
    (a, _), (b, _) = local.chosen_problem(), losing.chosen_problem()
    assert losing.lost > 0 and losing.kept_from_before > 0
    for x, y in zip(a.blocks, b.blocks):
        for name in ("customers", "offer", "value", "cost", "p_redeem", "cap"):
            assert _bits(getattr(x, name)) == _bits(getattr(y, name)), name


# -- shards built on a worker from the scores table ------------------------------------------
@pytest.fixture(scope="module")
def scores_world(tmp_path_factory) -> tuple[Any, Built]:
    """A 300-customer scores world built for workers (chunks of 70 cut by shards of 64)."""
    root = tmp_path_factory.mktemp("chosen")
    data = root / "data"
    write_demo_data(data, customers=300, offers=20, seed=1, scores_per_customer=8)
    built = built_for_workers(data, root / "s.toml", 70, 64)
    return built.inputs, built


class BuiltWire(WireShards):
    """Wire shards built as a Dask worker builds them (:class:`BuiltShard`, from the scores
    table; no p_redeem kept)."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int, built: Built) -> None:
        ShardExecutor.__init__(self, problem, shard_customers)
        source = built.source
        assert source is not None
        self.shards = [BuiltShard(*pickle.loads(pickle.dumps(
            (*source_args(problem, spec), source.source, *source.rows(spec.lo, spec.hi)))))
            for spec in self.specs]


def _not_read_again(pairs: PlanPairs, source: Any, customers: pl.DataFrame
                    ) -> list[PlanPairs]:
    """The wrong p_redeem: the worker-built shard's own (it keeps none: zeros)."""
    return [pairs]


@pytest.mark.parametrize(("wrong", "stretch"), [(False, None), (False, 7), (True, None)])
def test_worker_built_shards_read_the_builds_p_redeem(monkeypatch, scores_world, wrong,
                                                      stretch):
    """Worker-built shards (no p_redeem kept) read their chosen pairs' p_redeem again from the
    scores table: the bits the driver's build holds, so every output is the whole problem's
    bytes, read at once or a ``stretch`` of planned customers at a time. Not read again (the
    shard keeps none), the outputs do not match."""
    inputs, built = scores_world
    if stretch is not None:
        monkeypatch.setattr(chosen_module, "REREAD_CUSTOMERS", stretch)
    if wrong:
        monkeypatch.setattr(shard_module, "reread_by_stretch", _not_read_again)
        # nor compared with the build's costs (which refuse it: tests/test_worker_reread_error.py)
        monkeypatch.setattr(shard_module, "require_same_cost", lambda *args: None)
    problem = built.problem
    settings = dataclasses.replace(_SETTINGS, shard_customers=64, max_iterations=6)
    wire = BuiltWire(problem, 64, built)
    assert all(not s.problem.blocks[0].p_redeem.any() for s in wire.shards)
    solution = solve_lagrangian(problem, settings, shards=wire)
    only, masks = wire.chosen_problem()
    assert only.n_pairs > 100
    want = np.concatenate([b.p_redeem[m] for b, m in zip(problem.blocks, solution.chosen)])
    got = np.concatenate([b.p_redeem[m] for b, m in zip(only.blocks, masks)])
    # the test can tell: the shard's own p_redeem (zeros) is not the build's
    assert (want != 0).any()
    if wrong:
        assert _bits(got) != _bits(want)
        with pytest.raises(AssertionError, match="assignments"):
            _same_outputs(inputs, problem, solution, only, masks)
        return
    assert _bits(got) == _bits(want)
    _same_outputs(inputs, problem, solution, only, masks)


@pytest.mark.cluster
def test_chosen_pairs_from_a_dask_cluster(scores_world):
    """On a one-worker LocalCluster (shards built on the worker), the chosen-only problem the
    cluster sends gives the whole problem's outputs, and the gather counts as final traffic."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from optimizer.solve.backends.dask_shards import DaskShards

    inputs, built = scores_world
    problem = built.problem
    settings = dataclasses.replace(_SETTINGS, shard_customers=64, max_iterations=6)
    shards = DaskShards(problem, 64, None, 1, None, built.source)
    try:
        solution = solve_lagrangian(problem, settings, shards=shards)
        final = shards.report()["bytes_per_pass"]["final_gather"]
        only, masks = shards.chosen_problem()
        assert shards.report()["bytes_per_pass"]["final_gather"] > final
    finally:
        shards.close()
    _same_outputs(inputs, problem, solution, only, masks)


def test_no_chosen_pairs_make_an_empty_problem():
    """A plan with no pair: empty blocks, the whole problem's (empty) outputs."""
    problem = _problem(11)
    none = [np.zeros(b.offer.shape, dtype=bool) for b in problem.blocks]
    part = chosen_pairs_of(problem, none)
    only, masks = chosen_problem(problem, [part])
    assert only.n_pairs == 0 and masks[0].shape == (0, 0)
    solution = Solution(none, 0.0, 0.0, "optimal", "test", 0,
                        Prices.zeros(problem.offers.n_offers))
    _same_outputs(_ids(problem), problem, solution, only, masks)


def test_reread_refuses_a_pair_the_table_lost(scores_world, tmp_path):
    """A planned pair no longer in the scores table (changed during the run): a clear error
    naming the table, the column and the pair."""
    from optimizer.core.errors import InputError
    from optimizer.model.chosen import reread_p_redeem

    _, built = scores_world
    source = built.source
    assert source is not None
    problem = built.problem
    every = [b.offer >= 0 for b in problem.blocks]
    pairs = chosen_pairs_of(problem, every)
    whole = reread_p_redeem(pairs, source.source, source.customers)
    assert _bits(whole.p_redeem) == _bits(np.concatenate(
        [b.p_redeem[m] for b, m in zip(problem.blocks, every)]))
    k = pairs.offer.size // 2  # a listed pair taken out of the table
    customer = source.customers.get_column("customer_id")[int(pairs.c[k])]
    offer = source.source.offers.get_column("offer_id")[int(pairs.offer[k])]
    table = pl.read_parquet(source.source.path)
    table.filter((pl.col("customer_id") != customer) | (pl.col("offer_id") != offer)
                 ).write_parquet(tmp_path / "scores.parquet")
    moved = dataclasses.replace(source.source, path=str(Path(tmp_path / "scores.parquet")))
    with pytest.raises(InputError, match="scores") as caught:
        reread_p_redeem(pairs, moved, source.customers)
    assert caught.value.column == "p_redeem" and caught.value.count == 1
    assert caught.value.sample == [{"customer_id": customer, "offer_id": offer, "rows": 0}]
