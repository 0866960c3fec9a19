"""``offeropt simulate``: the closed loop on a small world, end to end through the CLI.

One 500-customer x 20-offer x 3-week simulation of the four strategies (with ``--check``, so
every week's plan of every strategy passed ``offeropt check`` or the run exits 1) is made once for
the module and read by the tests; determinism and the measurement of the true uplift run their own
smaller worlds. Those that simulate are marked slow (tens of seconds each on a shared machine);
the argument checks and the world's common random numbers are quick.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.measure import Settings, measure_runs
from optimizer.apps.simulate import world as W
from optimizer.cli import main

SCENARIO = str(Path(__file__).resolve().parents[1] / "scenarios" / "simulate.toml")
STRATEGIES = ("customer_first", "offer_first", "popular", "random")


def _simulate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["simulate", SCENARIO, "--quiet", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default world, small: 500 customers x 20 offers x 3 weeks, seed 0, checked weekly."""
    root = tmp_path_factory.mktemp("simulate")
    code, output = _simulate("--customers", "500", "--offers", "20", "--weeks", "3",
                             "--seeds", "1", "--check", "--out", str(root / "out"))
    assert code == 0, output
    return json.loads((root / "out" / "simulate.json").read_text())


@pytest.mark.slow
def test_every_week_of_every_strategy_passes_check_and_the_file_has_its_figures(small) -> None:
    # --check ran offeropt check on all 3 x 4 plans: exit 0 means none broke a rule
    assert small["weeks"] == [40, 41, 42]
    for name in STRATEGIES:
        entry = small["strategies"][name]
        for key in ("incremental_margin", "spend", "incremental_sales", "redemptions",
                    "customers_retained", "customer_equity", "contact_fatigue"):
            assert len(entry[key]) == 1 and np.isfinite(entry[key][0]), (name, key)
        for key in ("incremental_sales", "incremental_margin", "redemptions", "spend",
                    "customers_retained", "customer_equity", "contact_fatigue"):
            weekly = entry["weekly"][key]
            assert len(weekly["mean"]) == 3 and weekly["low"] == weekly["mean"]  # one seed
        assert entry["sends"][0] > 0 and entry["redemptions"][0] > 0


@pytest.mark.slow
def test_strategies_plan_the_same_spend(small) -> None:
    planned = {s: small["strategies"][s]["planned_spend"][0] for s in STRATEGIES}
    first = planned["customer_first"]
    assert all(abs(v - first) <= 0.1 * first for v in planned.values()), planned


@pytest.mark.slow
def test_customer_first_beats_offer_first_on_the_default_world(small) -> None:
    cf = small["strategies"]["customer_first"]["incremental_margin"][0]
    of = small["strategies"]["offer_first"]["incremental_margin"][0]
    assert cf > of, (cf, of)
    assert small["comparisons"]["customer_first_vs_offer_first"]["wins"] == 1


@pytest.mark.slow
def test_popular_spends_like_the_others_when_lists_are_short(tmp_path: Path) -> None:
    """One ranking for everyone cut to each customer's best k would list the same k offers for
    all and leave the other offers' budgets unspent: popular lists every allowed offer."""
    code, output = _simulate("--customers", "400", "--offers", "20", "--weeks", "1", "--seeds",
                             "1", "--strategies", "customer_first,popular", "--set",
                             "affinity.candidates_per_customer=3", "--out", str(tmp_path / "o"))
    assert code == 0, output
    planned = json.loads((tmp_path / "o" / "simulate.json").read_text())["strategies"]
    first, popular = (planned[s]["planned_spend"][0] for s in ("customer_first", "popular"))
    assert abs(popular - first) <= 0.1 * first, (first, popular)


@pytest.mark.slow
def test_same_seed_same_bytes_with_any_number_of_workers(tmp_path: Path) -> None:
    args = ["--customers", "300", "--offers", "15", "--weeks", "2", "--seeds", "1",
            "--strategies", "customer_first,offer_first"]
    # b plans each week's two strategies side by side in worker processes, checked there
    for name, extra in (("a", []), ("b", ["--workers", "2", "--check"])):
        code, output = _simulate(*args, *extra, "--out", str(tmp_path / name))
        assert code == 0, output
    a, b = ((tmp_path / n / "simulate.json").read_bytes() for n in ("a", "b"))
    assert a == b
    code, output = _simulate(*args, "--first-seed", "1", "--out", str(tmp_path / "c"))
    assert code == 0, output
    assert (tmp_path / "c" / "simulate.json").read_bytes() != a  # another seed, another world


