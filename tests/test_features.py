"""Customer features: the compiled pass over the purchase lines against a plain polars group-by
of the raw tables (an independent path), with and without a customer mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.core.schemas import normalize_category
from optimizer.io.validate import load_inputs
from optimizer.scoring._feature_kernels import purchase_days
from optimizer.scoring.features import customer_features, purchase_lines

HALF_LIFE = 6.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> object:
    out: Path = tmp_path_factory.mktemp("features")
    write_demo_data(out, 400, 30, seed=11)
    return load_inputs(out)


def _reference(inputs, week: int, customers: np.ndarray | None) -> dict[str, object]:
    """Every feature by polars group-bys over the transactions joined to products."""
    sensitive = [c.upper() for c in SENSITIVE_CATEGORIES]
    tx = (inputs.transactions.join(inputs.products.select(
              "p", "category", normalize_category(pl.col("brand")).alias("brand")), on="p")
          .filter(pl.col("week") < week)
          .with_columns(decayed=0.5 ** ((week - pl.col("week")) / HALF_LIFE)
                        * pl.col("sales_value"),
                        plain=~pl.col("category").str.to_uppercase().is_in(sensitive),
                        day=pl.col("date").cast(pl.Int64) if "date" in inputs.transactions.columns
                        else pl.col("week") * 7))
    if customers is not None:
        tx = tx.filter(pl.col("c").is_in(np.flatnonzero(customers).tolist()))
    plain = tx.filter("plain")
    per_customer = plain.group_by("c").agg(
        denominator=pl.col("decayed").sum(), spend=pl.col("sales_value").sum(),
        discount_spend=pl.col("decayed").filter(pl.col("discount").fill_null(0) > 0).sum())
    days = plain.group_by("c", "day").agg(pl.col("week").max())
    behaviour = days.group_by("c").agg(
        visits=(0.5 ** ((week - pl.col("week")) / HALF_LIFE)).sum(),
        last_week=pl.col("week").max(), first_week=pl.col("week").min(),
        first_day=pl.col("day").min(), last_day=pl.col("day").max(), n_days=pl.len())

    def shares(frame: pl.DataFrame, column: str) -> pl.DataFrame:
        summed = frame.group_by("c", column).agg(pl.col("decayed").sum())
        return (summed.join(per_customer.select("c", "denominator"), on="c")
                .with_columns(share=pl.min_horizontal(pl.col("decayed") / pl.col("denominator"),
                                                      1.0))
                .filter(pl.col("share") != 0))
    return {"per_customer": per_customer, "behaviour": behaviour,
            "weeks_observed": week - tx.get_column("week").min() if tx.height else 0,
            "category": shares(tx, "category"), "product": shares(tx, "p"),
            "brand": shares(plain.filter(pl.col("brand").is_not_null()), "brand")}


def _dense(frame: pl.DataFrame, column: str, index: dict, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    cols = [index[v] for v in frame.get_column(column).to_list()]
    out[frame.get_column("c").to_numpy(), cols] = frame.get_column("share").to_numpy()
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_compiled_features_match_a_polars_group_by(inputs, masked: bool):
    week = 36 if masked else 40
    customers = (np.random.default_rng(2).random(inputs.n_customers) < 0.4) if masked else None
    lines = purchase_lines(inputs, SENSITIVE_CATEGORIES, 40)
    got = customer_features(inputs, week, HALF_LIFE, SENSITIVE_CATEGORIES, lines, customers)
    ref = _reference(inputs, week, customers)
    n = inputs.n_customers
    assert got.category_share.has_sorted_indices and got.product_share.has_sorted_indices
    for name, column, index in (
            ("category", "category", {k: i for i, k in enumerate(got.categories)}),
            ("brand", "brand", {b: i for i, b in enumerate(got.brands)}),
            ("product", "p", {p: p for p in range(inputs.products.height)})):
        matrix = getattr(got, f"{name}_share")
        expected = _dense(ref[name], column, index, matrix.shape)
        assert matrix.nnz == ref[name].height  # no stored zeros, no missing entries
        np.testing.assert_allclose(matrix.toarray(), expected, rtol=1e-12, atol=1e-15)
    per = ref["per_customer"]
    c = per.get_column("c").to_numpy()
    spend = np.zeros(n)
    spend[c] = per.get_column("spend").to_numpy()
    np.testing.assert_allclose(got.spend, spend, rtol=1e-12)
    share = np.zeros(n)
    share[c] = (per.get_column("discount_spend") / per.get_column("denominator")).to_numpy()
    np.testing.assert_allclose(got.discount_share, share, rtol=1e-12, atol=1e-15)
    b = ref["behaviour"]
    c = b.get_column("c").to_numpy()
    last = np.full(n, -1)
    last[c] = b.get_column("last_week").to_numpy()
    np.testing.assert_array_equal(got.last_week, last)
    for name, values in (
            ("visits", b.get_column("visits")),
            ("recency", 0.5 ** ((week - b.get_column("last_week")) / HALF_LIFE)),
            ("tenure_weeks", week - b.get_column("first_week")),
            ("cadence_weeks", (b.get_column("last_day") - b.get_column("first_day")) / 7
             / (b.get_column("n_days") - 1).clip(1))):
        expected = np.zeros(n)
        expected[c] = values.to_numpy()
        np.testing.assert_allclose(getattr(got, name), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=name)
    assert got.weeks_observed == ref["weeks_observed"]
    if masked:  # customers outside the mask have no features at all
        assert got.product_share[~customers].nnz == 0
        assert (got.last_week[~customers] == -1).all()


def test_purchase_days_sum_like_numpy_reduceat_bit_for_bit():
    """Day totals and customer totals equal np.add.reduceat's over the kept lines exactly (the
    lifetime value fits turn a last-bit change into a different plan)."""
    rng = np.random.default_rng(4)
    n_customers = 30
    # runs of every length up to past numpy's 128-element pairwise block, some on one day
    c = np.sort(rng.integers(0, n_customers, 12000)).astype(np.int32)
    t = np.zeros(c.size, dtype=np.int32)
    for cust in np.unique(c):
        rows = np.flatnonzero(c == cust)
        t[rows] = np.sort(rng.integers(0, rng.choice([1, 3, 300]), rows.size))
    sales = rng.lognormal(1, 1.5, c.size)
    keep = rng.random(c.size) < 0.9
    n_days, first, last, total, first_value = purchase_days(c, t, sales, keep, n_customers)
    kc, kt, ks = c[keep].astype(np.int64), t[keep].astype(np.int64), sales[keep]
    day_starts = np.flatnonzero(np.r_[True, (kc[1:] != kc[:-1]) | (kt[1:] != kt[:-1])])
    day_value = np.add.reduceat(ks, day_starts)
    dc = kc[day_starts]
    starts = np.flatnonzero(np.r_[True, dc[1:] != dc[:-1]])
    who = dc[starts]
    assert (np.diff(np.r_[starts, dc.size]) > 128).any()  # the recursive branch is exercised
    np.testing.assert_array_equal(n_days[who], np.diff(np.r_[starts, dc.size]))
    np.testing.assert_array_equal(total[who], np.add.reduceat(day_value, starts))
    np.testing.assert_array_equal(first_value[who], day_value[starts])
    np.testing.assert_array_equal(first[who], kt[day_starts][starts])
    assert (n_days[np.setdiff1d(np.arange(n_customers), who)] == 0).all()


def test_the_pass_refuses_lines_out_of_customer_and_day_order(inputs):
    """Visits are counted as changes of day within a customer's run: unsorted lines would be
    counted wrong, so they are refused rather than summed."""
    from optimizer.scoring._feature_kernels import customer_sums
    lines = purchase_lines(inputs, SENSITIVE_CATEGORIES, 40)
    swap = np.flatnonzero((lines.c[1:] == lines.c[:-1]) & (lines.day[1:] > lines.day[:-1]))[0]
    day = lines.day.copy()
    day[[swap, swap + 1]] = day[[swap + 1, swap]]  # one customer's two days out of order
    with pytest.raises(ValueError, match="sorted by customer and day"):
        customer_sums(lines.c, lines.k, lines.brand, lines.p, lines.sensitive, lines.week, day,
                      lines.sales, lines.discounted, lines.week < 40, inputs.n_customers,
                      (len(lines.categories), len(lines.brands), inputs.products.height), 40,
                      HALF_LIFE)


@pytest.mark.parametrize("threads", [2, 3, 16])
def test_features_are_the_same_for_any_number_of_threads(inputs, threads):
    # ranges of whole customers on threads, their rows closed up: every array the same bits;
    # lines of zero sales give entries that sum to zero and are dropped (rows shorter than their
    # upper bounds: gaps the close-up must remove), a mask leaves customers without kept lines
    from optimizer.scoring._feature_kernels import customer_sums
    lines = purchase_lines(inputs, SENSITIVE_CATEGORIES, 40)
    rng = np.random.default_rng(threads)
    sales = np.where(rng.random(lines.c.size) < 0.3, 0.0, lines.sales)
    keep = (lines.week < 40) & (rng.random(inputs.n_customers) < 0.8)[lines.c]
    one, many = (customer_sums(lines.c, lines.k, lines.brand, lines.p, lines.sensitive,
                               lines.week, lines.day, sales, lines.discounted, keep,
                               inputs.n_customers, (len(lines.categories), len(lines.brands),
                                                    inputs.products.height), 40, HALF_LIFE, t)
                 for t in (1, threads))
    for name in ("category_share", "brand_share", "product_share"):
        a, b = getattr(one, name), getattr(many, name)
        assert all(np.array_equal(getattr(a, k), getattr(b, k))
                   for k in ("indptr", "indices", "data")), name
    for name in ("denominator", "discount_spend", "spend"):
        assert np.array_equal(getattr(one, name), getattr(many, name)), name
    assert one.behaviour.keys() == many.behaviour.keys()
    assert all(np.array_equal(one.behaviour[k], many.behaviour[k]) for k in one.behaviour)
    assert one.first_week == many.first_week
