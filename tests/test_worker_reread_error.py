"""A Dask worker's ``InputError`` raised mid-solve (the plan's chosen pairs reading their
``p_redeem`` again from a ``scores`` table changed during the run) stops the run as the local
run's read again does: exit 2 with the table's error, not a cluster error (exit 3); a planned
pair whose ``p_redeem`` read again gives another cost than the worker's build is refused too,
as locally (not written as read again)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from tests.test_reproducible import RULES
from tests.tiny_world import write_scenario

pytest.importorskip("distributed", reason="the dask extra is not installed")


@pytest.mark.cluster
@pytest.mark.parametrize("change", ["gone", "value"])
def test_a_table_changed_before_the_workers_read_again_is_bad_input(tmp_path, monkeypatch,
                                                                     change):
    from optimizer.solve.backends.dask_shards import DaskShards

    data = tmp_path / "data"
    write_demo_data(data, customers=300, offers=20, seed=1, scores_per_customer=8)
    real = DaskShards.map

    def changing(self: Any, method: str, args: Any) -> list:
        if method == "plan_best_pairs":  # the table is rewritten before the workers read it
            table = pl.read_parquet(data / "scores.parquet")
            table = (table.filter(pl.int_range(pl.len()) % 2 == 0) if change == "gone"
                     else table.with_columns(pl.col("p_redeem") * 0.5))
            table.write_parquet(data / "scores.parquet")
        return real(self, method, args)
    monkeypatch.setattr(DaskShards, "map", changing)
    path = write_scenario(tmp_path / "s.toml", data=str(data), output="run", rules=RULES,
                          solver={"seed": 3, "max_iterations": 12, "chunk_size": 70,
                                  "shard_customers": 100, "backend": "dask", "workers": 2,
                                  "polish_pairs": 1})
    done = CliRunner().invoke(main, ["run", str(path), "--json"])
    said = " ".join(done.output.split())
    assert done.exit_code == 2, done.output
    assert "'scores', column 'p_redeem'" in said and "the table changed during the run" in said
    assert not Path(tmp_path / "run").exists()


@pytest.mark.parametrize("error", ["input", "other"])
def test_bad_rows_found_while_a_lost_shard_is_rebuilt_stay_bad_input(error):
    """A shard rebuilt after its worker was lost reads its rows again: rows that now break the
    contract stop the run as bad input (exit 2, the table's error), as in the first build; any
    other failure of the rebuild is the cluster's (exit 3)."""
    from optimizer.core.errors import ClusterError, InputError
    from optimizer.solve.backends.dask_shards import DaskShards

    shards = object.__new__(DaskShards)  # only what the rebuild reads
    shards.lost = {"tcp://gone"}
    raised = (InputError("scores", "p_redeem", "out of [0, 1]") if error == "input"
              else RuntimeError("no worker left"))

    def place(ks: list[int]) -> None:
        raise raised

    shards._place = place  # type: ignore[method-assign]
    with pytest.raises(InputError if error == "input" else ClusterError):
        shards._rebuild([1], [])
