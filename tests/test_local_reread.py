"""A local run on the ``scores`` path holds no per-pair ``p_redeem`` past the polish's reach
(issue 21): its blocks' ``p_redeem`` is a zero view (:func:`optimizer.model.layout.
p_redeem_let_go`) and its plan's chosen pairs read theirs again from the table
(:func:`optimizer.model.chosen.read_plan_again`), as the Dask workers' do. The run folder is
the bytes of the run that held every ``p_redeem``; the memory estimate counts 8 bytes a slot
less; a table changed between the build and the read again stops the run, nothing written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps import solve_stage
from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.core.errors import MemoryLimitError
from optimizer.io import memory
from optimizer.io.validate import load_inputs
from optimizer.model import build, chosen
from tests.test_reproducible import FILES, RULES, _diff, _without_timings
from tests.tiny_world import write_scenario

HOLDOUT = "\n[measurement]\nholdout_share = 0.2\noffer_holdout_share = 0.1\nsalt = \"reread\"\n"
SOLVER = {"seed": 3, "max_iterations": 12, "chunk_size": 70}  # five blocks


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reread") / "scores"
    write_demo_data(root, customers=300, offers=20, seed=1, scores_per_customer=8)
    return root


def _run(root: Path, data: Path, extra: str = "", args: tuple[str, ...] = (),
         **solver: Any) -> tuple[int, str, dict[str, bytes], dict]:
    path = write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={**SOLVER, **solver}, extra=extra)
    done = CliRunner().invoke(main, ["run", str(path), "--json", *args])
    out = root / "run"
    if done.exit_code:
        return done.exit_code, done.output, {}, {}
    files = FILES + (["controls.parquet"] if extra else [])
    return (0, done.output, {f: (out / f).read_bytes() for f in files},
            json.loads((out / "manifest.json").read_text()))


def _comparable(manifest: dict) -> dict:
    # the memory estimate counts what is held; the scenario names each run's own paths
    return _without_timings({k: v for k, v in manifest.items()
                             if k not in ("memory", "scenario")})


def _spied(monkeypatch) -> list[list[tuple[int, ...]]]:
    """Each solve's blocks' ``p_redeem`` strides."""
    seen: list[list[tuple[int, ...]]] = []
    solve = solve_stage.solve_pinned

    def spy(built, *args, **kwargs):
        seen.append([b.p_redeem.strides for b in built.problem.blocks if b.offer.size])
        return solve(built, *args, **kwargs)
    monkeypatch.setattr(solve_stage, "solve_pinned", spy)
    return seen


@pytest.mark.parametrize("extra", ["", HOLDOUT])
def test_a_local_run_without_p_redeem_writes_the_folder_of_one_that_held_it(
        scores, tmp_path, monkeypatch, extra):
    seen = _spied(monkeypatch)
    monkeypatch.setattr(chosen, "REREAD_CUSTOMERS", 64)  # read again in several stretches
    # polish_pairs = 0: the polish's reach is 0 pairs, so every block lets its p_redeem go
    code, out, files, manifest = _run(tmp_path / "bare", scores, extra, polish_pairs=0)
    assert code == 0, out
    assert seen[-1] and all(s == (0, 0) for s in seen[-1])  # no memory a slot
    assert len(files["assignments.csv"].splitlines()) > 100
    with monkeypatch.context() as held:  # the same run, its blocks holding every p_redeem
        held.setattr(build, "pairs_read_again", lambda inputs, scenario: None)
        code, out, whole, other = _run(tmp_path / "held", scores, extra, polish_pairs=0)
    assert code == 0, out
    assert all(s != (0, 0) for s in seen[-1])
    for f in files:
        assert files[f] == whole[f], f"{f} differs: " + _diff(whole[f], files[f], f)
    assert _comparable(manifest) == _comparable(other)
    assert manifest["candidates"]["pairs"] == other["candidates"]["pairs"] > 1000


def test_within_the_polish_reach_the_blocks_keep_p_redeem(scores, tmp_path, monkeypatch):
    seen = _spied(monkeypatch)
    code, out, _, _ = _run(tmp_path / "polish", scores)  # 10,000 x 200 pairs: in reach
    assert code == 0, out
    assert seen[-1] and all(s != (0, 0) for s in seen[-1])


def test_the_memory_estimate_counts_no_p_redeem_past_the_polish_reach(scores, tmp_path):
    path = write_scenario(tmp_path / "s.toml", data=str(scores), rules=RULES,
                          solver={"polish_pairs": 0})
    scenario = load_scenario(path)
    inputs = load_inputs(scenario.data)
    est = memory.estimate_memory(inputs, scenario)
    assert memory.pairs_read_again(inputs, scenario) == "driver"
    assert est.candidate_slots > 1000
    assert est.candidates == est.candidate_slots * (memory.BYTES_PER_SLOT
                                                    - memory.BYTES_OF_P_REDEEM)
    tight = scenario.model_copy(update={"solver": scenario.solver.model_copy(
        update={"memory_limit_gb": 1e-4})})
    with pytest.raises(MemoryLimitError, match="0.000[0-9]+ GB without their p_redeem"):
        memory.check_memory(inputs, tight)
    # a choice of pairs over every customer's keeps them whole (and their p_redeem)
    kept = scenario.model_copy(update={"solver": scenario.solver.model_copy(
        update={"scores_per_customer": 4})})
    assert memory.pairs_read_again(inputs, kept) is None
    slots = memory.estimate_memory(inputs, kept)
    assert slots.candidates == slots.candidate_slots * memory.BYTES_PER_SLOT
    # within the polish's reach (every slot of it) p_redeem is counted
    near = scenario.model_copy(update={"solver": scenario.solver.model_copy(
        update={"polish_pairs": est.candidate_slots // 400})})
    reach = memory.polish_reach(near.solver)
    assert memory.estimate_memory(inputs, near).candidates == (
        est.candidate_slots * memory.BYTES_PER_SLOT
        - (est.candidate_slots - reach) * memory.BYTES_OF_P_REDEEM)


@pytest.mark.parametrize("change", ["gone", "value"])
def test_a_scores_table_changed_before_the_read_again_stops_the_run(
        scores, tmp_path, monkeypatch, change):
    data = tmp_path / "data"
    data.mkdir()
    for f in scores.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    solve = solve_stage.solve

    def changing(*args, **kwargs):  # the table is rewritten while the run solves
        table = pl.read_parquet(data / "scores.parquet")
        if change == "gone":
            table = table.filter(pl.int_range(pl.len()) % 2 == 0)
        else:
            table = table.with_columns(pl.col("p_redeem") * 0.5)
        table.write_parquet(data / "scores.parquet")
        return solve(*args, **kwargs)
    monkeypatch.setattr(solve_stage, "solve", changing)
    code, out, _, _ = _run(tmp_path / "run", data, polish_pairs=0)
    assert code == 2, out
    said = " ".join(out.split())
    assert "'scores', column 'p_redeem'" in said and "the table changed during the run" in said
    assert not (tmp_path / "run" / "run").exists()


def _dataset(data: Path) -> None:
    """The scores table as a folder of two parts (one in a sub-folder)."""
    frame = pl.read_parquet(data / "scores.parquet")
    (data / "scores.parquet").unlink()
    (data / "scores" / "b").mkdir(parents=True)
    frame[:frame.height // 2].write_parquet(data / "scores" / "a-0.parquet")
    frame[frame.height // 2:].write_parquet(data / "scores" / "b" / "a-1.parquet")


def _outside(data: Path) -> None:
    """The scores dataset out of the data folder, read at its ``file://`` URL."""
    _dataset(data)
    shutil.move(data / "scores", data.parent / "scores")


