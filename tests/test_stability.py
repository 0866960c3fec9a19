"""Stable lists (issue 24, item 2): rules.change_penalty keeps last week's offers where they are
worth nearly as much, the manifest and report count changed lists, and the penalised plan is
held against the exact model of the same penalised problem."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.model import stability
from optimizer.solve.exact import solve_exact
from tests.random_world import random_world, run_and_check
from tests.tiny_world import (
    WEEK,
    base_world,
    offer,
    offers_of,
    run_world,
    score,
    write_scenario,
    write_world,
)


def _world() -> dict:
    world = base_world()
    world["offers"] = [offer(1, "BAKERY"), offer(2, "DAIRY")]
    world["scores"] = [score(c, o, value=1.0 if o == 1 else 1.1) for c in range(1, 5)
                       for o in (1, 2)]
    # last week every customer got offer 1; customer 4 got nothing
    world["history"] = [{"customer_id": c, "offer_id": 1, "week": WEEK - 1} for c in (1, 2, 3)]
    return world


def _run(root: Path, *extra: str, **rules) -> tuple[Path, dict]:
    return run_world(root, _world(), *extra, **rules)


def test_change_penalty_keeps_last_weeks_offers(tmp_path):
    free_run, free = _run(tmp_path / "free")
    assignments = pl.read_parquet(free_run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {2} for c in range(1, 5))
    assert "stability" not in free                          # nothing asked of it

    run, manifest = _run(tmp_path / "kept", change_penalty=0.2)
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {1} for c in (1, 2, 3))
    assert offers_of(assignments, 4) == {2}               # no list last week: the best offer
    s = manifest["stability"]
    assert (s["previous"], s["previous_lists"], s["kept_slots"], s["changed_slots"],
            s["changed_lists"]) == ("history week 39", 3, 3, 0, 1)
    # scores and the objective stay the pairs' own values; the bound is the penalised one
    assert manifest["objective"] == pytest.approx(3 * 1.0 + 1.1)
    assert s["penalized_objective"] == pytest.approx(manifest["objective"])
    assert manifest["upper_bound"] >= manifest["objective"] + 3 * 0.2 - 1e-6
    assert "Stable lists" in (run / "report.html").read_text()


def test_a_small_penalty_changes_nothing(tmp_path):
    run, manifest = _run(tmp_path, change_penalty=0.05)
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {2} for c in range(1, 5))
    assert manifest["stability"]["changed_slots"] == 3


def test_previous_run_gives_the_lists(tmp_path):
    first, _ = _run(tmp_path / "a")
    run, manifest = _run(tmp_path / "b", "--previous-run", str(first), change_penalty=0.5)
    assert manifest["stability"]["previous"] == str(first)
    assert manifest["stability"]["changed_lists"] == 0      # kept week a's list: offer 2 each


def test_previous_run_that_is_not_a_run_folder_exits_2(tmp_path):
    write_world(tmp_path / "data", _world())
    path = write_scenario(tmp_path / "scenario.toml", rules={"change_penalty": 1.0})
    result = CliRunner().invoke(main, ["run", str(path), "--previous-run", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--previous-run" in result.output + (result.stderr or "")
    assert not (tmp_path / "run").exists()


def test_previous_run_whose_lists_match_no_input_exits_2(tmp_path):
    """A previous run of another shop (or of text IDs where these are integers): none of its
    assignments names a customer and an offer here, so the penalty kept nothing, silently
    (previous_lists 0, exit 0). Exit 2 naming --previous-run, nothing written."""
    first, _ = _run(tmp_path / "a")
    path = first / "assignments.parquet"
    pl.read_parquet(path).with_columns(pl.format("C{}", "customer_id"),
                                       pl.format("O{}", "offer_id")).write_parquet(path)
    write_world(tmp_path / "b" / "data", _world())
    scenario = write_scenario(tmp_path / "b" / "scenario.toml", rules={"change_penalty": 0.5})
    result = CliRunner().invoke(main, ["run", str(scenario), "--previous-run", str(first)])
    text = " ".join((result.output + (result.stderr or "")).split())
    assert result.exit_code == 2, text
    assert f"--previous-run {first}" in text and "names a customer and an offer" in text
    assert not (tmp_path / "b" / "run").exists()


def _zero_padded(run: Path) -> None:
    """The run folder's assignments with its integer IDs rewritten as text "01", "02"...: not
    the integers 1, 2 anywhere else in the product (validate, check's rules, measure)."""
    a = pl.read_parquet(run / "assignments.parquet").with_columns(
        pl.format("0{}", "customer_id").alias("customer_id"),
        pl.format("0{}", "offer_id").alias("offer_id"))
    a.write_parquet(run / "assignments.parquet")
    a.write_csv(run / "assignments.csv")


def test_previous_run_ids_are_typed_as_everywhere(tmp_path):
    """--previous-run cast its IDs plainly, so "01" matched customer 1 there and nowhere else:
    a run folder whose IDs name no customer of these inputs as the product types them is exit
    2 (it planned with them, exit 0)."""
    first, _ = _run(tmp_path / "a")
    _zero_padded(first)
    write_world(tmp_path / "b" / "data", _world())
    scenario = write_scenario(tmp_path / "b" / "scenario.toml", rules={"change_penalty": 0.5})
    result = CliRunner().invoke(main, ["run", str(scenario), "--previous-run", str(first)])
    text = " ".join((result.output + (result.stderr or "")).split())
    assert result.exit_code == 2, text
    assert "names a customer and an offer" in text


def test_check_types_the_previous_runs_ids_as_everywhere(tmp_path):
    """check recomputed the stability figures from a previous run folder whose IDs it cast
    plainly: "01" read as customer 1, and the figures agreed (ok). Typed as everywhere, those
    lists name nobody and the figures disagree (rule stability)."""
    first, _ = _run(tmp_path / "a")
    run, _ = _run(tmp_path / "b", "--previous-run", str(first), change_penalty=0.5)
    _zero_padded(first)
    report = check_run(load_scenario(tmp_path / "b" / "scenario.toml"), run, force=True)
    assert "stability" in report.rules, report.describe()


def test_previous_run_of_csv_copies_only(tmp_path):
    """A run folder holding only its CSV copies (which check accepts) was refused as
    --previous-run (exit 2: cannot read its assignments.parquet). Both read it: the same lists
    as from the Parquet copy, and check passes."""
    first, _ = _run(tmp_path / "a")
    csv_only = tmp_path / "csv_only"
    shutil.copytree(first, csv_only)
    for parquet in csv_only.glob("*.parquet"):
        parquet.unlink()
    runs = {}
    for name, previous in (("from_parquet", first), ("from_csv", csv_only)):
        runs[name] = _run(tmp_path / name, "--previous-run", str(previous), change_penalty=0.5)
    figures = [{k: v for k, v in m["stability"].items() if k != "previous"}
               for _, m in runs.values()]
    assert figures[0] == figures[1] and figures[0]["previous_slots"] > 0
    root = tmp_path / "from_csv"
    report = check_run(load_scenario(root / "scenario.toml"), runs["from_csv"][0], force=True)
    assert report.ok, report.describe()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n_customers=st.integers(1, 25), n_offers=st.integers(1, 10),
       penalty=st.sampled_from([0.05, 0.3, 2.0]))
