"""Bounded memory: a run that cannot fit stops early with the numbers and the knob to change (exit 2,
nothing written); one that fits records its estimate in the manifest."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.io.memory import GB, MemoryLimitError, available_memory, estimate_memory
from optimizer.io.validate import load_inputs
from tests.tiny_world import base_world, offer, score, write_scenario, write_world


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mem") / "data"
    write_demo_data(folder, customers=200, offers=15, seed=2)
    return folder


def test_affinity_run_over_the_limit_fails_early_naming_the_knobs(tmp_path, demo):
    scenario = write_scenario(tmp_path / "s.toml", data=str(demo), output="run",
                              solver={"memory_limit_gb": 1e-6})
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 4, result.output  # 4: out of memory (optimizer/core/errors.py)
    text = " ".join(result.output.split())
    assert "solver.memory_limit_gb" in text and "affinity.candidates_per_customer" in text
    assert "200 customers x 15 offers" in text and "GB" in text
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.glob(".run.tmp-*")) == []


def test_estimate_shrinks_with_the_knobs_and_a_fitting_run_succeeds(tmp_path, demo):
    base = load_scenario(write_scenario(tmp_path / "a.toml", data=str(demo), output="run"))
    inputs = load_inputs(demo)
    wide = estimate_memory(inputs, base)
    narrow = estimate_memory(inputs, load_scenario(
        tmp_path / "a.toml", ["affinity.candidates_per_customer=3", "solver.chunk_size=10"]))
    assert wide.candidate_slots == 200 * 15 and narrow.candidate_slots == 200 * 3
    assert narrow.total < wide.total
    # a limit between the two: the wide run is refused, the narrowed one goes through
    limit = (narrow.total + wide.total) / 2 / GB
    with pytest.raises(MemoryLimitError):
        run_scenario(load_scenario(tmp_path / "a.toml", [f"solver.memory_limit_gb={limit}"]),
                     write=False)
    result = run_scenario(load_scenario(tmp_path / "a.toml", [
        f"solver.memory_limit_gb={limit}", "affinity.candidates_per_customer=3",
        "solver.chunk_size=10"]))
    memory = result.manifest["memory"]
    assert memory["candidate_slots"] == 600 and memory["limit_source"] == "solver.memory_limit_gb"
    assert memory["estimate_gb"] <= limit


@pytest.mark.parametrize("rows_sorted", [True, False])
def test_scores_path_counts_the_padded_chunks(tmp_path, rows_sorted):
    world = base_world(customers=4)
    world["offers"] = [offer(j) for j in range(1, 6)]
    world["scores"] = [score(1, j) for j in range(1, 6)] + [score(c, 1) for c in (2, 3, 4)]
    if not rows_sorted:  # counted by bincount instead of the sorted rows' bounds
        world["scores"] = world["scores"][::-1]
    write_world(tmp_path / "data", world)
    assert load_inputs(tmp_path / "data").scores_sorted == rows_sorted
    path = write_scenario(tmp_path / "s.toml", solver={"chunk_size": 2})
    estimate = estimate_memory(load_inputs(tmp_path / "data"), load_scenario(path))
    assert estimate.candidate_slots == 2 * 5 + 2 * 1  # chunk {1, 2} is 5 wide, {3, 4} is 1
    assert estimate.working_chunk == 0
    refused = CliRunner().invoke(main, ["run", str(path), "--set", "solver.memory_limit_gb=1e-9"])
    assert refused.exit_code == 4 and "scores table" in " ".join(refused.output.split())


def test_default_limit_is_the_available_memory():
    assert available_memory() > 0


@pytest.mark.parametrize("bad", ["0", "-1", "'lots'"])
def test_memory_limit_knob_is_validated(tmp_path, bad):
    path = write_scenario(tmp_path / "s.toml")
    write_world(tmp_path / "data", base_world())
    result = CliRunner().invoke(main, ["run", str(path), "--set", f"solver.memory_limit_gb={bad}"])
    assert result.exit_code == 2 and "memory_limit_gb" in result.output


def test_scores_pairs_that_do_not_fit_keep_each_customers_best(tmp_path, caplog):
    """With ``solver.scores_per_customer`` unset, a scores table whose every pair would not fit
    the limit keeps as many of each customer's pairs as fit; set, it is refused as before."""
    world = base_world(customers=4)
    world["offers"] = [offer(j) for j in range(1, 6)]
    world["scores"] = [score(c, j) for c in (1, 2) for j in range(1, 6)] + [score(3, 1)]
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "s.toml", solver={"chunk_size": 2})
    inputs = load_inputs(tmp_path / "data")

    def total(*overrides: str) -> float:
        return estimate_memory(inputs, load_scenario(path, list(overrides))).total / GB

    limit = (total("solver.scores_per_customer=2") + total("solver.scores_per_customer=3")) / 2
    assert limit < total()
    fitted = run_scenario(load_scenario(path, [f"solver.memory_limit_gb={limit}"]), write=False)
    candidates = fitted.manifest["candidates"]
    assert candidates["candidates_per_customer"] == 2
    assert "best 2 are kept" in candidates["kept_to_fit_memory"]
    assert candidates["pairs_all_candidates"] == 11 and candidates["pairs"] == 5
    assert fitted.manifest["memory"]["estimate_gb"] <= limit
    assert fitted.bound <= candidates["bound_all_candidates"] + 1e-9
    with pytest.raises(MemoryLimitError):  # the user's own count is never overridden
        run_scenario(load_scenario(path, [f"solver.memory_limit_gb={limit}",
                                          "solver.scores_per_customer=5"]), write=False)
    # nothing to fit: all pairs, no note
    plain = run_scenario(load_scenario(path), write=False)
    assert plain.manifest["candidates"]["candidates_per_customer"] == "all"
    # and the run says so as a warning (on stderr from the command line)
    assert any("each customer's best 2 are kept" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING")


def test_without_a_set_limit_the_pairs_kept_never_depend_on_free_memory(tmp_path, monkeypatch):
    """The memory available varies between runs; the same inputs must give the same plan, so
    only a limit the scenario sets may shrink the pairs kept (else the run is refused)."""
    import optimizer.io.memory as memory

    world = base_world(customers=4)
    world["offers"] = [offer(j) for j in range(1, 6)]
    world["scores"] = [score(c, j) for c in (1, 2) for j in range(1, 6)]
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "s.toml")
    inputs = load_inputs(tmp_path / "data")
    scenario = load_scenario(path)
    between = (estimate_memory(inputs, load_scenario(path, ["solver.scores_per_customer=2"]))
               .total + estimate_memory(inputs, scenario).total) // 2
    monkeypatch.setattr(memory, "available_memory", lambda: between)
    assert memory.fit_scores_per_customer(inputs, scenario) == (scenario, None)
    with pytest.raises(MemoryLimitError, match="set solver.memory_limit_gb"):
        memory.check_memory(inputs, scenario)


