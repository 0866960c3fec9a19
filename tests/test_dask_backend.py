"""The scale method on a Dask cluster (issue 21): the same run folder, byte for byte, whether the
passes run in this process or on the shards of 1 or 2 workers (affinity path with offer groups
and a funder budget; scores path; inputs as multi-file Parquet datasets); a worker killed
mid-solve or while the shards are first built has its shards rebuilt (the same bytes), or, with no
worker left or a shard lost twice, the run stops with exit code 3 and writes nothing.

These tests start real clusters (worker processes): marked ``cluster``; CI runs them (the
``dask`` extra is installed by .ci/run).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.solve.backends import dask_shards
from optimizer.solve.lagrangian.executor import ShardExecutor
from tests.test_reproducible import FILES, RULES, _diff, _without_timings
from tests.tiny_world import write_scenario

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
pytestmark = pytest.mark.cluster
SHARD = 100  # 300 customers: three shards, spread over the workers
KILLER = Path(__file__).resolve().parent / "worker_killer_cli.py"


def _cluster(workers: int) -> Any:
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=40)


@pytest.fixture(scope="module")
def one_worker():
    """A 1-worker cluster the runs reach through --scheduler."""
    with _cluster(1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A 300-customer affinity world with two offer groups and a funder budget, and a scores
    world of the same size."""
    root = tmp_path_factory.mktemp("dask")
    write_demo_data(root / "affinity", customers=300, offers=20, seed=1)
    write_demo_data(root / "scores", customers=300, offers=20, seed=1, scores_per_customer=8)
    offers = pl.read_parquet(root / "affinity" / "offers.parquet")
    ids = offers.get_column("offer_id").to_list()
    pl.DataFrame({"group_id": ["all"] * len(ids) + ["pair"] * 2, "offer_id": ids + ids[:2],
                  "max_per_customer": [2] * len(ids) + [1] * 2}).write_csv(
        root / "affinity" / "offer_groups.csv")
    funder = sorted(set(offers.get_column("funded_by").drop_nulls().to_list()))[0]
    pl.DataFrame({"funded_by": [funder], "budget": [20.0]}).write_csv(
        root / "affinity" / "funders.csv")
    return {"affinity": root / "affinity", "scores": root / "scores"}


def _run(root: Path, data: Path, *args: str, rules: dict | None = None, **solver: Any
         ) -> tuple[dict[str, bytes], dict]:
    path = write_scenario(root / "scenario.toml", data=str(data), output="run",
                          rules=RULES if rules is None else rules,
                          solver={"seed": 3, "shard_customers": SHARD, "max_iterations": 12,
                                  **solver})
    done = CliRunner().invoke(main, ["run", str(path), "--json", *args])
    assert done.exit_code == 0, done.output
    out = root / "run"
    return ({f: (out / f).read_bytes() for f in FILES},
            json.loads((out / "manifest.json").read_text()))


def _comparable(manifest: dict) -> dict:
    """The manifest bar timings, the scenario (whose solver knobs name the backend) and the
    backend's own record."""
    rest = {k: v for k, v in manifest.items() if k != "scenario"}
    rest["solver"] = {k: v for k, v in rest["solver"].items() if k != "backend"}
    return _without_timings(rest)