def _targets(data: Path) -> None:
    offers = pl.read_parquet(data / "offers.parquet")
    offers.with_columns(pl.when(pl.int_range(pl.len()) < 4).then(25).otherwise(
        pl.col("min_customers")).alias("min_customers")).write_parquet(data / "offers.parquet")


def _groups(data: Path) -> None:
    ids = pl.read_parquet(data / "offers.parquet").get_column("offer_id").to_list()
    pl.DataFrame({"group_id": ["all"] * len(ids) + ["pair"] * 2, "offer_id": ids + ids[:2],
                  "max_per_customer": [2] * len(ids) + [1] * 2}).write_csv(
        data / "offer_groups.csv")


CASES: dict[str, dict[str, Any]] = {
    "targets": {"prepare": _targets}, "groups": {"prepare": _groups},
    "dataset": {"prepare": _dataset}, "stream": {"solver": {"stream_scores": True}},
    "url": {"prepare": _outside, "url": True}, "exact": {"solver": {"method": "exact"}}, "empty": {"rules": {"global_budget": 0.0}},
    "previous-run": {"args": ("--previous-run", "{prev}")},
    "warm-start": {"args": ("--warm-start", "{prev}")},
    "append-history": {"args": ("--append-history",)},
}


def _case_run(root: Path, source: Path, case: dict[str, Any], prev: Path
              ) -> tuple[dict[str, bytes], dict]:
    """A run of ``case`` on its own copy of ``source`` (the history it may append to): every
    file of its folder (and the history table) and its manifest."""
    data = root / "data"
    shutil.copytree(source, data)
    case.get("prepare", lambda data: None)(data)
    head = f'scores_url = "{(root / "scores").as_uri()}"\n' if case.get("url") else ""
    path = write_scenario(root / "scenario.toml", data=str(data), output="run",
                          rules={**RULES, **case.get("rules", {})},
                          solver={**SOLVER, "polish_pairs": 0, **case.get("solver", {})})
    path.write_text(head + path.read_text())
    args = [a.format(prev=prev) for a in case.get("args", ())]
    done = CliRunner().invoke(main, ["run", str(path), "--json", *args])
    assert done.exit_code == 0, done.output
    out = root / "run"
    files = {f.name: f.read_bytes() for f in out.iterdir() if f.name != "manifest.json"}
    files["history"] = (data / "history.parquet").read_bytes()
    return files, json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("name", list(CASES))
