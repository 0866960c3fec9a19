"""Pricing rounds (column generation over the candidates, optimizer/apps/solve_stage.py): the
left-out pairs that the final prices say pay join the candidates and the solve goes on."""
from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from optimizer.apps import solve_stage
from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.check.verify import check_run
from optimizer.core.config import load_scenario
from optimizer.model.reduced import reduced_values
from optimizer.model.stability import Previous, add_bonus
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.start import admissible_prices
from optimizer.solve.lagrangian.truncation import _best_per_row, _change_lift, _marginals
from tests.random_world import run_with_problem
from tests.tiny_world import write_scenario

# tight budgets: the offers each customer values most get dear, so her best response at the
# final prices lies beyond her few best-valued candidates
RULES = {"max_offers_per_customer": 2, "max_offers_per_category": 1, "cooldown_weeks": 4,
         "global_budget": 25.0, "budget_scale": 0.3,
         "sensitive_categories": ["INFANT FORMULA"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pricing") / "data"
    write_demo_data(folder, customers=300, offers=24, seed=7)
    return folder


def _scenario(root: Path, data: Path, keep: int, rounds: int, solver: dict | None = None,
              rules: dict | None = None):
    path = write_scenario(root / "scenario.toml", data=str(data), output=str(root / "run"),
                          rules={**RULES, **(rules or {})},
                          solver={"polish_pairs": 0, **(solver or {})},
                          extra=f"\n[affinity]\ncandidates_per_customer = {keep}\n"
                                f"pricing_rounds = {rounds}\n")
    return load_scenario(path)


def test_a_round_prices_pairs_in_and_raises_the_plan(data, tmp_path):
    plain = run_scenario(_scenario(tmp_path / "plain", data, keep=3, rounds=0))
    priced_scenario = _scenario(tmp_path / "priced", data, keep=3, rounds=3)
    priced = run_scenario(priced_scenario)
    rounds = priced.manifest["candidates"]["pricing_rounds"]
    assert "pricing_rounds" not in plain.manifest["candidates"]
    # the first round found left-out pairs that pay at the final prices and its plan was kept
    assert rounds[0]["pairs_priced_in"] > 0 and rounds[0]["kept"]
    assert rounds[0]["pairs_unable_to_help"] >= 0  # her best positive ones that could not enter
    assert priced.manifest["candidate_pairs"] > plain.manifest["candidate_pairs"]
    assert priced.manifest["candidate_pairs"] == rounds[0]["candidate_pairs"] or any(
        r.get("kept") for r in rounds[1:])
    assert priced.objective > plain.objective * (1 + 1e-6)
    # every round after a kept one starts from a plan at least as good; the last round either
    # found nothing, was not kept, or was the last allowed
    assert len(rounds) <= 3
    assert all(r["kept"] for r in rounds[:-1])
    # the plan obeys every hard rule
    report = check_run(priced_scenario)
    assert report.ok, report.describe()


def test_the_bound_over_all_candidates_still_holds(data, tmp_path):
    priced, _ = run_with_problem(_scenario(tmp_path / "p", data, keep=3, rounds=0), write=False)
    full, full_problem = run_with_problem(_scenario(tmp_path / "f", data, keep=24, rounds=0),
                                          write=False)
    best = solve_exact(full_problem, time_limit_s=60)
    assert best.status == "optimal"
    after = run_scenario(_scenario(tmp_path / "r", data, keep=3, rounds=2), write=False)
    slack = 1e-6 * max(1.0, best.objective)
    assert after.manifest["candidates"]["bound_all_candidates"] >= best.objective - slack
    assert after.objective <= best.objective + slack
    # the rounds close part of the gap to the best plan over every candidate
    assert best.objective - after.objective < best.objective - priced.objective


def _spoil_the_round(monkeypatch, shift: float) -> list:
    """Patch the solve so that a round's plan gives the offers with targets nobody and its
    objective moves by ``shift``; returns the plans the solve made, as made."""
    real, calls = solve_stage.solve_pinned, []

    def spoiled(built, scenario, warm_start, progress):
        plan = real(built, scenario, warm_start, progress)
        calls.append(plan)
        if len(calls) == 1:
            return plan
        asked = np.flatnonzero(built.problem.offers.min_customers > 0)
        chosen = [mask & ~np.isin(block.offer, asked)
                  for block, mask in zip(built.problem.blocks, plan.chosen)]
        return replace(plan, chosen=chosen, objective=plan.objective + shift)
    monkeypatch.setattr(solve_stage, "solve_pinned", spoiled)
    return calls


def test_a_round_never_keeps_a_plan_further_from_the_targets(data, tmp_path, monkeypatch):
    # offers ask for customers (two more than the fixture's); the round's plan is made worth
    # more but gives those offers nobody: the solver's own rule (targets first) keeps the first
    targets = tmp_path / "targets"
    shutil.copytree(data, targets)
    offers = pl.read_parquet(targets / "offers.parquet").with_columns(
        min_customers=pl.when(pl.col("offer_id").is_in([1002, 1003]))
        .then(5).otherwise(pl.col("min_customers")))
    offers.write_parquet(targets / "offers.parquet")
    asked = int(offers.get_column("min_customers").sum())
    calls = _spoil_the_round(monkeypatch, 1e3)
    run = run_scenario(_scenario(tmp_path / "t", targets, keep=3, rounds=2), write=False)
    first, rounds = calls[0], run.manifest["candidates"]["pricing_rounds"]
    assert len(calls) == 2 and rounds[0]["pairs_priced_in"] > 0
    assert asked >= 10 and rounds[0]["target_shortfall"] == asked  # every target missed whole
    assert not rounds[0]["kept"] and len(rounds) == 1
    assert rounds[0]["objective"] > first.objective
    assert run.objective == pytest.approx(first.objective)
    assert run.manifest["candidate_pairs"] < rounds[0]["candidate_pairs"]


def test_a_round_not_kept_leaves_the_change_penalty_of_the_plan_kept(data, tmp_path,
                                                                     monkeypatch):
    # last week's lists earn a bonus (no cooldown keeps them out); the round's plan is not
    # kept, and the bonus taken off after the solve is the kept problem's own (the round's
    # blocks are wider: it used to crash)
    rules = {"cooldown_weeks": 0, "change_penalty": 0.05}
    plain = run_scenario(_scenario(tmp_path / "p", data, keep=3, rounds=0, rules=rules))
    _spoil_the_round(monkeypatch, -1e3)
    run = run_scenario(_scenario(tmp_path / "r", data, keep=3, rounds=1, rules=rules))
    rounds = run.manifest["candidates"]["pricing_rounds"]
    assert rounds[0]["pairs_priced_in"] > 0 and not rounds[0]["kept"]
    assert run.objective == plain.objective
    assert (tmp_path / "p" / "run" / "assignments.parquet").read_bytes() == (
        tmp_path / "r" / "run" / "assignments.parquet").read_bytes()


def _best_plan_value(items: list[tuple[float, tuple[int, ...]]], cap: int, per_category: int
                     ) -> float:
    """Her best plan's value by enumeration: at most ``cap`` of ``items`` (reduced value, every
    category the offer counts in), at most ``per_category`` in each category."""
    live = [item for item in items if item[0] > 0]
    best = 0.0
    for size in range(1, min(cap, len(live)) + 1):
        for subset in itertools.combinations(live, size):
            counts: dict[int, int] = {}
            for _, cats in subset:
                for k in cats:
                    counts[k] = counts.get(k, 0) + 1
            if max(counts.values(), default=0) <= per_category:
                best = max(best, sum(r for r, _ in subset))
    return best


@pytest.mark.parametrize("bonus", ["none", "targets", "change_penalty"])
def test_a_pair_at_her_marginal_cannot_raise_her_plan(data, tmp_path, bonus):
    # every customer, every offer she was not given, at exactly the marginal the pricing step
    # skips below: her best plan by enumeration (every category counted) does not rise; a hair
    # above it, it does for every full customer whose offers count in one category each. With
    # the targets' bonus (per offer, on every pair's value: the floor the plans are tested at),
    # and with the change penalty's bonus on the candidates of last week's lists (here the
    # plan's pairs, as the solve sees them: stability.add_bonus)
    run, problem = run_with_problem(_scenario(tmp_path / "m", data, keep=3, rounds=0),
                                    write=False)
    prices = admissible_prices(problem, run.solution.prices)
    if bonus == "change_penalty":
        c, o = problem.chosen_pairs(run.solution.chosen)
        n = problem.offers.n_offers
        add_bonus(problem, Previous(np.unique(c.astype(np.int64) * n + o), n, "plan"), 0.3)
    rng = np.random.default_rng(5)
    lift = (rng.random(problem.offers.n_offers) * 0.5 if bonus == "targets"
            else np.zeros(problem.offers.n_offers))
    cats = [tuple(int(k) for k in row if k >= 0) for row in problem.offers.categories]
    q = problem.max_per_category
    raised = 0
    for block in problem.blocks:
        at = np.arange(block.customers.size)
        marginal = _marginals(problem, prices, block, at, lift)
        reduced = reduced_values(block.value, block.cost, block.offer, prices.cost_price,
                                 prices.count, prices.global_budget, lift)
        for i in at:
            cap = int(block.cap[i])
            if cap == 0:
                assert marginal[i] == np.inf
                continue
            kept = [(float(r), cats[o]) for r, o in zip(reduced[i], block.offer[i]) if o >= 0]
            alone = _best_plan_value(kept, cap, q)
            for o in sorted(set(range(problem.offers.n_offers)) - set(block.offer[i].tolist())):
                at_marginal = _best_plan_value(kept + [(float(marginal[i]), cats[o])], cap, q)
                assert at_marginal <= alone + 1e-9 * max(1.0, alone)
            if marginal[i] > 0 and all(len(c) == 1 for _, c in kept):
                above = marginal[i] + 1e-6 * max(1.0, alone)
                # a pair of no category (one that no category cap stops)
                assert _best_plan_value(kept + [(above, ())], cap, q) > alone
                raised += 1
    assert raised > 0


def test_the_change_penalty_lifts_past_her_marginal_only_last_weeks_pairs():
    # customer 4 is full, her marginal 0.8; her left-out offers 1 and 2 are worth 0.5 each, and
    # only (4, 1) was on last week's list: with the penalty 0.4 it may raise her plan, (4, 2)
    # may not (counted unable); customer 7 is not full (marginal 0): her positive pair helps
    n_offers = 3
    previous = Previous(np.array([4 * n_offers + 1, 7 * n_offers + 2]), n_offers, "test")
    customers = np.array([4, 7])
    lift = _change_lift(previous, 0.4, customers, n_offers)
    assert lift.tolist() == [[0.0, 0.4, 0.0], [0.0, 0.0, 0.4]]
    assert _change_lift(None, 0.4, customers, n_offers).tolist() == [[0.0]]
    row, offer = np.array([0, 0, 1]), np.array([1, 2, 0])
    reduced, cap = np.array([0.5, 0.5, 0.3]), np.array([2, 1])
    floors = [(np.array([0.8, 0.0]), np.zeros(n_offers)[None, :] + lift)]
    keys, unable = _best_per_row(row, offer, reduced, cap, customers, n_offers, floors)
    assert keys.tolist() == [4 * n_offers + 1, 7 * n_offers + 0] and unable == 1
    # without the lift neither of hers helps
    keys, unable = _best_per_row(row, offer, reduced, cap, customers, n_offers,
                                 [(np.array([0.8, 0.0]), np.zeros((1, n_offers)))])
    assert keys.tolist() == [7 * n_offers + 0] and unable == 2


def test_a_rebuild_scores_again_only_the_chunks_holding_new_pairs(data, tmp_path, monkeypatch):
    # chunks of 5 customers: a round's new pairs fall in some; the others' blocks are the ones
    # built before (the same objects), and every block is what scoring every chunk again makes
    rebuilt = []

    def spy(built, scenario, model, extra):
        again = real(built, scenario, model, extra)
        rebuilt.append((built, scenario, model, extra, again))
        return again
    real = solve_stage.with_candidates
    monkeypatch.setattr(solve_stage, "with_candidates", spy)
    run_scenario(_scenario(tmp_path / "c", data, keep=3, rounds=3, solver={"chunk_size": 5}),
                 write=False)
    assert rebuilt
    for built, scenario, model, extra, again in rebuilt:
        n = built.inputs.n_offers
        new = np.setdiff1d(extra, built.candidate_keys) // n
        holds = [bool(((new >= b.customers[0]) & (new <= b.customers[-1])).any())
                 for b in built.made]
        assert any(holds) and not all(holds)
        for made, before, hold in zip(again.made, built.made, holds):
            assert (made is before) != hold
        every = real(replace(built, made=[]), scenario, model, extra)  # every chunk again
        assert len(every.made) == len(again.made) == len(again.problem.blocks)
        for ours, theirs in zip(again.made, every.made):
            for name in ("customers", "offer", "value", "cost", "p_redeem", "cap"):
                assert np.array_equal(getattr(ours, name), getattr(theirs, name))
        for ours, theirs in zip(again.dropped, every.dropped):
            for name in ("top_value", "top_category", "residual"):
                assert np.array_equal(getattr(ours, name), getattr(theirs, name))


def test_all_candidates_kept_prices_nothing_in(data, tmp_path):
    plain = run_scenario(_scenario(tmp_path / "a", data, keep=24, rounds=0))
    priced = run_scenario(_scenario(tmp_path / "b", data, keep=24, rounds=2))
    # every eligible pair is already a candidate: nothing to price, the bound is not re-scored
    assert plain.manifest["candidates"]["candidates_per_customer"] == "all"
    # one round, which found nothing to price and so neither built nor solved again
    rounds = priced.manifest["candidates"]["pricing_rounds"]
    assert len(rounds) == 1
    assert rounds[0]["pairs_priced_in"] == 0 and rounds[0]["pairs_unable_to_help"] == 0
    assert set(rounds[0]["seconds"]) == {"price"} and "kept" not in rounds[0]
    assert priced.manifest["candidate_pairs"] == plain.manifest["candidate_pairs"]
    assert (pl.read_parquet(tmp_path / "a" / "run" / "assignments.parquet").equals(
        pl.read_parquet(tmp_path / "b" / "run" / "assignments.parquet")))


def test_the_same_bytes_for_any_threads_and_chunks(data, tmp_path):
    folders = []
    for name, solver in (("one", {"threads": 1, "chunk_size": 1000}),
                         ("two", {"threads": 2, "chunk_size": 37})):
        run_scenario(_scenario(tmp_path / name, data, keep=3, rounds=2, solver=solver))
        folders.append(tmp_path / name / "run")
    for table in ("assignments.parquet", "offers_summary.parquet"):
        assert (folders[0] / table).read_bytes() == (folders[1] / table).read_bytes()


def test_the_rounds_share_the_solvers_time_limit(data, tmp_path):
    # the first solve spends the whole limit: no round starts, the first plan stands
    run = run_scenario(_scenario(tmp_path / "t", data, keep=3, rounds=2,
                                 solver={"time_limit_s": 1e-6}), write=False)
    assert run.manifest["solver"]["status"] == "time_limit"
    assert run.manifest["candidates"]["pricing_rounds"] == [
        {"skipped": "solver.time_limit_s reached"}]


def test_the_change_penalty_lifts_only_last_weeks_pairs(data, tmp_path):
    # last week's lists empty (a previous run that sent nothing): the change penalty adds value
    # to no pair, in the solve or in pricing, so the rounds price in what they do without it
    previous = tmp_path / "previous"
    previous.mkdir()
    pl.DataFrame({"customer_id": [], "offer_id": []},
                 schema={"customer_id": pl.Int64, "offer_id": pl.Int64}).write_parquet(
        previous / "assignments.parquet")
    plain = run_scenario(_scenario(tmp_path / "p", data, keep=3, rounds=1), write=False,
                         previous_run=previous)
    penalised = run_scenario(_scenario(tmp_path / "c", data, keep=3, rounds=1,
                                       rules={"change_penalty": 1e3}),
                             write=False, previous_run=previous)
    rounds = [run.manifest["candidates"]["pricing_rounds"][0] for run in (plain, penalised)]
    # some of her best positive left-out pairs cannot raise her plan: not lifted, not added
    assert rounds[0]["pairs_unable_to_help"] > 0
    assert rounds[1]["pairs_priced_in"] == rounds[0]["pairs_priced_in"]
    assert rounds[1]["pairs_unable_to_help"] == rounds[0]["pairs_unable_to_help"]
    assert penalised.assignments.equals(plain.assignments)