@pytest.mark.parametrize("path", ["affinity", "scores"])
def test_run_folder_byte_identical_local_one_and_two_workers(path, data, one_worker, tmp_path):
    # the scores path asks for the repair on the shards (optimizer/solve/lagrangian/
    # repair_shards.py) locally too; the affinity path keeps the default: the driver locally,
    # the shards on Dask, where its funder budget keeps the repair on the driver all the same
    knob = {"repair": "shards"} if path == "scores" else {}
    local, manifest = _run(tmp_path / "local", data[path], **knob)
    repair = ("driver (solver.repair = driver and funder budgets)" if path == "affinity"
              else "shards")
    assert manifest["solver"]["backend"] == {"name": "local", "workers": 1, "repair": repair}
    assert len(local["assignments.csv"].splitlines()) > 100
    if path == "affinity":  # the campaign rules are in this plan
        assert manifest["offer_groups"] and manifest["funders"], manifest.keys()
    runs = {"1 worker (--scheduler)": _run(tmp_path / "one", data[path], "--scheduler",
                                           one_worker.scheduler_address, **knob),
            "2 workers (LocalCluster)": _run(tmp_path / "two", data[path], backend="dask",
                                             workers=2, **knob)}
    for name, (files, other) in runs.items():
        for f in FILES:
            assert files[f] == local[f], f"{f} differs on {name}: " + _diff(local[f], files[f], f)
        assert _comparable(other) == _comparable(manifest), name
    one = runs["1 worker (--scheduler)"][1]["solver"]["backend"]
    two = runs["2 workers (LocalCluster)"][1]["solver"]["backend"]
    # the manifest records the repair the default resolved to, on the command line's backend too
    assert manifest["scenario"]["solver"]["repair"] == ("driver" if path == "affinity"
                                                        else "shards")
    for name, (_, other) in runs.items():
        assert other["scenario"]["solver"]["repair"] == "shards", name
    assert one["repair"] == two["repair"] == ("driver (funder budgets)" if path == "affinity"
                                              else "shards")
    assert (one["workers"], one["shards"], one["scheduler"]) == (
        1, 3, one_worker.scheduler_address)
    assert (two["workers"], two["shards"], two["scheduler"]) == (2, 3, "LocalCluster")
    assert 0 < two["bytes_per_pass"]["prices_mean"] <= two["bytes_per_pass"]["max"]
    assert len(two["worker_peak_gb"]) == 2
    # the scores path's shards are built by the workers from the table; the affinity path's
    # blocks are scored on the driver and sent
    built_by = "workers" if path == "scores" else "driver"
    assert one["shards_built_by"] == two["shards_built_by"] == built_by
    if path == "affinity":
        assert "affinity path" in two["shards_built_on_driver_because"]


def test_pinned_run_keeps_its_shards_on_the_driver_with_the_local_bytes(data, one_worker,
                                                                      tmp_path):
    # pins take their pairs out of the built blocks, which shards built from the scores table
    # would still hold: the driver builds and sends them, and says why
    rules = {**RULES, "pin": True, "cooldown_weeks": 0}
    local, manifest = _run(tmp_path / "local", data["scores"], rules=rules)
    assert manifest["stability"]["pins"]["kept"] > 0
    files, other = _run(tmp_path / "one", data["scores"], "--scheduler",
                        one_worker.scheduler_address, rules=rules)
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    backend = other["solver"]["backend"]
    assert backend["shards_built_by"] == "driver"
    assert "rules.pin" in backend["shards_built_on_driver_because"]


def test_pins_with_channels_on_the_cluster_keep_the_local_bytes(data, one_worker, tmp_path):
    # kept pins go out on channels (their use comes off the channels' capacities before the
    # passes) and the rest of the plan is solved on the cluster: the local run's bytes
    world = tmp_path / "world"
    shutil.copytree(data["scores"], world)
    ids = pl.read_parquet(world / "customers.parquet").get_column("customer_id").to_list()
    pl.DataFrame({"channel_id": ["email", "sms"], "capacity": [None, 40],
                  "cost_per_contact": [0.1, 0.05]}).write_csv(world / "channels.csv")
    consent = [(c, "email") for c in ids[::3]] + [(c, "sms") for c in ids[::2]]
    pl.DataFrame({"customer_id": [c for c, _ in consent],
                  "channel_id": [k for _, k in consent]}).write_csv(
        world / "customer_channels.csv")
    rules = {**RULES, "pin": True, "cooldown_weeks": 0, "contact_budget": 25.0}
    local, manifest = _run(tmp_path / "local", world, rules=rules)
    pins = manifest["stability"]["pins"]
    assert pins["kept"] > 0 and pins["released"].get("no_channel_consent", 0) > 0, pins
    files, _ = _run(tmp_path / "one", world, "--scheduler", one_worker.scheduler_address,
                    rules=rules)
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    done = CliRunner().invoke(main, ["check", str(tmp_path / "one" / "scenario.toml"),
                                     str(tmp_path / "one" / "run")])
    assert done.exit_code == 0, done.output


