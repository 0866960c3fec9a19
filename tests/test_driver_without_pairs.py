"""The driver that holds no candidate pair (issue 21): on the ``scores`` path with
``solver.backend = "dask"`` and ``solver.repair = "shards"`` the workers build, repair and keep
every pair; the driver keeps the blocks' layout only (:mod:`optimizer.model.layout`: from the
shards' reports past the polish's reach, :mod:`tests.test_shards_report_layout`), and the plan comes back as its chosen pairs. The run folder is
the local run's, byte for byte."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.model.layout import held_blocks
from optimizer.model.problem import block_from_pairs
from optimizer.solve.lagrangian.shards import ShardSpec, piece_pairs, shard_specs
from tests.test_reproducible import FILES, RULES, _diff, _without_timings
from tests.tiny_world import write_scenario


def _blocks(seed: int, sizes: list[int], offers: int = 9) -> list:
    """Random blocks of consecutive customers, some rows empty."""
    rng = np.random.default_rng(seed)
    out, first = [], 0
    for size in sizes:
        listed = rng.random((size, offers)) < 0.4
        row, off = np.nonzero(listed)
        value = rng.random(row.size) + 0.1
        out.append(block_from_pairs(np.arange(first, first + size, dtype=np.int64), row, off,
                                    rng.random(row.size), value, np.ones(offers),
                                    rng.integers(1, 5, size)))
        first += size
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_layout_has_the_blocks_shapes_and_pairs(seed):
    from optimizer.model.problem import AssignmentProblem, OfferData

    blocks = _blocks(seed, [7, 5, 11, 3])
    total = sum(b.n_pairs for b in blocks)
    kept, layout = held_blocks(iter(blocks), total)  # within the limit: every block kept
    assert layout is None and kept == blocks
    kept, layout = held_blocks(iter(blocks), total - 1)
    assert kept == [] and layout is not None
    assert layout.n_pairs == total and layout.rows == [7, 5, 11, 3]
    assert layout.widths == [b.offer.shape[1] for b in blocks]
    assert layout.max_cap == max(int(b.cap.max()) for b in blocks)
    offers = OfferData(np.ones(9), np.full(9, np.inf), np.full(9, np.inf),
                       np.zeros(9, dtype=np.int64), np.zeros((9, 1), dtype=np.int64), ["x"])
    whole = AssignmentProblem(offers=offers, blocks=blocks, max_per_category=None,
                              n_customers=26)
    bare = AssignmentProblem(offers=offers, blocks=[], max_per_category=None, n_customers=26,
                             layout=layout)
    assert (bare.n_pairs, bare.max_cap) == (whole.n_pairs, whole.max_cap)
    for shard in (4, 6, 26):  # shards cut blocks mid-block
        specs = shard_specs(whole, shard, 3)
        again = shard_specs(bare, shard, 3)
        assert [(s.lo, s.hi, s.pieces, s.cuts.tolist()) for s in specs] == [
            (s.lo, s.hi, s.pieces, s.cuts.tolist()) for s in again]
        assert [piece_pairs(whole, s) for s in specs] == [piece_pairs(bare, s) for s in again]
    assert piece_pairs(bare, ShardSpec(0, 26, np.zeros(1), [(2, 3, 9)])) == int(
        (blocks[2].offer[3:9] >= 0).sum())


distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
SHARD = 100  # 300 customers: three shards


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bare") / "scores"
    write_demo_data(root, customers=300, offers=20, seed=1, scores_per_customer=8)
    return root


def _run(root: Path, data: Path, **solver: Any) -> tuple[int, str, dict[str, bytes], dict]:
    path = write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={"seed": 3, "shard_customers": SHARD, "max_iterations": 12,
                                  "repair": "shards", **solver})
    done = CliRunner().invoke(main, ["run", str(path), "--json"])
    out = root / "run"
    if done.exit_code:
        return done.exit_code, done.output, {}, {}
    return (0, done.output, {f: (out / f).read_bytes() for f in FILES},
            json.loads((out / "manifest.json").read_text()))


def _comparable(manifest: dict) -> dict:
    # the memory estimate is the driver's, which builds no block past the polish's reach
    rest = {k: v for k, v in manifest.items() if k not in ("scenario", "memory")}
    rest["solver"] = {k: v for k, v in rest["solver"].items() if k != "backend"}
    return _without_timings(rest)


@pytest.mark.cluster
def test_a_driver_without_pairs_writes_the_local_run_folder(scores, tmp_path):
    # polish_pairs = 0: no polish, so the driver needs no pair (else it keeps them up to the
    # polish's reach: optimizer.solve.polish_reach)
    code, out, local, manifest = _run(tmp_path / "local", scores, polish_pairs=0)
    assert code == 0, out
    assert len(local["assignments.csv"].splitlines()) > 100
    # repair left unset: on Dask it is the shards by default (the local run asks for them)
    code, out, files, other = _run(tmp_path / "two", scores, polish_pairs=0, backend="dask",
                                   workers=2, repair=None)
    assert code == 0, out
    assert other["scenario"]["solver"]["repair"] == "shards"
    backend = other["solver"]["backend"]
    assert backend["driver_holds_pairs"] is False and backend["shards_built_by"] == "workers"
    assert backend["driver_peak_gb"] > 0 and len(backend["worker_peak_gb"]) == 2
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    assert _comparable(other) == _comparable(manifest)
    # with the polish in reach the driver keeps every pair, as before
    code, out, _, kept = _run(tmp_path / "polish", scores, backend="dask", workers=1)
    assert code == 0, out
    assert kept["solver"]["backend"]["driver_holds_pairs"] is True


@pytest.mark.cluster
def test_bad_scores_rows_stop_a_driver_without_pairs_before_any_output(scores, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in scores.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    table = pl.read_parquet(bad / "scores.parquet")
    table = table.with_columns(pl.when(pl.int_range(pl.len()) == 250).then(-1.0)
                               .otherwise(pl.col("p_redeem")).alias("p_redeem"))
    table.write_parquet(bad / "scores.parquet")
    code, out, _, _ = _run(tmp_path / "run", bad, polish_pairs=0, backend="dask", workers=1)
    assert code == 2, out
    assert "scores" in out and "p_redeem" in out
    assert not (tmp_path / "run" / "run").exists()
