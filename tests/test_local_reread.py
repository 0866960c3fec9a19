"""A local run on the ``scores`` path holds no per-pair ``p_redeem`` past the polish's reach
(issue 21): its blocks' ``p_redeem`` is a zero view (:func:`optimizer.model.layout.
p_redeem_let_go`) and its plan's chosen pairs read theirs again from the table
(:func:`optimizer.model.chosen.read_plan_again`), as the Dask workers' do. The run folder is
the bytes of the run that held every ``p_redeem``; the memory estimate counts 8 bytes a slot
less; a table changed between the build and the read again stops the run, nothing written."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps import solve_stage
from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.config import load_scenario
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
    return _without_timings({k: v for k, v in manifest.items() if k != "memory"})


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
    monkeypatch.setattr(chosen, "REREAD_CUSTOMERS", 64)  # read again in five stretches
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
