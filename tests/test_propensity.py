"""The redemption propensity: coefficient recovery and calibration on simulated data, and the
privacy rule (sensitive purchases never move a customer's other offers)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.core.config import scenario_from_dict
from optimizer.io.validate import load_inputs
from optimizer.scoring.features import offer_categories, purchase_lines
from optimizer.scoring.fit import fit_scoring, sensitive_offers
from optimizer.scoring.propensity import (
    FEATURES,
    KERNEL_PAIR_FEATURES,
    PAIR_FEATURES,
    Propensity,
    design,
    simulate,
)
from tests.oracles import propensity_predict


def _columns(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    customer = {"discount_share": rng.beta(1.5, 4, n), "recency": rng.random(n),
                "visits": rng.gamma(2, 5, n), "tenure_weeks": rng.uniform(0, 52, n)}
    history = {"response": rng.normal(0, 0.3, n), "offer_lift": rng.normal(0, 0.4, n),
               "redeemed_offer": (rng.random(n) < 0.05).astype(float),
               "sent_offer": (rng.random(n) < 0.2).astype(float),
               "category_redeemed": rng.poisson(0.3, n).astype(float),
               "category_sent": rng.poisson(1.5, n).astype(float)}
    return design(rng.beta(0.5, 4, n), rng.beta(0.3, 6, n), rng.beta(0.2, 10, n), customer,
                  rng.uniform(0.05, 0.6, n), history)


BETA = np.array([-2.0, 1.5, 0.4, 1.0, 0.5, 0.8, 1.2, -1.0, 0.5, 0.1, -0.2, 0.6, 0.8, 0.7, -0.3,
                 0.4, -0.2])


def test_logistic_propensity_recovers_coefficients_and_is_calibrated():
    rng = np.random.default_rng(0)
    train = _columns(rng, 200_000)
    y = simulate(rng, train, BETA)
    model = Propensity(l2=0.0).fit(train, y)
    assert model.converged_ and model.positives_ == int(y.sum())
    np.testing.assert_allclose(model.coef_, BETA, atol=0.25)
    test = _columns(rng, 100_000)
    y_test = simulate(rng, test, BETA)
    p = propensity_predict(model, test)
    order = np.argsort(p)
    for part in np.array_split(order, 10):  # calibration by decile of prediction
        assert p[part].mean() == pytest.approx(y_test[part].mean(), abs=0.015)
    assert set(model.describe()["coefficients"]) == set(FEATURES)


def test_constant_feature_gets_no_weight():
    rng = np.random.default_rng(1)
    cols = _columns(rng, 20_000)
    cols[11] = np.zeros(20_000)  # response unknown: the same for everybody
    y = simulate(rng, cols, BETA)
    model = Propensity().fit(cols, y)
    assert model.coef_[11] == 0.0 and np.all(np.abs(model.coef_) < 50)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("propensity_demo")
    write_demo_data(out, 600, 40, seed=5)
    return out


def _scenario(data: Path, **affinity) -> object:
    return scenario_from_dict({
        "name": "t", "week": 40, "data": str(data), "output": str(data / "run"),
        "rules": {"sensitive_categories": list(SENSITIVE_CATEGORIES)},
        "affinity": affinity})


@pytest.mark.parametrize("model,target", [("fitted", "redemption"),
                                          ("fitted", "category purchase"),
                                          ("repurchase", "redemption"),
                                          ("repurchase", "product purchase")])
def test_sensitive_purchases_never_move_other_offers(demo: Path, model: str, target: str):
    inputs = load_inputs(demo)
    if target != "redemption":  # no redemptions: the proxy path
        inputs = dataclasses.replace(inputs, redemptions=None)
    scenario = _scenario(demo, model=model)
    cats = offer_categories(inputs)
    before = fit_scoring(inputs, scenario, cats, 40)
    assert before.propensity["target"] == target
    # customer 7 suddenly buys a lot of a sensitive category, in many weeks
    sens = inputs.products.filter(pl.col("category") == "INFANT FORMULA").get_column("p")[0]
    tx = inputs.transactions
    extra = tx.head(20).with_columns(pl.lit(7, tx.schema["c"]).alias("c"),
                                     pl.lit(sens, tx.schema["p"]).alias("p"),
                                     pl.Series("week", np.arange(14, 34) + 5, tx.schema["week"]),
                                     pl.lit(55.0).alias("sales_value"))
    changed = dataclasses.replace(inputs, transactions=pl.concat([tx, extra]))
    after = fit_scoring(changed, scenario, cats, 40)
    touchy = sensitive_offers(cats, SENSITIVE_CATEGORIES)
    plain = np.setdiff1d(np.arange(inputs.n_offers), touchy)
    p0, v0 = before.model.score(0, inputs.n_customers)
    p1, v1 = after.model.score(0, inputs.n_customers)
    # equal up to round-off: polars' parallel group-by sums may add in another order when the
    # table grows, which moves fitted parameters in the 12th digit, never more
    np.testing.assert_allclose(p1[:, plain], p0[:, plain], rtol=1e-9, atol=0)
    np.testing.assert_allclose(v1[:, plain], v0[:, plain], rtol=1e-9, atol=0)
    np.testing.assert_allclose(after.clv, before.clv, rtol=1e-9, atol=0)
    infant = offer_categories(inputs).pairs.filter(pl.col("category") == "INFANT FORMULA")
    own = np.unique(infant.get_column("o").to_numpy())
    if own.size:  # her offers in that same category do respond to the purchases
        assert np.any(p1[7, own] != p0[7, own])


def test_block_prediction_matches_the_design_columns():
    """The compiled block scorer gives :meth:`Propensity.predict` of ``design`` (to rounding)."""
    from optimizer.scoring.propensity import FEATURES, Propensity, design
    rng = np.random.default_rng(5)
    n, m = 40, 30
    model = Propensity(rate=0.7)
    model.coef_ = rng.normal(0, 0.5, len(FEATURES))
    model.coef_[4] = 0.0  # a zero coefficient is skipped by both
    cat, brand, product = (rng.random((n, m)) * 1.5 for _ in range(3))
    customer = {"discount_share": rng.random(n), "recency": rng.random(n),
                "visits": rng.integers(0, 20, n).astype(float), "tenure_weeks": rng.random(n) * 80}
    depth = rng.random(m)
    history = {"response": rng.random(n), "offer_lift": rng.normal(0, 1, m),
               "redeemed_offer": (rng.random((n, m)) < 0.1).astype(float),
               "sent_offer": (rng.random((n, m)) < 0.2).astype(float),
               "category_redeemed": rng.integers(0, 4, (n, m)).astype(float),
               "category_sent": rng.integers(0, 6, (n, m)).astype(float)}
    for h in (history, None):
        wide = ({**h, "response": h["response"][:, None], "offer_lift": h["offer_lift"][None, :]}
                if h else None)
        expected = propensity_predict(model, design(cat, brand, product,
                                        {k: v[:, None] for k, v in customer.items()},
                                        depth[None, :], wide))
        got = model.predict_block(cat, brand, product, customer, depth, h)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_the_compiled_predictor_adds_every_pair_feature_in_features_order() -> None:
    # pair_eta's terms are indexed from FEATURES; a pair feature added to FEATURES without a
    # term there would be fitted but never scored
    assert KERNEL_PAIR_FEATURES == PAIR_FEATURES


@pytest.mark.parametrize("model,target", [("fitted", "redemption"),
                                          ("fitted", "category purchase"),
                                          ("repurchase", "redemption"),
                                          ("repurchase", "product purchase"),
                                          ("heuristic", None)])
def test_the_fit_from_purchase_lines_reads_no_transactions(demo: Path, model: str,
                                                            target: str | None):
    # a run makes the purchase lines, lets the transactions go and fits from the lines
    # (optimizer/apps/pipeline.py): every score and lifetime value must be the same bits
    inputs = load_inputs(demo)
    if target not in (None, "redemption"):
        inputs = dataclasses.replace(inputs, redemptions=None)
    scenario = _scenario(demo, model=model)
    cats = offer_categories(inputs)
    full = fit_scoring(inputs, scenario, cats, 40)
    lines = purchase_lines(inputs, scenario.rules.sensitive_categories, 40)
    bare = dataclasses.replace(inputs, transactions=inputs.transactions.clear())
    from_lines = fit_scoring(bare, scenario, cats, 40, lines)
    if target is not None:
        assert from_lines.propensity["target"] == full.propensity["target"] == target
    p0, v0 = full.model.score(0, inputs.n_customers)
    p1, v1 = from_lines.model.score(0, inputs.n_customers)
    np.testing.assert_array_equal(p1, p0)
    np.testing.assert_array_equal(v1, v0)
    np.testing.assert_array_equal(from_lines.clv, full.clv)
    assert from_lines.lifetime_value == full.lifetime_value
