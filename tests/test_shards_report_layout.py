"""The driver that reads no pair of the ``scores`` table (issue 21): where the Dask workers hold
every pair and the table has more rows than the polish's reach, each worker checks, audits and
builds its own rows and reports what it built; the driver makes the blocks' layout of the
reports (:mod:`optimizer.solve.lagrangian.built_shard`) instead of streaming the table through
the build. The run folder and the manifest (candidate pairs, the rules' audit) are the local
run's; bad rows stop the run with the local run's error, nothing written."""
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
from optimizer.model.layout import BlockLayout, pending
from optimizer.solve.lagrangian.built_shard import BuildReport, merged_layout, piece_widths
from optimizer.solve.lagrangian.shards import ShardSpec, block_pieces
from tests.test_driver_without_pairs import _run as run_scores
from tests.test_reproducible import FILES, RULES, _diff, _without_timings
from tests.tiny_world import write_scenario

CHUNK, SHARD = 70, 100  # 300 customers: chunks of 70 that the shards of 100 cut mid-chunk


def test_the_shards_reports_make_the_layout_of_the_whole_blocks():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, 300).astype(np.int32)
    bounds = [(s, min(s + CHUNK, 300)) for s in range(0, 300, CHUNK)]
    whole = BlockLayout(bounds, [int(counts[a:b].max()) for a, b in bounds],
                        [counts[a:b] for a, b in bounds], 4)
    specs, reports = [], []
    for lo in range(0, 300, SHARD):
        pieces = block_pieces(whole.rows, lo, lo + SHARD)
        specs.append(ShardSpec(lo, lo + SHARD, np.zeros(1), pieces))
        rows = [whole.row_pairs[b][f:e] for b, f, e in pieces]
        reports.append(BuildReport([int(r.max()) for r in rows], rows, {"x": 1}))
    got = merged_layout(pending(bounds, np.array([1, 4, 2])), specs, reports)
    assert got.complete and not pending(bounds, np.zeros(0)).complete
    assert (got.bounds, got.widths, got.max_cap) == (whole.bounds, whole.widths, 4)
    assert all((a == b).all() for a, b in zip(got.row_pairs, whole.row_pairs))
    assert piece_widths(got, specs[1]) == [whole.widths[1], whole.widths[2]]


distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    """300 customers whose scores table is sorted by customer (it can be streamed); every
    chunk's first customer keeps all her 8 scored offers, the others 3, so a shard's piece of a
    chunk is built narrower than the chunk's block."""
    root = tmp_path_factory.mktemp("report") / "scores"
    write_demo_data(root, customers=300, offers=20, seed=1, scores_per_customer=8)
    order = pl.read_parquet(root / "customers.parquet").select("customer_id").with_row_index(
        "pos")
    table = (pl.read_parquet(root / "scores.parquet").join(order, on="customer_id")
             .filter((pl.col("offer_id").rank("ordinal").over("customer_id") <= 3)
                     | (pl.col("pos") % CHUNK == 0)).sort("pos", "offer_id").drop("pos"))
    table.write_parquet(root / "scores.parquet")
    return root


def _run(root: Path, data: Path, **solver: Any) -> tuple[int, str, dict[str, bytes], dict]:
    """:func:`tests.test_driver_without_pairs._run` with chunks the shards cut mid-chunk and
    the polish's reach at 200 pairs."""
    return run_scores(root, data, **{"chunk_size": CHUNK, "polish_pairs": 1, **solver})


def _no_driver_pass(monkeypatch) -> None:
    """The driver's build over the table's rows raises (the workers' own processes keep it)."""
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the driver read the scores table's rows through the build")

    monkeypatch.setattr("optimizer.model.build.scores_chunks", refused)


def _comparable(manifest: dict) -> dict:
    """The manifest bar timings, the scenario, the backend's record and the memory estimate
    (the driver's: it builds no block)."""
    rest = {k: v for k, v in manifest.items() if k not in ("scenario", "memory")}
    rest["solver"] = {k: v for k, v in rest["solver"].items() if k != "backend"}
    return _without_timings(rest)


@pytest.mark.cluster
@pytest.mark.parametrize("stream", [False, True])
def test_workers_report_the_layout_and_the_run_is_the_local_one(scores, tmp_path, monkeypatch,
                                                                stream):
    code, out, local, manifest = _run(tmp_path / "local", scores, stream_scores=stream)
    assert code == 0, out
    _no_driver_pass(monkeypatch)
    code, out, files, other = _run(tmp_path / "two", scores, stream_scores=stream,
                                   backend="dask", workers=2)
    assert code == 0, out
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    assert other["candidate_pairs"] == manifest["candidate_pairs"]
    assert other["eligibility_audit"] == manifest["eligibility_audit"]
    assert sum(manifest["eligibility_audit"]["pairs"].values()) > 0
    assert _comparable(other) == _comparable(manifest)
    backend = other["solver"]["backend"]
    assert backend["driver_holds_pairs"] is False and backend["shards"] == 3
    assert backend["driver_scores_pass"] == ("customer_ids" if stream else "none")
    # at most the polish's reach of slots (the blocks the driver would build after all)
    assert other["memory"]["candidate_slots"] == 200