def test_the_pairs_kept_never_depend_on_the_cores_where_workers_hold_them(tmp_path, monkeypatch):
    """Where the Dask workers hold every pair (io.memory.workers_hold_pairs) and the scores
    table has more rows than the polish's reach, the driver reads none of them
    (io.memory.shards_report_layout): its estimate counts no candidate, on any cores; the pairs
    kept to fit ``memory_limit_gb`` (the plan) are the same on a 1-core and an 8-core machine,
    and a refusal names no knob of pairs."""
    import optimizer.core.parallel as parallel
    import optimizer.io.memory as memory

    data = tmp_path / "data"
    write_demo_data(data, customers=2000, offers=20, seed=1, scores_per_customer=8)
    path = write_scenario(tmp_path / "s.toml", data=str(data), solver={
        "backend": "dask", "repair": "shards", "chunk_size": 100, "threads": 0,
        "polish_pairs": 0})  # no polish: the driver keeps no block (solve.polish_reach)
    inputs = load_inputs(data)
    scenario = load_scenario(path)
    assert memory.workers_hold_pairs(inputs, scenario)

    def on(cpus: int) -> int:
        monkeypatch.setattr(parallel, "usable_cpus", lambda: cpus)
        return estimate_memory(inputs, scenario).total

    few, many = on(1), on(8)
    # the table's rows past the polish's reach: the driver builds no block, on any cores
    assert few == many and estimate_memory(inputs, scenario).candidate_slots == 0
    limited = load_scenario(path, [f"solver.memory_limit_gb={few * 0.9 / GB}"])
    kept = set()
    for cpus in (1, 8):
        monkeypatch.setattr(parallel, "usable_cpus", lambda: cpus)
        fitted, _ = memory.fit_scores_per_customer(inputs, limited)
        kept.add(fitted.solver.scores_per_customer)
    assert kept == {None}
    # refused, it names none of the knobs of pairs (a choice of pairs puts every kept pair back
    # on the driver, whose input tables are what it lacks room for)
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 8)
    with pytest.raises(MemoryLimitError) as refused:
        memory.check_memory(inputs, limited)
    text = " ".join(str(refused.value).split())
    assert "holds none of the scores table's pairs" in text
    assert "scores_per_customer" not in text and "lower solver.threads" not in text


def test_a_driver_within_the_polish_reach_is_counted_with_every_pair(tmp_path):
    """Where the workers could hold every pair, a table within the polish's reach
    (solve.polish_reach: solver.polish_pairs x 200) of rows is read by the driver, which keeps
    its blocks: counted whole, as the local run's driver; past it, at most the reach of slots."""
    data = tmp_path / "data"
    write_demo_data(data, customers=2000, offers=20, seed=1, scores_per_customer=8)
    path = write_scenario(tmp_path / "s.toml", data=str(data), solver={
        "backend": "dask", "repair": "shards", "chunk_size": 100, "threads": 1})
    inputs = load_inputs(data)

    def slots(*overrides: str) -> int:
        return estimate_memory(inputs, load_scenario(path, list(overrides))).candidate_slots

    every = slots("solver.backend='local'")
    assert slots() == every  # 16,000 slots, within 10,000 x 200 pairs: every block kept
    # more rows (16,000) than the reach: the driver reads none of them (the workers do), and
    # builds the blocks after all only where the rules keep at most the reach of pairs
    assert slots("solver.polish_pairs=0") == 0 and slots("solver.polish_pairs=10") == 2000
    assert slots("solver.polish_pairs=80") == every  # 16,000 rows within 80 x 200
