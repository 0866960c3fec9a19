"""The scores table read in batches plans exactly as the table read whole; its rows are checked
as they are read; keeping each customer's best few listed pairs reports a bound over all of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.core.errors import InputError
from optimizer.model.problem import CandidateBlock
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.start import keep_best
from tests.random_world import run_with_problem
from tests.tiny_world import write_scenario

RULES = {"max_offers_per_customer": 3, "global_budget": 118.0, "budget_scale": 0.05,
         "sensitive_categories": ["INFANT FORMULA"]}
ROW_GROUP = 997  # customers' rows split across batches


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream") / "data"
    write_demo_data(folder, customers=1500, offers=30, seed=5, scores_per_customer=12)
    _rewrite_scores(folder, folder, lambda frame: frame)
    return folder


def _rewrite_scores(source: Path, target: Path, change) -> Path:
    """``target`` as a copy of ``source`` whose scores table is ``change(scores)``, written in
    small row groups (so that it is read in many batches)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name != "scores.parquet" and source != target:
            (target / path.name).write_bytes(path.read_bytes())
    change(pl.read_parquet(source / "scores.parquet")).write_parquet(
        target / "scores.parquet", row_group_size=ROW_GROUP)
    return target


def _scenario(root: Path, data: Path, **solver) -> Path:
    return write_scenario(root / "scenario.toml", data=str(data), output=str(root / "run"),
                          rules=RULES, solver={"chunk_size": 400, "polish_pairs": 0, **solver})


def _run(root: Path, data: Path, **solver):
    return run_scenario(load_scenario(_scenario(root, data, **solver)), write=False)


def test_streamed_table_plans_the_same_as_the_whole_table(data, tmp_path):
    whole = _run(tmp_path / "whole", data, stream_scores=False)
    streamed = _run(tmp_path / "streamed", data, stream_scores=True)
    assert whole.manifest["candidates"]["scores_read"] == "whole"
    assert streamed.manifest["candidates"]["scores_read"] == "in batches"
    assert streamed.assignments.equals(whole.assignments)
    assert streamed.offers_summary.equals(whole.offers_summary)
    assert (streamed.objective, streamed.bound) == (whole.objective, whole.bound)
    assert streamed.manifest["eligibility_audit"] == whole.manifest["eligibility_audit"]
    assert streamed.manifest["inputs"] == whole.manifest["inputs"]  # rows and checksum
    # the comparison means something: budgets bind and pairs were refused by the rules
    assert whole.manifest["offers_with_binding_budget"] > 0
    assert whole.assignments.height > 500
    assert whole.offers_summary.get_column("expected_cost").sum() == pytest.approx(118.0)


def test_rows_of_a_customer_may_come_in_any_order(data, tmp_path):
    shuffled = _rewrite_scores(data, tmp_path / "shuffled", lambda frame: frame.with_columns(
        pl.Series("r", np.random.default_rng(0).random(frame.height))).sort(
            "customer_id", "r").drop("r"))
    streamed = _run(tmp_path / "a", shuffled, stream_scores=True)
    whole = _run(tmp_path / "b", data, stream_scores=False)
    assert streamed.assignments.equals(whole.assignments)


def test_customers_out_of_order_are_refused_when_streamed(data, tmp_path):
    # the last customer's rows first: fine read whole, refused in batches
    moved = _rewrite_scores(data, tmp_path / "moved", lambda frame: pl.concat([
        frame.filter(pl.col("customer_id") == frame.get_column("customer_id").max()),
        frame.filter(pl.col("customer_id") != frame.get_column("customer_id").max())]))
    assert _run(tmp_path / "whole", moved, stream_scores=False).assignments.height > 0
    with pytest.raises(InputError) as refused:
        _run(tmp_path / "streamed", moved, stream_scores=True)
    message = str(refused.value)
    assert "scores" in message and "customer_id" in message and "stream_scores" in message


@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_row_in_a_late_batch_fails_cleanly(data, tmp_path, stream):
    def corrupt(frame: pl.DataFrame) -> pl.DataFrame:
        p = frame.get_column("p_redeem").to_numpy().copy()
        p[-3] = 1.5
        return frame.with_columns(pl.Series("p_redeem", p))
    bad = _rewrite_scores(data, tmp_path / "bad", corrupt)
    scenario = _scenario(tmp_path, bad, stream_scores=stream)
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "scores" in text and "p_redeem" in text and "1.5" in text
    assert not (tmp_path / "run").exists()