@pytest.fixture(scope="module")
def thousand(tmp_path_factory) -> Path:
    """1,000 customers, 8 scored offers each: 8,000 rows, of which the rules keep 5,733 pairs."""
    root = tmp_path_factory.mktemp("thousand") / "scores"
    write_demo_data(root, customers=1000, offers=20, seed=1, scores_per_customer=8)
    return root


@pytest.mark.cluster
@pytest.mark.parametrize("data, polish, stream", [("scores", 4, False), ("scores", 4, True),
                                                  ("thousand", 30, False)])
def test_past_the_reach_in_rows_but_within_it_in_pairs_the_polish_runs_as_locally(
        request, tmp_path, monkeypatch, data, polish, stream):
    """A table of more rows than the polish's reach (``polish`` x 200 pairs) whose rules keep
    no more pairs, its gap not certified in 2 passes: the local run polishes (on ``thousand``
    the polish changes the plan). The Dask run's shards check, audit and build the rows and
    report the layout (the driver's build keeps no block), then the driver builds the blocks
    after all: the same polish, the local run's folder and manifest (the audit counted once),
    byte for byte."""
    scores = request.getfixturevalue(data)
    knobs = {"stream_scores": stream, "polish_pairs": polish, "max_iterations": 2,
             "gap_tolerance": 1e-12}
    code, out, local, manifest = _run(tmp_path / "local", scores, **knobs)
    assert code == 0, out
    rows, reach = pl.read_parquet(scores / "scores.parquet").height, 200 * polish
    assert manifest["candidate_pairs"] <= reach < rows, (manifest["candidate_pairs"], rows)
    polished = manifest["solver"]["polish"]
    assert polished["status"] != "skipped" and polished["pairs"] > 0, polished
    assert polished["accepted"] is (data == "thousand"), polished

    def refused(*args: Any) -> Any:
        raise AssertionError("the driver's build kept the blocks within the reach")

    monkeypatch.setattr("optimizer.model.build.held_blocks", refused)  # the layout first
    code, out, files, other = _run(tmp_path / "two", scores, backend="dask", workers=2,
                                   **knobs)
    assert code == 0, out
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    assert _comparable(other) == _comparable(manifest)  # the polish's record, the audit too
    backend = other["solver"]["backend"]
    assert backend["driver_scores_pass"] == "blocks_after_layout", backend
    assert backend["driver_holds_pairs"] is True and backend["shards_built_by"] == "workers"
    assert other["memory"]["candidate_slots"] == reach


def _broken(scores: Path, target: Path, case: str) -> Path:
    """``scores`` with bad rows (``case``) in the 2nd and 3rd shards, the table kept in the
    customers' order."""
    target.mkdir()
    for f in scores.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    table = pl.read_parquet(target / "scores.parquet").with_row_index("row")
    ids = pl.read_parquet(target / "customers.parquet").get_column("customer_id")
    second = table.filter(pl.col("customer_id") == ids[150]).get_column("row")[0]
    third = table.filter(pl.col("customer_id") == ids[250]).get_column("row")[0]
    row = pl.col("row")
    if case == "values":  # shard 1 a bad value, shard 2 a bad p_redeem (checked first)
        table = table.with_columns(
            value=pl.when(row == second).then(-1.0).otherwise(pl.col("value")),
            p_redeem=pl.when(row == third).then(2.0).otherwise(pl.col("p_redeem")))
    elif case == "unknown customer":  # a row no worker's customers hold
        extra = table.filter(row == second).with_columns(
            customer_id=pl.lit(10**9, dtype=table.schema["customer_id"]))
        table = pl.concat([table.filter(row <= second), extra, table.filter(row > second)])
    else:  # a pair listed twice
        table = pl.concat([table.filter(row <= second), table.filter(row == second),
                           table.filter(row > second)])
    table.drop("row").write_parquet(target / "scores.parquet")
    return target


@pytest.mark.cluster
@pytest.mark.parametrize("case", ["values", "unknown customer", "duplicate"])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_rows_stop_the_run_with_the_local_runs_error(scores, tmp_path, monkeypatch, case,
                                                         stream):
    bad = _broken(scores, tmp_path / "bad", case)
    code, local, _, _ = _run(tmp_path / "local", bad, stream_scores=stream)
    assert code == 2 and "table 'scores'" in local, local
    _no_driver_pass(monkeypatch)
    code, out, _, _ = _run(tmp_path / "two", bad, stream_scores=stream, backend="dask",
                           workers=2)
    assert code == 2, out
    assert out == local
    assert not (tmp_path / "two" / "run").exists()


