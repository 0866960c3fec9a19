"""optimizer.core.numerics.group_sums: per-group sums that are the same bits on every call
(polars' group_by adds floats in an order that follows its threads: pola-rs/polars#25163)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from optimizer.core.numerics import group_sums


def _frame(n: int = 20_000, groups: int = 200) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    return pl.DataFrame({"k": rng.integers(0, groups, n), "w": rng.integers(0, 3, n),
                         "v": rng.random(n) * 3.7})


def test_the_same_bits_on_every_call_and_each_groups_exact_sum():
    frame = _frame()
    first = group_sums(frame, ["k", "w"], {"v": pl.col("v")})
    for _ in range(20):
        again = group_sums(frame, ["k", "w"], {"v": pl.col("v")})
        assert again.get_column("v").to_numpy().tobytes() == first.get_column(
            "v").to_numpy().tobytes()
    # each group's sum, to rounding (math.fsum is exact), keys sorted
    key = frame.get_column("k").to_numpy() * 3 + frame.get_column("w").to_numpy()
    v = frame.get_column("v").to_numpy()
    expected = {int(g): math.fsum(v[key == g]) for g in np.unique(key)}
    got = first.select(pl.col("k") * 3 + pl.col("w"), "v").rows()
    assert [k for k, _ in got] == sorted(expected)
    assert all(abs(s - expected[k]) <= 1e-12 * expected[k] for k, s in got)
    polars = frame.group_by("k", "w").agg(pl.col("v").sum()).sort("k", "w")
    assert np.allclose(polars.get_column("v").to_numpy(), first.get_column("v").to_numpy())


def test_nulls_count_as_nothing_and_null_keys_come_last():
    frame = pl.DataFrame({"k": [2, 1, 2, None, 1], "v": [1.0, None, 3.0, 4.0, 5.0]})
    out = group_sums(frame, ["k"], {"v": pl.col("v"),
                                    "nulls": pl.col("v").is_null().cast(pl.UInt32),
                                    "rows": pl.lit(1, dtype=pl.UInt32)})
    assert out.rows() == [(1, 5.0, 1, 2), (2, 4.0, 0, 2), (None, 4.0, 0, 1)]
    assert out.schema["nulls"] == pl.UInt32


def test_an_empty_frame_gives_no_groups():
    out = group_sums(_frame().head(0), ["k"], {"v": pl.col("v")})
    assert out.height == 0 and out.columns == ["k", "v"]


def test_check_sums_its_figures_per_group_in_one_order():
    """offeropt check's per-group figures (here the campaign figures' cost and redemptions per
    funder, optimizer/check/campaign_figures.py) are group_sums' sums: the same bits on every
    call (polars' group_by sum was not, and its bits differ from the fixed order's)."""
    from optimizer.check.campaign_figures import _sums
    rng = np.random.default_rng(3)
    n = 50_000
    known = pl.DataFrame({"o": rng.integers(0, 40, n).astype(np.int32),
                          "cost": rng.random(n) * 3.7, "cost_rounding": rng.random(n) * 1e-9,
                          "p_redeem": rng.random(n), "p_rounding": rng.random(n) * 1e-9})
    members = pl.DataFrame({"funded_by": [f"f{o % 7}" for o in range(40)],
                            "o": np.arange(40, dtype=np.int32)})
    columns = ["cost", "cost_slack", "cost_abs", "redemptions", "redemptions_slack"]
    reference = group_sums(known.join(members, on="o", how="inner", maintain_order="left_right"),
                           ["funded_by"], {"cost": pl.col("cost"),
                                           "cost_slack": pl.col("cost_rounding"),
                                           "cost_abs": pl.col("cost").abs(),
                                           "redemptions": pl.col("p_redeem"),
                                           "redemptions_slack": pl.col("p_rounding")})
    for _ in range(10):
        got = _sums(known, members, "funded_by").sort("funded_by")
        assert got.get_column("funded_by").to_list() == reference.get_column(
            "funded_by").to_list()
        for name in columns:
            assert got.get_column(name).to_numpy().tobytes() == reference.get_column(
                name).to_numpy().tobytes(), name