def test_a_pair_listed_twice_is_refused_when_streamed(data, tmp_path):
    doubled = _rewrite_scores(data, tmp_path / "doubled", lambda frame: pl.concat(
        [frame, frame.slice(40, 1)]).sort("customer_id", maintain_order=True))
    with pytest.raises(InputError, match="unique"):
        _run(tmp_path / "s", doubled, stream_scores=True)
    with pytest.raises(InputError, match="unique"):
        _run(tmp_path / "w", doubled, stream_scores=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Small enough for the exact solver to prove its optimum."""
    folder = tmp_path_factory.mktemp("small") / "data"
    write_demo_data(folder, customers=60, offers=12, seed=6, scores_per_customer=8)
    return folder


def test_best_few_per_customer_and_the_bound_over_every_listed_pair(small, tmp_path):
    data = small
    scenario = load_scenario(_scenario(tmp_path / "few", data, scores_per_customer=3))
    few, few_problem = run_with_problem(scenario, write=False)
    report = few.manifest["candidates"]
    assert report["candidates_per_customer"] == 3
    assert max(int((b.offer >= 0).sum(axis=1).max()) for b in few_problem.blocks) <= 3
    full, full_problem = run_with_problem(
        load_scenario(_scenario(tmp_path / "all", data)), write=False)
    # each customer keeps 3 of her allowed pairs (all of them when she has fewer)
    for kept_block, all_block in zip(few_problem.blocks, full_problem.blocks):
        assert (kept_block.customers == all_block.customers).all()
        for row in range(all_block.n_customers):
            allowed = set(all_block.offer[row][all_block.offer[row] >= 0].tolist())
            kept = kept_block.offer[row][kept_block.offer[row] >= 0].tolist()
            assert kept == sorted(kept) and set(kept) <= allowed
            assert len(kept) == min(3, len(allowed))
    # 60 customers are fewer than the sample: the LP of all of them chose the pairs
    assert report["selection"] == "reduced value at the LP prices of the first 60 customers"
    best_over_all = solve_exact(full_problem, time_limit_s=30)
    assert best_over_all.status == "optimal"
    slack = 1e-6 * max(1.0, best_over_all.objective)
    assert report["bound_all_candidates"] >= best_over_all.objective - slack
    assert report["bound_all_candidates"] >= few.bound - slack
    # the rise over the kept pairs' own bound at the same prices (every kept pair is listed)
    assert report["bound_kept_candidates"] <= report["bound_all_candidates"] + slack
    assert report["bound_increase"] == pytest.approx(
        report["bound_all_candidates"] - report["bound_kept_candidates"], abs=1e-9)
    assert report["pairs"] < report["pairs_all_candidates"] == full.manifest["candidate_pairs"]
    # streamed, the same plan and the same bound
    streamed = _run(tmp_path / "few_streamed", data, scores_per_customer=3, stream_scores=True)
    assert streamed.assignments.equals(few.assignments)
    assert streamed.manifest["candidates"]["bound_all_candidates"] == report["bound_all_candidates"]


def test_keep_best_ranks_by_the_given_rank_ties_to_the_lower_offer():
    offer = np.array([[2, 5, 7, 9], [1, 3, -1, -1], [4, 6, 8, -1]], dtype=np.int32)
    value = np.arange(12, dtype=float).reshape(3, 4) + 1
    block = CandidateBlock(np.arange(3), offer, value, value / 10, value / 100,
                           np.array([2, 2, 2]))
    rank = np.array([[1.0, 3.0, 3.0, 2.0], [0.5, 0.1, -np.inf, -np.inf],
                     [-1.0, 5.0, -1.0, -np.inf]])
    kept = keep_best(block, rank, 2)
    # row 0: the two 3.0 (offers 5 and 7); row 1: both listed; row 2: 6 and the tie's lower, 4
    assert kept.offer.tolist() == [[5, 7], [1, 3], [4, 6]]
    assert kept.value.tolist() == [[2.0, 3.0], [5.0, 6.0], [9.0, 10.0]]
    assert np.allclose(kept.cost, [[0.2, 0.3], [0.5, 0.6], [0.9, 1.0]])
    assert keep_best(block, rank, 4) is block


def test_keeping_at_least_every_listed_pair_changes_nothing(data, tmp_path):
    every = _run(tmp_path / "a", data, scores_per_customer=12)
    plain = _run(tmp_path / "b", data)
    assert every.assignments.equals(plain.assignments)
    assert (every.objective, every.bound) == (plain.objective, plain.bound)
    # nothing was left out, so there is nothing to bound again
    assert "bound_all_candidates" not in every.manifest["candidates"]


@pytest.mark.parametrize("stream", [False, True])
def test_check_reads_the_table_the_same_way(data, tmp_path, stream):
    scenario = load_scenario(_scenario(tmp_path, data, stream_scores=stream))
    run_scenario(scenario)
    assert check_run(scenario).ok
    path = tmp_path / "run" / "assignments.parquet"
    plan = pl.read_parquet(path)
    # one score changed, and one pair the table does not list for that customer
    listed = pl.read_parquet(data / "scores.parquet").filter(
        pl.col("customer_id") == plan.get_column("customer_id")[0]).get_column("offer_id")
    unlisted = next(o for o in pl.read_parquet(data / "offers.parquet").get_column("offer_id")
                    if o not in set(listed.to_list()))
    extra = plan.head(1).with_columns(pl.lit(unlisted).cast(plan.schema["offer_id"])
                                      .alias("offer_id"), pl.lit(9).cast(plan.schema["rank"])
                                      .alias("rank"))
    changed = plan.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.col("score") + 1)
                                .otherwise(pl.col("score")).alias("score"))
    pl.concat([changed, extra]).write_parquet(path)
    report = check_run(scenario)
    assert {"scores_values", "scores_pair"} <= report.rules
    found = {v.rule: v.count for v in report.violations}
    assert found["scores_values"] == 1 and found["scores_pair"] == 1