@pytest.mark.slow
def test_measure_recovers_the_true_uplift(tmp_path: Path) -> None:
    """With a universal control, `offeropt measure` on a simulated week's run and the world's
    own tables estimates the incremental sales per treated customer that the world knows."""
    worlds = tmp_path / "worlds"
    code, output = _simulate("--customers", "3000", "--offers", "20", "--weeks", "1",
                             "--seeds", "1", "--strategies", "customer_first",
                             "--set", "measurement.holdout_share=0.5", "--worlds", str(worlds),
                             "--out", str(tmp_path / "out"))
    assert code == 0, output
    result = json.loads((tmp_path / "out" / "simulate.json").read_text())
    truth = result["strategies"]["customer_first"]["weekly"]["true_incremental_sales_per_treated"]
    truth = truth["mean"][0]
    folder = worlds / "seed0" / "customer_first"
    measured = measure_runs([folder / "runs" / "week40"], folder / "data",
                            Settings(weeks=1, bootstrap=400))["total"]
    assert measured["control_customers"] > 100 and measured["treated_customers"] > 100
    assert truth > 0
    assert measured["ci_low"] <= truth <= measured["ci_high"], (truth, measured)


@pytest.mark.slow
def test_treated_customers_are_the_treated_arm_measure_counts(tmp_path: Path) -> None:
    """Half the pairs withheld by the per-offer control: some customers lose every planned send.
    simulate counts them treated as ``offeropt measure`` does (intention to treat, one function:
    :func:`optimizer.apps.measure.program_arm`), so its treated customers are measure's."""
    worlds = tmp_path / "worlds"
    code, output = _simulate("--customers", "600", "--offers", "20", "--weeks", "1",
                             "--seeds", "1", "--strategies", "customer_first",
                             "--set", "measurement.holdout_share=0.2",
                             "--set", "measurement.offer_holdout_share=0.5",
                             "--worlds", str(worlds), "--out", str(tmp_path / "out"))
    assert code == 0, output
    result = json.loads((tmp_path / "out" / "simulate.json").read_text())
    treated = result["strategies"]["customer_first"]["treated_customers"][0]
    folder = worlds / "seed0" / "customer_first"
    run = folder / "runs" / "week40"
    sent = pl.read_parquet(run / "assignments.parquet").get_column("customer_id").n_unique()
    assert treated > sent  # customers whose every send was withheld are in the arm
    measured = measure_runs([run], folder / "data", Settings(weeks=1, bootstrap=20))["total"]
    assert measured["treated_customers"] == treated


def test_common_random_numbers_a_send_only_adds_purchases() -> None:
    """Same draws with and without sends: in the first week no customer buys less with offers,
    and a world without sends is the world without offers exactly."""
    truth, _ = W.build_truth(3, 400, 12)
    u, w, rng = W.week_draws(truth, 40)
    v = W.send_draws(rng, truth, 12)
    none = np.zeros(0, np.int64)
    base = W.step(truth, W.State.start(400), 40, none, none, (u, w, v))
    again = W.step(truth, W.State.start(400), 40, none, none, (u, w, v))
    assert base.lines.equals(again.lines)
    c = np.repeat(np.arange(400), 3)
    o = np.tile(np.arange(3), 400)
    sent = W.step(truth, W.State.start(400), 40, c, o, (u, w, v))

    def per_customer(out: W.WeekOutcome) -> np.ndarray:
        return np.bincount(out.lines.get_column("c").to_numpy(), minlength=400,
                           weights=out.lines.get_column("sales_value").to_numpy())
    gain = per_customer(sent) - per_customer(base)
    assert (gain >= -1e-9).all() and gain.sum() > 0
    assert sent.redemptions_count > 0 and sent.cost > 0


