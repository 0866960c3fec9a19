"""The point-in-time response history (offer base rate, her own and her category history): it reads
only weeks before its date, shrinks small offers towards the average, and the fitted scoring of a
week never depends on anything from that week on (no leakage into a backtest's held-out weeks)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.core.config import scenario_from_dict
from optimizer.io.validate import load_inputs
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring
from optimizer.scoring.response import OFFER_PRIOR_SENDS, response_history


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("response_demo")
    write_demo_data(out, 800, 30, seed=7)
    return out


def _scenario(data: Path) -> object:
    return scenario_from_dict({
        "name": "t", "week": 40, "data": str(data), "output": str(data / "run"),
        "rules": {"sensitive_categories": list(SENSITIVE_CATEGORIES)}})


def _before(frame: pl.DataFrame | None, week: int) -> pl.DataFrame | None:
    return None if frame is None else frame.filter(pl.col("week") < week)


def _scrambled_from(inputs, week: int):
    """The same inputs with every history, redemption and purchase of ``week`` on replaced."""
    red = inputs.redemptions
    late = inputs.history.filter(pl.col("week") >= week).sample(fraction=0.5, seed=1)
    return dataclasses.replace(
        inputs, redemptions=pl.concat([_before(red, week), late.select(red.columns)]),
        history=pl.concat([_before(inputs.history, week), late.head(late.height // 2)]),
        transactions=inputs.transactions.filter(pl.col("week") < week))


def test_history_reads_only_weeks_before_its_date(demo: Path):
    inputs = load_inputs(demo)
    cats = offer_categories(inputs)
    incidence = fit_scoring(inputs, _scenario(demo), cats, 38).model.offer_categories_
    plain = np.arange(inputs.n_offers)
    a = response_history(inputs, 38, plain, incidence)
    b = response_history(_scrambled_from(inputs, 38), 38, plain,
                         incidence)
    np.testing.assert_array_equal(a.offer_lift, b.offer_lift)
    np.testing.assert_array_equal(a.response, b.response)
    assert (a.redeemed != b.redeemed).nnz == 0 and (a.category_sent != b.category_sent).nnz == 0
    later = response_history(inputs, 40, plain, incidence)
    assert later.sent.nnz > a.sent.nnz  # weeks 38 and 39 do count from week 40 on


def test_offer_base_rate_is_shrunk_target_encoding(demo: Path):
    inputs = load_inputs(demo)
    incidence = fit_scoring(inputs, _scenario(demo), offer_categories(inputs), 40
                            ).model.offer_categories_
    h = response_history(inputs, 40, np.arange(inputs.n_offers), incidence)
    sent = np.asarray(h.sent.sum(axis=0)).ravel()
    red = np.asarray(h.redeemed.sum(axis=0)).ravel()
    expected = np.log((red + OFFER_PRIOR_SENDS * h.base_rate) / (sent + OFFER_PRIOR_SENDS)
                      / h.base_rate)
    np.testing.assert_allclose(h.offer_lift, expected)
    assert h.base_rate == pytest.approx(red.sum() / sent.sum())
    # an offer's raw rate is pulled towards the base rate, less so the more it was sent
    raw = np.log(np.maximum(red, 1e-9) / np.maximum(sent, 1) / h.base_rate)
    assert np.all(np.abs(h.offer_lift) <= np.abs(raw) + 1e-12)
    # sensitive offers are left out: no lift, no history of anybody's
    only = np.arange(inputs.n_offers)[5:]
    h2 = response_history(inputs, 40, only, incidence)
    assert np.all(h2.offer_lift[:5] == 0) and h2.sent[:, :5].nnz == 0


def test_fitted_scoring_of_a_week_ignores_that_week_and_later(demo: Path):
    inputs = load_inputs(demo)
    scenario = _scenario(demo)
    cats = offer_categories(inputs)
    a = fit_scoring(inputs, scenario, cats, 38)
    b = fit_scoring(_scrambled_from(inputs, 38), scenario, cats, 38)
    assert a.propensity["target"] == "redemption"
    np.testing.assert_array_equal(a.model.propensity_.coef_, b.model.propensity_.coef_)
    pa, va = a.model.score(0, inputs.n_customers)
    pb, vb = b.model.score(0, inputs.n_customers)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(va, vb)


@pytest.mark.parametrize("start", [0, 38])
def test_training_sends_from_the_shared_first_weeks_are_the_same(demo, start) -> None:
    """The repurchase fit's training sends read the history's first weeks its sources made
    (one group-by of every send): the same pairs, weeks and labels as their own group-by when
    no send is older than the window's start; a window starting later reads its own."""
    from optimizer.scoring.fit import _sent_pairs
    from optimizer.scoring.response import first_weeks

    inputs = load_inputs(demo)
    plain = np.arange(inputs.n_offers - 2)  # two offers left out, as sensitive ones are
    oldest = int(inputs.history.get_column("week").min())
    assert (start <= oldest) == (start == 0)  # one window of each kind
    shared = _sent_pairs(inputs, plain, start, 40, first_weeks(inputs.history, plain, 40))
    own = _sent_pairs(inputs, plain, start, 40)
    assert not isinstance(own, str) and not isinstance(shared, str)
    assert own[0].size and int(own[2].min()) >= start
    for a, b in zip(shared, own):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
