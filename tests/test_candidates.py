"""The compiled scoring of the affinity path and the cheap bound over all candidates.

* ``AffinityModel.select`` keeps, byte for byte, the pairs that ``block_from_candidates`` keeps
  from ``AffinityModel.score`` (fitted propensity with response history, and the heuristic);
* ``best_totals`` is ``kernels.respond``'s relaxed best response over a block of all candidates;
* ``virtual_totals`` bounds it from the kept candidates and what was dropped, exactly when it
  takes nothing dropped;
* the run's ``bound_all_candidates`` equals the full re-scoring bound and holds the optimum over
  all candidates (exact model), and runs are byte-identical on 1 and 2 threads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import special

from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.core.config import load_scenario
from optimizer.core.parallel import chunks as _chunks
from optimizer.io.validate import load_inputs
from optimizer.model.eligibility import compile_rules, customer_caps
from optimizer.model.problem import block_from_pairs, offer_data
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.bounds import best_totals, virtual_totals
from optimizer.solve.lagrangian.method import dual_bound
from tests.oracles import block_from_candidates
from tests.random_world import run_with_problem
from tests.tiny_world import tree_bytes, write_scenario

RULES = {"max_offers_per_customer": 3, "max_offers_per_category": 1, "cooldown_weeks": 4,
         "global_budget": 60.0, "sensitive_categories": ["INFANT FORMULA"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cand") / "data"
    write_demo_data(folder, customers=400, offers=30, seed=7)
    return folder


def _scenario(root: Path, data: Path, keep: int, threads: int = 1, chunk: int = 150,
              rules: dict | None = None, model: str = "repurchase"):
    path = write_scenario(root / "scenario.toml", data=str(data), output="run",
                          rules=rules or RULES,
                          solver={"polish_pairs": 0, "threads": threads, "chunk_size": chunk},
                          extra=f"\n[affinity]\ncandidates_per_customer = {keep}\n"
                                f'model = "{model}"\n')
    return load_scenario(path)


# the logistic propensity with its response history, and the repurchase model (the default),
# whose pair term rides in the kernels' product slot
@pytest.fixture(scope="module", params=["fitted", "repurchase"])
def fitted(data, tmp_path_factory, request):
    scenario = _scenario(tmp_path_factory.mktemp("fit"), data, keep=4, model=request.param)
    inputs = load_inputs(scenario.data)
    cats = offer_categories(inputs)
    offers = offer_data(inputs.offers, cats.table, cats.names, 1.0)
    model = fit_scoring(inputs, scenario, cats, scenario.week).model
    rules = compile_rules(inputs, scenario.rules, scenario.week, cats)
    caps, _ = customer_caps(inputs, scenario.rules, scenario.week)
    return scenario, inputs, offers, model, rules, caps


def _reference(model, customers, allowed, keep, offers, caps):
    p, value = model.score(int(customers[0]), int(customers[-1]) + 1)
    offer = np.broadcast_to(np.arange(offers.n_offers, dtype=np.int64), p.shape)
    return block_from_candidates(customers, offer, p, value, allowed, offers.discount,
                                 caps[customers], keep=keep), p, value


@pytest.mark.parametrize("heuristic", [False, True, "calibrated"])
@pytest.mark.parametrize("keep", [1, 4, 30])
@pytest.mark.parametrize("top", [0, 2])  # top 0: the kernel leaves out what cannot be kept
def test_select_keeps_the_same_pairs_as_score(fitted, heuristic, keep, top):
    scenario, inputs, offers, model, rules, caps = fitted
    assert model.propensity_ is not None
    assert (model.history_ is not None) == (scenario.affinity.model == "fitted")
    if heuristic:
        model = _heuristic(model)
    if heuristic == "calibrated":  # the formula with Platt's calibration (repurchase_fit.platt)
        plain = model.p_redeem(0, 50)
        model.platt_ = (-0.7, 0.8)
        calibrated = model.p_redeem(0, 50)
        logit = special.logit(np.clip(plain, 1e-9, 1 - 1e-9))  # clipped as documented
        np.testing.assert_allclose(calibrated, special.expit(-0.7 + 0.8 * logit), rtol=1e-12)
    primary = offers.categories[:, 0]
    for start, stop in _chunks(inputs.n_customers, 170):
        customers = np.arange(start, stop, dtype=np.int64)
        offer = np.broadcast_to(np.arange(offers.n_offers, dtype=np.int64),
                                (customers.size, offers.n_offers))
        allowed = rules.reasons(customers, offer)
        allowed = ~np.any(list(allowed.values()), axis=0)
        ref, p, value = _reference(model, customers, allowed, keep, offers, caps)
        kept = model.select(customers, allowed, keep, primary, top=top)
        got = block_from_pairs(customers, kept.row, kept.offer, kept.p_redeem, kept.value,
                               offers.discount, caps[customers])
        for name in ("offer", "value", "cost", "p_redeem", "cap"):
            assert np.array_equal(getattr(got, name), getattr(ref, name)), name
        # what was dropped: its largest value is the (keep + 1)-th largest live value
        live = np.where(allowed & (value > 0), value, -np.inf)
        if keep < offers.n_offers:
            expect = np.maximum(-np.partition(-live, keep, axis=1)[:, keep], 0.0)
            got_max = np.maximum(kept.top_value.max(axis=1, initial=0.0), kept.residual)
            assert np.array_equal(got_max, expect)


def test_value_ceiling_bounds_the_scored_value():
    # what lets the kernel skip exp: the ceiling is never below the value it computes, from
    # logistic saturation to underflow (a NaN predictor never bounds anything)
    import numba as nb

    from optimizer.scoring._pair_kernels import _value_ceiling, propensity_p

    @nb.njit
    def _scored_values(eta, rate, worth, clv):
        out = np.empty(eta.size)
        for i in range(eta.size):
            out[i] = propensity_p(eta[i], rate) * worth[i] * clv[i]
        return out

    @nb.njit
    def _ceilings(eta, rate, worth, clv):
        out = np.empty(eta.size)
        for i in range(eta.size):
            out[i] = _value_ceiling(eta[i], rate, worth[i], clv[i])
        return out

    rng = np.random.default_rng(5)
    eta = np.concatenate([rng.normal(-3, 2, 200_000), rng.uniform(-800, 40, 200_000),
                          -np.logspace(-12, 3, 1000), [0.0, -0.0, 1e-300, -1e-300, 710, -745,
                                                       np.inf, -np.inf]])
    worth = rng.uniform(0.1, 5, eta.size)
    clv = rng.uniform(0.1, 3, eta.size)
    for rate in (1.0, 0.35):
        value = _scored_values(eta, rate, worth, clv)
        ceiling = _ceilings(eta, rate, worth, clv)
        assert np.all(ceiling >= value)
        # and it is tight enough to be worth it where offers are scored (eta around -3)
        typical = (eta > -6) & (eta < 0)
        assert np.median(ceiling[typical] / value[typical]) < 1.1
    assert not _ceilings(np.array([np.nan]), 1.0, np.ones(1), np.ones(1))[0] < 0.0


def _heuristic(model):
    clone = type(model)(model.settings, model.objective)
    clone.__dict__.update({k: v for k, v in model.__dict__.items() if k != "_kernel_shared"})
    clone.propensity_ = None
    return clone


def _prices(rng, n_offers, scale):
    return (rng.random(n_offers) * scale * (rng.random(n_offers) < 0.6),
            rng.random(n_offers) * scale * 0.05 * (rng.random(n_offers) < 0.5),
            float(rng.random() * scale * 0.2))


@pytest.mark.parametrize("per_category", [1, 2, None])
def test_best_totals_and_virtual_bound_match_the_greedy_over_all_candidates(fitted, per_category):
    scenario, inputs, offers, model, rules, caps = fitted
    rng = np.random.default_rng(3)
    primary = offers.categories[:, 0]
    zero = np.zeros(offers.n_offers)
    resp_primary = primary if per_category is not None else np.full_like(primary, -1)
    customers = np.arange(inputs.n_customers, dtype=np.int64)
    offer = np.broadcast_to(np.arange(offers.n_offers, dtype=np.int64),
                            (customers.size, offers.n_offers))
    allowed = ~np.any(list(rules.reasons(customers, offer).values()), axis=0)
    every, _, _ = _reference(model, customers, allowed, None, offers, caps)
    cap = np.minimum(caps, 3) + rng.integers(0, 2, caps.size)  # some caps of 4
    for scale in (0.0, 0.5, 3.0):
        budget, count, glob = _prices(rng, offers.n_offers, scale)
        full = kernels.respond(every.value, every.cost, every.offer, cap, budget, count, glob,
                               zero, resp_primary, per_category)[1]
        got = best_totals(model.kernel_arrays(customers), customers, allowed, primary,
                          per_category, cap, budget, count, glob, offers.discount)
        assert np.array_equal(got, full)
        for keep, top in ((1, 0), (3, 1), (6, 8)):
            kept = model.select(customers, allowed, keep, primary,
                                top if per_category is not None else 0)
            block = block_from_pairs(customers, kept.row, kept.offer, kept.p_redeem,
                                     kept.value, offers.discount, cap)
            reduced = kernels.reduced_values(block.value, block.cost, block.offer, budget,
                                             count, glob, zero)
            kept_only = kernels.respond(block.value, block.cost, block.offer, cap, budget,
                                        count, glob, zero, resp_primary, per_category)[1]
            loose, loose_used = virtual_totals(reduced, block.offer, cap, primary, per_category,
                                               kept.top_value, kept.top_category, kept.residual)
            bound, used = virtual_totals(reduced, block.offer, cap, primary, per_category,
                                         kept.top_value, kept.top_category, kept.residual,
                                         (budget, count, glob), model.redemption_worth_,
                                         offers.discount, model.clv_factor_)
            for b, u in ((loose, loose_used), (bound, used)):
                assert (b >= full - 1e-12).all()
                # where nothing dropped was taken: the kept candidates' best response, exactly
                assert np.allclose(b[~u], full[~u], rtol=1e-12, atol=0)
                assert np.allclose(b[~u], kept_only[~u], rtol=1e-12, atol=0)
                assert u.any() or np.allclose(full, kept_only)
            # the prices can only tighten it
            assert (bound <= loose + 1e-9 * np.abs(loose).max(initial=1.0)).all()
            assert not (used & ~loose_used).any()
            if scale > 0 and keep == 3:
                assert used.sum() < loose_used.sum()


def _full_rescoring_bound(model, inputs, rules, caps, problem, solution, chunk):
    """The bound as it was computed before: every chunk re-scored, every eligible pair."""
    def blocks():
        for start, stop in _chunks(inputs.n_customers, chunk):
            customers = np.arange(start, stop, dtype=np.int64)
            p, value = model.score(start, stop)
            offer = np.broadcast_to(np.arange(inputs.n_offers, dtype=np.int64), p.shape)
            eligible = ~np.any(list(rules.reasons(customers, offer).values()), axis=0)
            yield block_from_candidates(customers, offer, p, value, eligible,
                                        problem.offers.discount, caps[start:stop])
    return dual_bound(problem, solution.prices, blocks())


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_bound_all_candidates_is_the_full_rescoring_bound(data, tmp_path, keep, fitted):
    fixture, inputs, _, model, rules, caps = fitted
    scenario = _scenario(tmp_path, data, keep=keep, model=fixture.affinity.model)
    result, problem = run_with_problem(scenario, write=False)
    report = result.manifest["candidates"]
    # the same fit as the fixture's (same inputs, same seed)
    reference = _full_rescoring_bound(model, inputs, rules, caps, problem, result.solution,
                                      scenario.solver.chunk_size)
    assert report["bound_all_candidates"] == pytest.approx(reference, rel=1e-12)
    assert report["bound_all_candidates"] >= result.bound - 1e-9
    assert 0 < report["customers_rescored"] <= inputs.n_customers


def test_bound_all_candidates_holds_the_optimum_over_all_candidates(tmp_path):
    folder = tmp_path / "data"
    write_demo_data(folder, customers=50, offers=10, seed=11)
    rules = {**RULES, "max_offers_per_customer": 2, "global_budget": 25.0}
    truncated, _ = run_with_problem(_scenario(tmp_path / "few", folder, keep=2, chunk=20,
                                              rules=rules), write=False)
    full, problem = run_with_problem(_scenario(tmp_path / "all", folder, keep=10, chunk=20,
                                               rules=rules), write=False)
    best = solve_exact(problem, time_limit_s=60)
    assert best.status == "optimal"
    report = truncated.manifest["candidates"]
    assert report["bound_all_candidates"] >= best.objective - 1e-6 * max(1.0, best.objective)
    assert report["pairs"] < full.manifest["candidates"]["pairs"]


def test_runs_are_byte_identical_on_one_and_two_threads(data, tmp_path):
    trees = []
    for threads in (1, 2):
        root = tmp_path / f"t{threads}"
        scenario = _scenario(root, data, keep=4, threads=threads, chunk=90)
        result = run_scenario(scenario)
        trees.append((tree_bytes(result.output), result.manifest))
    (a, ma), (b, mb) = trees
    assert set(a) == set(b)
    for name in a:
        if name not in ("manifest.json", "report.html"):  # these hold timings and the scenario
            assert a[name] == b[name], name
    for key in ("objective", "upper_bound", "gap", "candidates", "eligibility_audit",
                "candidate_pairs"):
        assert ma[key] == mb[key], key