def test_each_kind_of_run_without_p_redeem_writes_the_same_bytes(scores, tmp_path, monkeypatch,
                                                                  name):
    seen = _spied(monkeypatch)
    prev = tmp_path / "prev"
    _run(prev, scores, polish_pairs=0)
    files, manifest = _case_run(tmp_path / "bare", scores, CASES[name], prev / "run")
    assert seen[-1] and all(s == (0, 0) for s in seen[-1])
    with monkeypatch.context() as held:
        held.setattr(build, "pairs_read_again", lambda inputs, scenario: None)
        whole, other = _case_run(tmp_path / "held", scores, CASES[name], prev / "run")
    assert all(s != (0, 0) for s in seen[-1])
    assert files.keys() == whole.keys()
    for f in files:
        assert files[f] == whole[f], f"{f} differs"
    assert _comparable(manifest) == _comparable(other)
    if name == "empty":
        assert manifest["customers_reached"] == 0


def _sweep_and_explain(root: Path, data: Path) -> tuple[dict[str, bytes], str]:
    path = write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={**SOLVER, "polish_pairs": 0})
    done = CliRunner().invoke(main, ["sweep", str(path), "--budget-scale", "0.5,1",
                                     "--out", str(root / "sweep"), "--quiet"])
    assert done.exit_code == 0, done.output
    # the sweep names the scenario's output folder: each run's own
    files = {f: (root / "sweep" / f).read_bytes().replace(str(root).encode(), b"ROOT")
             for f in ("sweep.csv", "sweep.json")}
    done = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert done.exit_code == 0, done.output
    first = pl.read_parquet(root / "run" / "assignments.parquet").get_column("customer_id")[0]
    said = CliRunner().invoke(main, ["explain", str(path), str(first), "--json"])
    assert said.exit_code == 0, said.output
    return files, said.output.replace(str(root), "ROOT")


def test_a_sweep_and_explain_read_the_same_plans(scores, tmp_path, monkeypatch):
    seen = _spied(monkeypatch)
    files, said = _sweep_and_explain(tmp_path / "bare", scores)
    assert seen and all(s == (0, 0) for blocks in seen for s in blocks)
    with monkeypatch.context() as held:
        held.setattr(build, "pairs_read_again", lambda inputs, scenario: None)
        whole, again = _sweep_and_explain(tmp_path / "held", scores)
    assert files == whole
    assert json.loads(said) == json.loads(again)