def _killed_run(data: Path, tmp_path: Path, cluster: Any, call: str, at: int | str, wait: float,
                timeout: float = 300, split: int | None = None, **solver: Any
                ) -> tuple[subprocess.CompletedProcess, str, Path]:
    """``offeropt run`` on ``cluster`` with the worker holding shard 0 killed before the
    ``at``-th call ``call`` (tests/worker_killer_cli.py); the lost shards wait ``wait`` s for
    a worker; ``split``: the crossing buckets narrowed past that many candidates; ``solver``:
    more solver knobs."""
    path = write_scenario(tmp_path / "s.toml", data=str(data), output="run", rules=RULES,
                          solver={"seed": 3, "shard_customers": SHARD, "max_iterations": 12,
                                  **solver})
    env = dict(os.environ, **({"KILLER_SPLIT_ABOVE": str(split)} if split else {}))
    done = subprocess.run([sys.executable, str(KILLER), call, str(at), str(wait), "run",
                           str(path), "--json", "--scheduler", cluster.scheduler_address],
                          capture_output=True, text=True, timeout=timeout, env=env)
    err = " ".join((done.stdout + done.stderr).split())  # the console wraps lines
    assert "killed worker" in err, err
    return done, err, tmp_path / "run"


def test_compact_margins_give_the_dense_local_bytes_on_two_workers(data, tmp_path,
                                                                    monkeypatch):
    """Without a category cap the shards keep each customer's two limits, not a margin a slot
    (:mod:`optimizer.solve.lagrangian.margins`): the run folder is the bytes of a local run
    forced to keep one margin a slot, locally and on two workers."""
    from optimizer.solve.lagrangian import margins

    rules = {k: v for k, v in RULES.items() if k != "max_offers_per_category"}
    seen: list[bool] = []
    compact = margins.compact

    def spied(problem: Any) -> bool:
        seen.append(compact(problem))
        return seen[-1]
    with monkeypatch.context() as patch:
        patch.setattr(margins, "compact", spied)
        local, _ = _run(tmp_path / "local", data["scores"], rules=rules, repair="shards")
    assert seen and all(seen)  # every local shard held compact margins
    with monkeypatch.context() as patch:
        patch.setattr(margins, "compact", lambda problem: False)
        dense, _ = _run(tmp_path / "dense", data["scores"], rules=rules, repair="shards")
    two, _ = _run(tmp_path / "two", data["scores"], rules=rules, backend="dask", workers=2,
                  repair="shards")
    assert len(local["assignments.csv"].splitlines()) > 100
    for f in FILES:
        assert dense[f] == local[f], f"{f} differs: " + _diff(dense[f], local[f], f)
        assert two[f] == local[f], f"{f} differs on 2 workers: " + _diff(local[f], two[f], f)


@pytest.mark.parametrize("path, call, at, split", [
    # worker-built shards, mid-pass: replays respond and tallies (the repair asked on the
    # driver, which stays there on Dask too)
    ("scores-driver", "collect", 3, None),
    ("affinity", "plan_rows_packed", 2, None),  # driver-built shards: replays the responses
    ("scores", "start", 1, None),  # while the shards are first built: they start again
    ("affinity", "start", 1, None),
    ("affinity", "sample", 1, None),  # the start's sample (the funder's whole LP), then rebuilt
    ("affinity", "kept_tallies", 1, 4),  # mid-narrowing (buckets over 4 candidates narrowed)
    # mid-refill, the repair and refill on the shards: replays repair_start and refill_start
    ("scores-shards", "refill_round", 1, None),
    # the plans kept on the shards: the best plan made again from its recipe, then gathered
    ("scores-shards", "plan_best_packed", 1, None),
])
def test_worker_killed_mid_solve_is_replaced_with_the_same_plan(data, tmp_path, monkeypatch,
                                                                path, call, at, split):
    """The worker holding shards 0 and 2 (of 3, on 2 workers) killed mid-solve, or while shard
    0's actor is first built on it: its shards are rebuilt on the workers left (mid-solve they
    replay what the lost ones held), and the run folder is the local run's bytes; the manifest
    counts the shards rebuilt."""
    monkeypatch.setattr(ShardExecutor, "split_above", split)
    path, _, repair = path.partition("-")
    knob = {"repair": repair} if repair else {}
    local, manifest = _run(tmp_path / "local", data[path], **knob)
    with _cluster(2) as cluster:
        done, err, out = _killed_run(data[path], tmp_path / "killed", cluster, call, at, 30,
                                     split=split, **knob)
    assert done.returncode == 0, err
    for f in FILES:
        files = (out / f).read_bytes()
        assert files == local[f], f"{f} differs: " + _diff(local[f], files, f)
    other = json.loads((out / "manifest.json").read_text())
    assert _comparable(other) == _comparable(manifest)
    backend = other["solver"]["backend"]
    # the killed worker's two shards at least; under load Dask can also drop the worker that
    # restarts in its place (its nanny's new process), whose shards are then rebuilt in turn
    assert backend["workers_lost"] >= 1 and backend["rebuilt_shards"] >= 2, backend
    assert backend["rebuilt_shards"] <= 3 * backend["workers_lost"], backend
    assert backend["shards_built_by"] == ("workers" if path == "scores" else "driver")
    # unset, the repair is on the shards on Dask; funder budgets keep it on the driver
    assert other["scenario"]["solver"]["repair"] == (repair or "shards")
    assert backend["repair"] == ("driver (funder budgets)" if path == "affinity" else
                                 "driver (solver.repair = driver)" if repair == "driver"
                                 else "shards")


