"""Master-index lookup of integer IDs: the direct table (dense or spread IDs) and the hash join
(IDs spread too widely for a table) give the same indices, unknown IDs as nulls."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from optimizer.io.validate import _DENSE_SPAN, _attach


@pytest.mark.parametrize("chunks", [1, 3])  # a table read in row groups arrives in chunks
@pytest.mark.parametrize("spacing", [1, 37, _DENSE_SPAN])  # dense, spread, too wide for a table
def test_lookup_paths_agree_with_a_join(spacing: int, chunks: int):
    rng = np.random.default_rng(spacing)
    ids = 1000 + spacing * rng.permutation(300).astype(np.int64)
    master = pl.DataFrame({"product_id": ids}).with_row_index("p").with_columns(
        pl.col("p").cast(pl.Int32))
    wanted = np.concatenate([rng.choice(ids, 5000), [ids.max() + 1, -5, ids.min() + 1]])
    frame = pl.concat([pl.DataFrame({"product_id": part})
                       for part in np.array_split(wanted, chunks)], rechunk=False)
    assert frame.n_chunks() == chunks
    got = _attach(frame, "product_id", master).get_column("p").to_list()
    position = {int(v): i for i, v in enumerate(ids)}
    assert got == [position.get(int(v)) for v in wanted]
