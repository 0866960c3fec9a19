"""A scores table read whole and read once is let go chunk by chunk (issue 23, item 11): the
chunks are the same as read from the table kept whole, each chunk holds its own copy of its rows
(a view would keep the table alive), and the table is left without columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from optimizer.apps.synthetic import write_demo_data
from optimizer.io.scores_stream import scores_chunks
from optimizer.io.validate import load_inputs

BOUNDS = [(0, 350), (350, 700), (700, 1000), (1000, 1200)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    sorted_folder = tmp_path_factory.mktemp("consume") / "sorted"
    write_demo_data(sorted_folder, customers=1200, offers=25, seed=3, scores_per_customer=10)
    shuffled = sorted_folder.with_name("shuffled")
    shuffled.mkdir()
    for path in sorted_folder.iterdir():
        (shuffled / path.name).write_bytes(path.read_bytes())
    scores = pl.read_parquet(sorted_folder / "scores.parquet")
    order = np.random.default_rng(0).permutation(scores.height)
    # written in small row groups, so the columns come in several chunks
    scores[order].write_parquet(shuffled / "scores.parquet", row_group_size=1000)
    return {"sorted": sorted_folder, "shuffled": shuffled}


@pytest.mark.parametrize("layout", ["sorted", "shuffled"])
def test_consumed_chunks_equal_the_kept_tables_and_own_their_rows(folders, layout):
    kept = load_inputs(folders[layout])
    consumed = load_inputs(folders[layout])
    assert consumed.scores_sorted == (layout == "sorted")
    rows = consumed.scores.height
    expected = list(scores_chunks(kept, BOUNDS))
    got = list(scores_chunks(consumed, BOUNDS, consume=True))
    assert sum(chunk.c.size for chunk in got) == rows > 10_000
    for a, b in zip(expected, got, strict=True):
        assert (a.start, a.stop) == (b.start, b.stop)
        for name in ("c", "o", "p_redeem", "value"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y)
            assert y.base is None  # its own copy: nothing else keeps the table's buffers
    # the table handed over its columns; the kept one still has them
    assert consumed.scores.width == 0
    assert kept.scores.height == rows


def test_without_consume_the_table_stays(folders):
    inputs = load_inputs(folders["sorted"])
    rows = inputs.scores.height
    list(scores_chunks(inputs, BOUNDS))
    assert inputs.scores.height == rows and inputs.scores.width == 4