@pytest.mark.parametrize("call, at", [("respond", 3), ("start", 1)])
def test_worker_killed_with_no_worker_left_fails_cleanly(data, tmp_path, call, at):
    """The only worker killed (mid-solve, or while the shards are first built), its nanny told
    not to restart it: no worker to rebuild the shards on, so exit code 3, the message says so
    and no run folder is written."""
    with _cluster(1) as cluster:
        for nanny in cluster.workers.values():
            nanny.close_gracefully()  # no restart when its worker goes
        done, err, out = _killed_run(data["scores"], tmp_path, cluster, call, at, 2)
    assert done.returncode == 3, err
    assert "no worker was left to rebuild them on" in err, err
    assert "no output was written" in err, err
    assert not out.exists()


@pytest.mark.parametrize("call, at, words", [
    # shard 0's worker lost mid-pass, then the worker it is rebuilt on
    ("collect,start", "3,4", "was built on it;"),
    # shard 0's worker lost at the start, then the one it starts again on
    ("start,start", "1,4", "was built on it again;"),
])
def test_worker_killed_while_a_shard_is_built_again_fails_cleanly(data, tmp_path, call, at,
                                                                  words):
    """A worker killed while a lost shard's actor is being built again on it (mid-solve, or at
    the start after its first worker was lost): the actor, pinned to that worker, would wait for
    it forever, and a shard is rebuilt at most once; the run stops with exit code 3 within
    seconds, naming the lost worker, and writes nothing."""
    with _cluster(2) as cluster:
        done, err, out = _killed_run(data["scores"], tmp_path, cluster, call, at, 30,
                                     timeout=120)
    assert done.returncode == 3, err
    # under load the second kill can land before the scheduler drops the worker: Dask then
    # cancels the actor's future first, which counts as the worker lost (tests/test_dask_start.py)
    assert "was lost while shard" in err and words in err, err
    assert "no output was written" in err, err
    assert not out.exists()


def _as_datasets(source: Path, parts: Path) -> None:
    """Every Parquet table of ``source`` as a folder of two parts (one in a sub-folder)."""
    shutil.copytree(source, parts)
    tables = sorted(p for p in parts.glob("*.parquet"))
    assert {"customers.parquet", "offers.parquet", "scores.parquet"} <= {p.name for p in tables}
    for path in tables:
        frame = pl.read_parquet(path)
        path.unlink()
        folder = parts / path.stem
        (folder / "b").mkdir(parents=True)
        half = frame.height // 2
        frame[:half].write_parquet(folder / "a-0.parquet")
        frame[half:].write_parquet(folder / "b" / "a-1.parquet")


def test_multi_file_parquet_datasets_on_the_cluster(data, one_worker, tmp_path):
    """Every table of the scores path as a folder of Parquet parts (NAME/, parts in
    sub-folders): the cluster's run folder is the bytes of the local run on single files."""
    local, _ = _run(tmp_path / "local", data["scores"])
    parts = tmp_path / "parts"
    _as_datasets(data["scores"], parts)
    files, manifest = _run(tmp_path / "cluster", parts, "--scheduler",
                           one_worker.scheduler_address)
    assert files == local
    assert manifest["solver"]["backend"]["name"] == "dask"
    assert manifest["solver"]["backend"]["shards_built_by"] == "workers"