def test_penalised_plan_against_the_exact_model(seed, n_customers, n_offers, penalty):
    world, rules = random_world(seed, n_customers, n_offers, targets=False)
    rng = np.random.default_rng(seed + 2)
    ids = [o["offer_id"] for o in world["offers"]]
    history = world.get("history", []) + [
        {"customer_id": c["customer_id"], "offer_id": ids[int(rng.integers(0, len(ids)))],
         "week": WEEK - 1} for c in world["customers"] if rng.random() < 0.7]
    if history:
        world["history"] = history
    with tempfile.TemporaryDirectory(prefix="offeropt-stable-") as tmp:
        root = Path(tmp)
        write_world(root / "data", world,
                    headers={"scores": ["customer_id", "offer_id", "p_redeem", "value"]})
        scenario = load_scenario(write_scenario(root / "scenario.toml",
                                                rules={**rules, "change_penalty": penalty}))
        result, problem, report = run_and_check(scenario, root)
        s = result.manifest["stability"]
        assert result.objective == pytest.approx(float(result.assignments["score"].sum()))
        # the exact optimum of the penalised problem the solver saw
        from optimizer.io.validate import load_inputs
        inputs = load_inputs(scenario.data)
        previous = stability.from_history(inputs.history, scenario.week, inputs.n_offers)
        stability.add_bonus(problem, previous, penalty)
        exact = solve_exact(problem, time_limit_s=60)
        best = exact.objective - penalty * s["previous_slots"]
        slack = 1e-6 * max(1.0, abs(exact.objective))
        assert s["penalized_upper_bound"] >= best - slack
        assert s["penalized_objective"] <= best + slack
        assert s["penalized_objective"] + penalty * s["previous_slots"] >= (
            0.99 * exact.objective - slack)


def test_compare_counts_changed_lists(tmp_path):
    free, _ = _run(tmp_path / "free", "--previous-run", str(_run(tmp_path / "w0")[0]))
    kept, _ = _run(tmp_path / "kept", change_penalty=0.2)
    result = CliRunner().invoke(main, ["compare", str(free), str(kept), "--json", "--no-html"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert [r["lists_changed_vs_last_week"] for r in runs] == [0, 1]


def test_check_recomputes_the_stability_figures(tmp_path):
    run, manifest = _run(tmp_path, change_penalty=0.2)
    manifest["stability"]["changed_lists"] = 0
    (run / "manifest.json").write_text(json.dumps(manifest))
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert report.rules == {"stability"}, report.describe()
