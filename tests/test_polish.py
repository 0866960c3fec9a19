"""The core polish (optimizer/solve/polish.py): feasible, never worse, exact when the whole
problem fits, a valid bound, deterministic and independent of the chunking, and wired into the
pipeline (manifest, ``offeropt check``)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.check.verify import check_run
from optimizer.core.config import load_scenario
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData, Prices, Solution
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.polish import PolishSettings, polish
from tests.random_world import run_with_problem, write_random_world
from tests.test_solver_vs_exact import _assert_feasible, random_problem


def _lagrangian(problem: AssignmentProblem) -> Solution:
    return solve_lagrangian(problem, LagrangianSettings(gap_tolerance=1e-6, max_iterations=25))


def _with_targets(problem: AssignmentProblem, seed: int) -> AssignmentProblem:
    """The same problem with random ``min_customers`` targets on some offers."""
    rng = np.random.default_rng(seed)
    offers = problem.offers
    targets = np.where(rng.random(offers.n_offers) < 0.5,
                       rng.integers(0, max(2, problem.n_customers // 2), offers.n_offers), 0)
    return AssignmentProblem(
        OfferData(offers.discount, offers.budget, offers.max_customers, targets.astype(np.int64),
                  offers.categories, offers.category_names),
        problem.blocks, problem.max_per_category, problem.global_budget, problem.n_customers)


def _reblock(problem: AssignmentProblem, chosen: list[np.ndarray], size: int
             ) -> tuple[AssignmentProblem, list[np.ndarray]]:
    """The same customers and plan cut into blocks of ``size`` customers (padded to one width)."""
    width = max(b.offer.shape[1] for b in problem.blocks)

    def stack(name: str, fill: float) -> np.ndarray:
        return np.concatenate([np.pad(getattr(b, name), ((0, 0), (0, width - b.offer.shape[1])),
                                      constant_values=fill) for b in problem.blocks])

    offer, value, cost, p = stack("offer", -1), stack("value", 0), stack("cost", 0), \
        stack("p_redeem", 0)
    mask = np.concatenate([np.pad(c, ((0, 0), (0, width - c.shape[1]))) for c in chosen])
    customers = np.concatenate([b.customers for b in problem.blocks])
    cap = np.concatenate([b.cap for b in problem.blocks])
    blocks, masks = [], []
    for start in range(0, customers.size, size):
        s = slice(start, start + size)
        blocks.append(CandidateBlock(customers[s], offer[s], value[s], cost[s], p[s], cap[s]))
        masks.append(mask[s])
    return (AssignmentProblem(problem.offers, blocks, problem.max_per_category,
                              problem.global_budget, problem.n_customers), masks)


def _flat(problem: AssignmentProblem, chosen: list[np.ndarray]) -> np.ndarray:
    """Chosen (customer, offer) pairs, independent of the block layout."""
    parts = [np.stack([np.broadcast_to(b.customers[:, None], b.offer.shape)[c], b.offer[c]], 1)
             for b, c in zip(problem.blocks, chosen)]
    pairs = np.concatenate(parts)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


_INSTANCES = dict(seed=st.integers(0, 10**6), n=st.integers(1, 40), m=st.integers(1, 8),
                  slots=st.integers(1, 6), multi=st.booleans(),
                  per_category=st.sampled_from([None, 1, 2]),
                  global_share=st.sampled_from([None, 0.3, 0.8]),
                  max_pairs=st.sampled_from([1, 5, 20, 60, 20_000]), targets=st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_INSTANCES)
def test_polish_is_feasible_never_worse_and_keeps_targets(seed, n, m, slots, multi, per_category,
                                                          global_share, max_pairs, targets):
    """Whatever the core size (a few pairs up to the whole problem): the polished plan obeys every
    rule, is worth at least the plan it started from, never moves an offer away from its
    ``min_customers`` target, and never loosens the bound (which stays valid)."""
    problem = random_problem(seed, n, m, slots, multi, per_category, global_share)
    if targets:
        problem = _with_targets(problem, seed)
    lag = _lagrangian(problem)
    out = polish(problem, lag, PolishSettings(max_pairs=max_pairs, seed=seed % 7))
    _assert_feasible(problem, out.chosen)
    assert out.objective >= lag.objective
    assert out.objective == pytest.approx(problem.objective(out.chosen), rel=1e-12)
    assert out.bound <= lag.bound
    assert out.polish["pairs"] <= max_pairs
    counts = lambda chosen: problem.usage(chosen).customers  # noqa: E731
    goal = problem.offers.min_customers
    assert (counts(out.chosen) >= np.minimum(counts(lag.chosen), goal)).all()
    if not out.polish["accepted"]:
        assert all((a == b).all() for a, b in zip(out.chosen, lag.chosen))
    if out.polish["whole_problem"] or out.bound < lag.bound:
        exact = solve_exact(problem, time_limit_s=30)
        assert out.bound >= exact.objective - 1e-6 * max(1.0, exact.objective)


@pytest.mark.parametrize("seed", range(6))
def test_whole_problem_core_reaches_the_exact_optimum_and_tightens_the_bound(seed):
    """Small knapsack-like instances, where the Lagrangian repair loses most: the polished plan is
    the exact optimum (up to the integer scaling) and the bound comes down to it."""
    problem = random_problem(seed, 12, 1 + seed % 3, 3, multi=False, per_category=None,
                             global_share=0.3 if seed % 2 else None)
    lag = _lagrangian(problem)
    out = polish(problem, lag, PolishSettings())
    exact = solve_exact(problem, time_limit_s=30)
    assert out.polish["whole_problem"]
    assert out.polish["status"] == "OPTIMAL"
    assert out.objective == pytest.approx(exact.objective, rel=1e-6)
    assert exact.objective - 1e-6 <= out.bound <= exact.objective * (1 + 1e-5) + 1e-9
    assert out.status == "optimal"


def test_rounding_stays_feasible_on_exactly_binding_budgets():
    """Costs that sum to the budget only in exact arithmetic (0.1 + 0.2 > 0.3 in floats): the
    integer model rounds costs up and capacities down, so no budget is overrun."""
    offers = OfferData(np.array([1.0]), np.array([0.3]), np.array([np.inf]),
                       np.zeros(1, dtype=np.int64), np.array([[0]]), ["c"])
    cost = np.array([[0.1], [0.2], [0.3]])
    block = CandidateBlock(np.arange(3), np.zeros((3, 1), dtype=np.int64), np.array(
        [[1.0], [1.0], [1.5]]), cost, cost.copy(), np.ones(3, dtype=np.int64))
    problem = AssignmentProblem(offers, [block], None, float("inf"), 3)
    start = Solution([np.zeros((3, 1), dtype=bool)], 0.0, 3.5, "iteration_limit", "lagrangian",
                     1, Prices.zeros(1))
    out = polish(problem, start, PolishSettings())
    spend = float(cost[out.chosen[0]].sum())
    assert spend <= 0.3
    assert out.objective == pytest.approx(1.5)


@pytest.mark.parametrize("max_pairs", [15, 40, 20_000])
def test_polish_is_deterministic_and_independent_of_chunking(max_pairs):
    problem = random_problem(11, 60, 8, 6, multi=True, per_category=1, global_share=0.5)
    lag = _lagrangian(problem)
    settings_ = PolishSettings(max_pairs=max_pairs, seed=3)
    first = polish(problem, lag, settings_)
    again = polish(problem, lag, settings_)
    assert all((a == b).all() for a, b in zip(first.chosen, again.chosen))
    assert (first.objective, first.bound) == (again.objective, again.bound)
    for size in (1, 13, 60):
        other, masks = _reblock(problem, lag.chosen, size)
        moved = Solution(masks, lag.objective, lag.bound, lag.status, lag.method,
                         lag.iterations, lag.prices)
        out = polish(other, moved, settings_)
        assert (_flat(other, out.chosen) == _flat(problem, first.chosen)).all()
        assert out.objective == first.objective and out.bound == first.bound
        assert out.polish["pairs"] == first.polish["pairs"]


def test_zero_pairs_disables_the_polish():
    problem = random_problem(5, 20, 3, 4, multi=False, per_category=None, global_share=None)
    lag = _lagrangian(problem)
    out = polish(problem, lag, PolishSettings(max_pairs=0))
    assert out.polish["status"] == "skipped" and not out.polish["accepted"]
    assert out.objective == lag.objective and out.bound == lag.bound


@pytest.mark.parametrize("seed", [3, 17, 29])
def test_pipeline_records_the_polish_and_check_passes(seed):
    """Through ``run_scenario``: the manifest records the polish, the written run passes
    ``offeropt check``, the exact method is untouched, and two runs write the same bytes."""
    with tempfile.TemporaryDirectory(prefix="offeropt-polish-") as tmp:
        root = Path(tmp)
        scenario = load_scenario(write_random_world(root, seed, 25, 10, targets=False))
        result, problem = run_with_problem(scenario)
        record = result.manifest["solver"]["polish"]
        for key in ("pairs", "customers", "objective_before", "objective_after", "seconds",
                    "status", "accepted", "whole_problem", "bound_before", "bound_after"):
            assert key in record
        assert record["objective_after"] == pytest.approx(result.objective, rel=1e-12)
        assert record["objective_after"] >= record["objective_before"]
        report = check_run(scenario)
        assert report.ok, report.describe()
        first = {f: (scenario.output / f).read_bytes()
                 for f in ("assignments.csv", "offers_summary.csv")}
        # the same inputs into a fresh folder (an earlier run in the folder would warm-start)
        twin = load_scenario(write_random_world(root / "twin", seed, 25, 10, targets=False))
        run_with_problem(twin)
        assert {f: (twin.output / f).read_bytes() for f in first} == first
        exact_scenario = load_scenario(write_random_world(root / "exact", seed, 25, 10,
                                                          targets=False, method="exact"))
        exact_result, _ = run_with_problem(exact_scenario, write=False)
        assert exact_result.manifest["solver"]["polish"] is None
        assert exact_result.manifest["solver"]["method"].startswith("exact")
        assert result.objective >= 0.99 * exact_result.objective - 1e-9


def test_polish_skipped_where_its_core_is_a_sliver_of_the_problem() -> None:
    """Past ``_POLISH_REACH`` x ``polish_pairs`` pairs the polish cannot move the objective
    measurably: ``solve`` skips it and records why; within reach it runs."""
    from optimizer.core.config import Solver
    from optimizer.solve import _POLISH_REACH, solve

    problem = random_problem(7, 400, 8, 4, True, 1, 0.5)
    # one pass at a tolerance no pass meets: the lagrangian ends uncertified
    uncertified = {"gap_tolerance": 1e-12, "max_iterations": 1}
    tiny_core = max(1, problem.n_pairs // (_POLISH_REACH + 1))
    assert problem.n_pairs > _POLISH_REACH * tiny_core
    skipped = solve(problem, Solver(polish_pairs=tiny_core, **uncertified))
    assert skipped.polish["status"] == "skipped"
    assert f"1/{_POLISH_REACH}" in skipped.polish["reason"]
    ran = solve(problem, Solver(polish_pairs=problem.n_pairs // 2, **uncertified))
    assert ran.polish["status"] != "skipped" and ran.polish["pairs"] > 0