def test_writes_into_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "sim"
    code, output = _simulate("--customers", "60", "--offers", "6", "--weeks", "1", "--seeds",
                             "1", "--strategies", "offer_first", "--out", str(out))
    assert code == 0, output
    assert json.loads((out / "simulate.json").read_text())["weeks"] == [40]
    assert sorted(p.name for p in out.parent.iterdir()) == ["sim"]  # no working folder left


TINY = ("--customers", "50", "--weeks", "1", "--seeds", "1")  # quick, if it is not refused


@pytest.mark.parametrize("args, words", [
    (["--strategies", "customer_first,best_guess"], "best_guess"),
    (["--strategies", "random,random"], "twice"),
    # an empty entry was dropped silently (exit 0, the others simulated)
    (["--strategies", "customer_first,,random", *TINY], "--strategies"),
    (["--strategies", "random,", *TINY], "empty entry"),
    (["--weeks", "0"], "weeks"),
    (["--customers", "0"], "customers"),
    (["--seeds", "0"], "seeds"),
    (["--workers", "0"], "workers"),
    # weeks 999,999 .. 1,000,001: past the week knobs' range, which `run` refuses (it was run)
    (["--weeks", "3", "--set", "week=999999", "--customers", "50", "--strategies", "random"],
     "1,000,000"),
])
def test_bad_arguments_exit_2(args: list[str], words: str) -> None:
    code, output = _simulate("--offers", "5", *args)
    assert code == 2 and words in output, output


def test_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, output = _simulate("--customers", "50", "--offers", "5", "--weeks", "1",
                             "--out", str(tmp_path / "mine"))
    assert code == 2 and "did not write" in output, output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "worlds").mkdir()
    (tmp_path / "worlds" / "x").write_text("")
    code, output = _simulate("--customers", "50", "--offers", "5", "--weeks", "1",
                             "--worlds", str(tmp_path / "worlds"))
    assert code == 2 and "--worlds" in output, output


@pytest.mark.parametrize("made", [True, False])
def test_a_scenario_refused_mid_simulation_leaves_no_worlds_or_result(tmp_path: Path,
                                                                      made: bool) -> None:
    """rules.contact_budget needs channel tables the simulated worlds lack: the first week's plan
    refuses it (exit 2). The --worlds folder is left as it was found (it kept the half-made
    world, so the same command then refused the folder as not empty), and --out is not made."""
    worlds = tmp_path / "worlds"
    if not made:
        worlds.mkdir()
    code, output = _simulate("--customers", "60", "--offers", "6", "--weeks", "2", "--seeds",
                             "1", "--strategies", "random", "--set", "rules.contact_budget=5",
                             "--worlds", str(worlds), "--out", str(tmp_path / "out"))
    assert code == 2 and "contact_budget" in output, output
    assert worlds.exists() == (not made) and (made or not any(worlds.iterdir()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if made else ["worlds"])


def test_a_memory_limit_exits_4_as_run_does(tmp_path: Path) -> None:
    """The run's memory estimate over solver.memory_limit_gb is exit 4 (out of memory) for
    simulate too; it was exit 2, every OptimizerError read as bad input."""
    code, output = _simulate("--customers", "2000", "--offers", "20", "--weeks", "1", "--seeds",
                             "1", "--strategies", "random", "--set",
                             "solver.memory_limit_gb=0.001", "--out", str(tmp_path / "out"))
    assert code == 4, output
    assert "memory_limit_gb" in output and not (tmp_path / "out").exists()


def test_worlds_inside_out_is_refused_before_simulating(tmp_path: Path) -> None:
    """--out is replaced whole by the result: --worlds inside it was simulated in full and then
    the result refused (exit 2 after the work, the worlds lost with it); now exit 2 at once.
    A --worlds folder inside a run's folder is refused too (the run's next week deletes it)."""
    out = tmp_path / "out"
    code, output = _simulate("--customers", "50", "--offers", "5", "--weeks", "1", "--seeds",
                             "1", "--strategies", "random", "--out", str(out),
                             "--worlds", str(out / "worlds"))
    assert code == 2 and "overlap" in output, output
    assert not out.exists()
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"package_version": "0", "scenario": {}, "objective": 0}')
    code, output = _simulate("--customers", "50", "--offers", "5", "--weeks", "1",
                             "--worlds", str(run / "worlds"))
    assert code == 2 and "a run's output (manifest.json)" in " ".join(output.split()), output
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]