def test_worker_built_shards_read_the_scores_table_at_a_url(data, one_worker, tmp_path):
    """scores_url = file://...: the driver and the worker read the scores table (a dataset of
    Parquet parts) through fsspec; the worker builds its shards from it; the local run's bytes."""
    local, _ = _run(tmp_path / "local", data["scores"])
    parts = tmp_path / "parts"
    _as_datasets(data["scores"], parts)
    tables = tmp_path / "tables"
    tables.mkdir()
    shutil.move(parts / "scores", tables / "scores")
    path = write_scenario(tmp_path / "url" / "scenario.toml", data=str(parts), output="run",
                          rules=RULES, solver={"seed": 3, "shard_customers": SHARD,
                                               "max_iterations": 12})
    path.write_text(f'scores_url = "{(tables / "scores").as_uri()}"\n' + path.read_text())
    done = CliRunner().invoke(main, ["run", str(path), "--json", "--scheduler",
                                     one_worker.scheduler_address])
    assert done.exit_code == 0, done.output
    out = tmp_path / "url" / "run"
    for f in FILES:
        files = (out / f).read_bytes()
        assert files == local[f], f"{f} differs: " + _diff(local[f], files, f)
    backend = json.loads((out / "manifest.json").read_text())["solver"]["backend"]
    assert backend["shards_built_by"] == "workers", backend


def test_worker_built_shards_cut_chunks_anywhere(data, tmp_path):
    """Workers build their shards from a multi-file scores dataset whose rows are shuffled,
    with chunks of 70 customers that the shards of 100 cut mid-chunk; every chunk's first
    customer keeps all her scored offers, the others three, so a worker's piece of a chunk is
    built narrower than the chunk's block and widened to its slots: the local run's bytes on 2
    workers (a piece not widened fails the plans' bits)."""
    parts = tmp_path / "parts"
    _as_datasets(data["scores"], parts)
    scores = pl.concat([pl.read_parquet(p) for p in sorted((parts / "scores").rglob("*.parquet"))])
    order = pl.read_parquet(data["scores"] / "customers.parquet").select(
        "customer_id").with_row_index("pos")
    scores = (scores.join(order, on="customer_id")
              .filter((pl.col("offer_id").rank("ordinal").over("customer_id") <= 3)
                      | (pl.col("pos") % 70 == 0)).drop("pos"))
    shutil.rmtree(parts / "scores")
    (parts / "scores" / "x").mkdir(parents=True)
    shuffled = scores.sample(fraction=1.0, shuffle=True, seed=5)
    third = shuffled.height // 3
    for k, piece in enumerate((shuffled[:third], shuffled[third:2 * third], shuffled[2 * third:])):
        piece.write_parquet(parts / "scores" / ("x" if k else "") / f"part-{k}.parquet")
    local, _ = _run(tmp_path / "local", parts, chunk_size=70)
    files, manifest = _run(tmp_path / "two", parts, backend="dask", workers=2, chunk_size=70)
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    backend = manifest["solver"]["backend"]
    assert backend["shards_built_by"] == "workers" and backend["shards"] == 3
    assert backend["setup_bytes"] > 0  # the inputs' stretches (benchmarks/cluster.py sizes them)


def _padded_text_ids(source: Path, target: Path) -> None:
    """``source`` with text customer IDs, every other customer's written in ``scores`` with
    surrounding spaces (the run trims them), the scores table sorted by customer in row groups
    of 50 rows (so that row groups could be pruned by their statistics)."""
    shutil.copytree(source, target)
    customers = pl.read_parquet(target / "customers.parquet")
    customers.with_columns(pl.col("customer_id").cast(pl.Utf8)).write_parquet(
        target / "customers.parquet")
    scores = pl.read_parquet(target / "scores.parquet").sort("customer_id", "offer_id")
    text = pl.col("customer_id").cast(pl.Utf8)
    scores.with_columns(customer_id=pl.when(pl.col("customer_id") % 2 == 0)
                        .then(pl.lit(" ") + text + pl.lit("  ")).otherwise(text)).write_parquet(
        target / "scores.parquet", row_group_size=50)