@pytest.mark.cluster
@pytest.mark.parametrize("call, at", [("layout_report", 1), ("widen", 1), ("collect", 3)])
def test_a_worker_lost_while_the_shards_report_or_mid_solve(scores, tmp_path, call, at):
    """The worker holding shards 0 and 2 killed before the shards report what they built, before
    they are widened, or mid-solve: the lost shards are built again (with the widths once they
    are known) and the run folder is the local run's."""
    from tests.test_dask_backend import _cluster, _killed_run

    code, out, local, manifest = _run(tmp_path / "local", scores)
    assert code == 0, out
    with _cluster(2) as cluster:
        done, err, run = _killed_run(scores, tmp_path / "killed", cluster, call, at, 30,
                                     chunk_size=CHUNK, repair="shards", polish_pairs=1)
    assert done.returncode == 0, err
    for f in FILES:
        files = (run / f).read_bytes()
        assert files == local[f], f"{f} differs: " + _diff(local[f], files, f)
    other = json.loads((run / "manifest.json").read_text())
    assert _comparable(other) == _comparable(manifest)
    backend = other["solver"]["backend"]
    assert backend["rebuilt_shards"] >= 2 and backend["driver_scores_pass"] == "none", backend


@pytest.mark.cluster
@pytest.mark.parametrize("where", ["url", "padded"])
def test_a_table_at_a_url_or_with_padded_ids_past_the_reach(scores, tmp_path, monkeypatch,
                                                             where):
    """The table at ``scores_url`` (read whole by the driver's load, the workers reading it
    from the URL), and a streamed table whose text customer IDs are stored with spaces (the
    driver's read of the ``customer_id`` column finds them, and the workers trim them too): the
    local run's bytes, the driver's build never run."""
    from tests.test_dask_backend import _padded_text_ids

    data, extra = scores, {}
    if where == "padded":
        data = tmp_path / "padded"
        _padded_text_ids(scores, data)
        extra = {"stream_scores": True}
    code, out, local, _ = _run(tmp_path / "local", data, **extra)
    assert code == 0, out
    _no_driver_pass(monkeypatch)
    if where == "url":
        moved = tmp_path / "moved"
        moved.mkdir()
        for f in scores.iterdir():
            (moved / f.name).write_bytes(f.read_bytes())
        (tmp_path / "tables").mkdir()
        (moved / "scores.parquet").rename(tmp_path / "tables" / "scores.parquet")
        path = write_scenario(tmp_path / "two" / "scenario.toml", data=str(moved), output="run",
                              rules=RULES, solver={
                                  "seed": 3, "shard_customers": SHARD, "chunk_size": CHUNK,
                                  "max_iterations": 12, "repair": "shards", "polish_pairs": 1,
                                  "backend": "dask", "workers": 2})
        path.write_text(f'scores_url = "{(tmp_path / "tables" / "scores.parquet").as_uri()}"\n'
                        + path.read_text())
        done = CliRunner().invoke(main, ["run", str(path), "--json"])
        assert done.exit_code == 0, done.output
        run = tmp_path / "two" / "run"
        files = {f: (run / f).read_bytes() for f in FILES}
        manifest = json.loads((run / "manifest.json").read_text())
    else:
        code, out, files, manifest = _run(tmp_path / "two", data, backend="dask", workers=2,
                                          **extra)
        assert code == 0, out
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    backend = manifest["solver"]["backend"]
    assert backend["driver_scores_pass"] == ("none" if where == "url" else "customer_ids")


@pytest.mark.cluster
def test_workers_reading_another_table_stop_the_run(scores, tmp_path, monkeypatch):
    """The table changed between the driver's load and the workers' read (5 rows fewer): the
    rows the shards report do not add up to the table's, so the run stops (exit 3, nothing
    written), as the shards' pair counts stopped it when the driver built the blocks."""
    import optimizer.model.build as build

    data = tmp_path / "data"
    data.mkdir()
    for f in scores.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    real = build.worker_inputs

    def swapped(*args: Any) -> Any:
        table = pl.read_parquet(data / "scores.parquet")
        table.head(table.height - 5).write_parquet(data / "scores.parquet")
        return real(*args)

    monkeypatch.setattr(build, "worker_inputs", swapped)
    code, out, _, _ = _run(tmp_path / "two", data, backend="dask", workers=2)
    assert code == 3, out
    assert "rows of the scores table where the driver counted" in " ".join(out.split())
    assert not (tmp_path / "two" / "run").exists()
