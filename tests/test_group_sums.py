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