@pytest.mark.parametrize("where", ["folder", "url"])
def test_padded_text_ids_give_the_local_bytes_on_two_workers(data, tmp_path, where):
    """Text customer IDs stored with surrounding spaces in the scores table: the driver trims
    them as it reads the table and tells the workers, who then trim too and read every row
    group (statistics of untrimmed text say nothing of trimmed IDs): the local run's bytes on 2
    workers, from the data folder and from scores_url (untrimmed, the workers' shards missed the
    padded customers' pairs and the run stopped at the pair count, exit 3)."""
    padded = tmp_path / "padded"
    _padded_text_ids(data["scores"], padded)
    assert pl.read_parquet(padded / "scores.parquet").get_column("customer_id").str.starts_with(
        " ").any()
    local, _ = _run(tmp_path / "local", padded)
    if where == "url":
        tables = tmp_path / "tables"
        tables.mkdir()
        shutil.move(padded / "scores.parquet", tables / "scores.parquet")
        path = write_scenario(tmp_path / "two" / "scenario.toml", data=str(padded), output="run",
                              rules=RULES, solver={"seed": 3, "shard_customers": SHARD,
                                                   "max_iterations": 12, "backend": "dask",
                                                   "workers": 2})
        path.write_text(f'scores_url = "{(tables / "scores.parquet").as_uri()}"\n'
                        + path.read_text())
        done = CliRunner().invoke(main, ["run", str(path), "--json"])
        assert done.exit_code == 0, done.output
        out = tmp_path / "two" / "run"
        files = {f: (out / f).read_bytes() for f in FILES}
        manifest = json.loads((out / "manifest.json").read_text())
    else:
        files, manifest = _run(tmp_path / "two", padded, backend="dask", workers=2)
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)
    backend = manifest["solver"]["backend"]
    assert backend["shards_built_by"] == "workers" and backend["workers"] == 2, backend


def test_kernel_cache_compiles_once(data, tmp_path):
    """solver.kernel_cache: the first LocalCluster's worker compiles its kernels into the
    folder; the next cluster's worker, a new process, loads them and compiles none; the plan is
    the same bytes."""
    cache = tmp_path / "kernels"
    first, one = _run(tmp_path / "first", data["scores"], backend="dask", workers=1,
                      kernel_cache=str(cache))
    compiled = one["solver"]["backend"]["kernels"]
    assert compiled[0]["compiled"] > 0, compiled
    assert any(cache.rglob("*.nbi")), "no kernel was cached in the folder"
    second, two = _run(tmp_path / "second", data["scores"], backend="dask", workers=1,
                       kernel_cache=str(cache))
    again = two["solver"]["backend"]["kernels"]
    # (kernels that only other kernels call are compiled with them, loaded inside them)
    assert again[0]["compiled"] == 0 and again[0]["loaded"] > 0, again
    assert first == second


@pytest.mark.parametrize("sets, words", [
    (("solver.scheduler=\"tcp://127.0.0.1:1\"",), "scheduler applies only"),
    (("solver.backend=\"dask\"", "solver.method=\"exact\""), "lagrangian method only"),
    (("solver.kernel_cache=\"k\"",), "kernel_cache applies only"),
    (("solver.backend=\"dask\"", "solver.scheduler=\"tcp://127.0.0.1:1\"", "solver.workers=4"),
     "workers applies only without a scheduler"),
])
def test_backend_knobs_that_would_be_ignored_exit_2(data, tmp_path, sets, words):
    path = write_scenario(tmp_path / "s.toml", data=str(data["scores"]), output="run")
    done = CliRunner().invoke(main, ["run", str(path), *[a for s in sets for a in ("--set", s)]])
    assert done.exit_code == 2 and words in done.output, done.output
    assert not (tmp_path / "run").exists()


def test_unreachable_scheduler_exits_3_and_writes_nothing(data, tmp_path, monkeypatch):
    monkeypatch.setattr(dask_shards, "CONNECT_TIMEOUT", "2s")  # refused: no need to wait 20 s
    path = write_scenario(tmp_path / "s.toml", data=str(data["scores"]), output="run")
    done = CliRunner().invoke(main, ["run", str(path), "--scheduler", "tcp://127.0.0.1:9"])
    assert done.exit_code == 3 and "cannot reach the Dask scheduler" in done.output, done.output
    assert not (tmp_path / "run").exists()
