"""Issue 25: the repurchase model's training rows (each send as of its first weeks), its held-out
check by top-k recall against buy-again, and the fallback it records in the manifest."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.validate import load_inputs
from optimizer.scoring import repurchase_fit
from optimizer.scoring.repurchase import BUY_AGAIN


def test_sent_rows_follow_each_send_while_open_and_unredeemed(demo_500: Path):
    inputs = load_inputs(demo_500)
    hist, red, offers = inputs.history, inputs.redemptions, inputs.offers
    history = pl.DataFrame({"c": [0, 1, 1], "o": [1, 2, 2], "week": [10, 12, 14]}).cast(
        {k: hist.schema[k] for k in ("c", "o", "week")})
    redemptions = pl.DataFrame({"c": [0, 0], "o": [1, 1], "week": [13, 18]}).cast(
        {k: red.schema[k] for k in ("c", "o", "week")})
    end = pl.Series([None] * offers.height, dtype=pl.Int64).scatter([1, 2], [30, 13])
    small = dataclasses.replace(inputs, history=history, redemptions=redemptions,
                                offers=offers.with_columns(end.cast(offers.schema["end_week"])
                                                           .alias("end_week")))
    c, o, t, y, fresh = repurchase_fit.sent_rows(small, np.arange(inputs.n_offers), 0, 16, 10_000,
                                          np.random.default_rng(0))
    assert sorted(zip(c[fresh].tolist(), t[fresh].tolist())) == [(0, 10), (1, 12)]
    rows = sorted(zip(c.tolist(), o.tolist(), t.tolist(), y.tolist()))
    # (0, 1): weeks 10..13 (she redeems in 13; the 18 is after the plan week 16), all redeemed
    # at or after their week; (1, 2): first sent 12, open until 13, never redeemed
    assert rows == [(0, 1, 10, 1.0), (0, 1, 11, 1.0), (0, 1, 12, 1.0), (0, 1, 13, 1.0),
                    (1, 2, 12, 0.0), (1, 2, 13, 0.0)]


def test_top_k_recall_counts_ties_against_the_positives():
    group = np.array([0, 0, 0, 1, 1, 1])
    y = np.array([1.0, 0, 0, 0, 0, 1])
    assert repurchase_fit.top_k_recall(np.array([3.0, 2, 1, 1, 2, 3]), group, y, k=1) == 1.0
    assert repurchase_fit.top_k_recall(np.zeros(6), group, y, k=1) == 0.0
    assert repurchase_fit.top_k_recall(np.zeros(6), group, y, k=3) == 1.0


def _run(root: Path, tmp_path: Path) -> dict:
    toml = tmp_path / "s.toml"
    toml.write_text(f'name = "r"\nweek = 40\ndata = "{root}"\noutput = "{tmp_path / "run"}"\n'
                    "[rules]\nmax_offers_per_customer = 3\n")
    ran = CliRunner().invoke(main, ["run", str(toml), "--quiet"])
    assert ran.exit_code == 0, ran.output
    return json.loads((tmp_path / "run" / "manifest.json").read_text())["propensity"]


def test_model_checked_on_a_held_out_time_slice(demo_500: Path, tmp_path: Path):
    info = _run(demo_500, tmp_path)
    check = info["validation"]
    assert check["rows"].startswith("the rows of weeks")
    assert check["recall_fitted"] >= check["recall_buy_again"]
    assert info["fallback"] is None and "product_discount" in info["coefficients"]


def test_model_that_loses_falls_back_to_buy_again(demo_500: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    # a prior that ranks her habitual products last, held there: the check must catch it
    monkeypatch.setattr(repurchase_fit, "PRIOR", {"product_log": -20.0, "product_weeks": -20.0})
    monkeypatch.setattr(repurchase_fit, "PRIOR_STRENGTH", 1e9)
    info = _run(demo_500, tmp_path)
    check = info["validation"]
    assert check["recall_fitted"] < check["recall_buy_again"]
    assert "buy-again" in info["fallback"]
    assert tuple(info["coefficients"]) == tuple(sorted(BUY_AGAIN))
