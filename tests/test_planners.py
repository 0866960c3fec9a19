"""Planners' desk: report, compare, sweep, explain, excluded_categories, CLI help.

One small synthetic world is planned twice (baseline and a 20% budget cut) for the whole module.
The browser test renders the pages in headless Chromium and is skipped only when no chromium
binary is installed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from optimizer.apps.explain import explain_customer
from optimizer.apps.pipeline import run_scenario
from optimizer.apps.sweep import parse_range, sweep_budget, write_sweep
from optimizer.apps.synthetic import write_demo_data
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.report.compare import compare_runs, render_compare
from tests.tiny_world import csv_floats_not_at_six_decimals

SCENARIO = """
name = "{name}"
week = 40
data = "data"
output = "runs/{name}"
[rules]
max_offers_per_customer = 3
max_offers_per_category = 1
cooldown_weeks = 4
global_budget = 60
budget_scale = {scale}
sensitive_categories = ["FAMILY PLANNING", "INFANT FORMULA"]
{extra}
[affinity]
model = "heuristic"  # deterministic and fast; explain re-scores and must match the run exactly
[solver]
max_iterations = 12
"""


def _scenario(root: Path, name: str, scale: float = 1.0, extra: str = "") -> Path:
    path = root / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, scale=scale, extra=extra))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planners")
    write_demo_data(root / "data", 300, 25, 3)
    for name, scale in (("base", 1.0), ("cut", 0.8)):
        run_scenario(load_scenario(_scenario(root, name, scale)))
    return root


def test_run_folder_has_customers_and_charted_report(world: Path) -> None:
    import polars as pl
    customers = pl.read_parquet(world / "runs/base/customers.parquet")
    assert customers.columns == ["customer_id", "clv", "clv_decile"]
    assert customers.height == 300 and set(customers["clv_decile"]) == set(range(1, 11))
    html = (world / "runs/base/report.html").read_text()
    for chart in ("chart-reach", "chart-deciles", "chart-audit", "chart-budget"):
        assert re.search(rf'id="{chart}">\s*<svg', html), chart
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)  # nothing fetched
    assert "Shadow prices of binding budgets" in html and "min_customers" in html


def test_binding_and_shadow_price_mean_one_thing(world: Path) -> None:
    """The report's binding table, the manifest's count and offers_summary.shadow_price agree:
    a budget binds when its own dual price is positive (issue 23, item 6)."""
    import polars as pl
    run = world / "runs/cut"
    manifest = json.loads((run / "manifest.json").read_text())
    summary = pl.read_parquet(run / "offers_summary.parquet")
    prices = dict(zip(manifest["dual_prices"]["offer_id"], manifest["dual_prices"]["budget"]))
    for row in summary.iter_rows(named=True):
        expected = prices[row["offer_id"]] if row["budget"] is not None else 0.0
        assert row["shadow_price"] == expected  # the global budget's price is not added in
    positive = summary.filter(pl.col("shadow_price") > 1e-9).height
    assert manifest["offers_with_binding_budget"] == positive > 0
    html = (run / "report.html").read_text()
    table = re.search(r'<table id="binding">(.*?)</table>', html, re.S)
    assert table is not None
    assert table.group(1).count("<tr>") - 1 == positive


def test_compare_two_runs(world: Path, tmp_path: Path) -> None:
    comparison = compare_runs([world / "runs/base", world / "runs/cut"], sample=3)
    assert comparison.labels == ["base", "cut"]
    data = comparison.to_json()
    base, cut = data["runs"]
    assert base["offer_budgets"] > cut["offer_budgets"]
    assert len(comparison.changed) == 1 and len(comparison.changed[0]["sample"]) <= 3
    assert comparison.deciles is not None and comparison.deciles.height == 20
    diffs = comparison.offers.get_column("d_expected_cost_1")
    assert abs(diffs.sum() - (cut["expected_cost"] - base["expected_cost"])) < 1e-6
    html = render_compare(comparison)
    assert html.count("<svg") >= 2 and 'id="chart-totals"' in html
    # IDs keep the input's type (integers here; they were text in the JSON)
    import polars as pl
    assert pl.read_parquet(world / "runs/base/assignments.parquet").schema["offer_id"] == pl.Int64
    assert comparison.offers.schema["offer_id"] == pl.Int64
    assert all(type(r["offer_id"]) is int for r in data["offers"])
    listed = [o for s in comparison.changed[0]["sample"] for o in s["baseline"] + s["run"]]
    assert listed and all(type(o) is int for o in listed)


def test_compare_three_runs_shows_each_runs_changes(world: Path) -> None:
    runs = [world / "runs/base", world / "runs/cut", world / "runs/base"]
    comparison = compare_runs(runs, sample=3)
    offers = comparison.offers
    assert (offers.get_column("d_expected_cost_2") == 0).all()   # the baseline again
    assert (offers.get_column("d_expected_cost_1") != 0).any()   # the cut moved spend
    html = render_compare(comparison)
    assert "change in spend<br>cut" in html
    out = CliRunner(env={"COLUMNS": "400"}).invoke(main, ["compare", *map(str, runs),
                                                          "--no-html"])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.output.splitlines() if "change in spend" in line)
    assert header.count("change in spend") == 2, header


def test_compare_cli_json_and_html(world: Path, tmp_path: Path) -> None:
    page = tmp_path / "cmp.html"
    out = CliRunner().invoke(main, ["compare", str(world / "runs/base"), str(world / "runs/cut"),
                                    "--html", str(page), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["runs"][1]["label"] == "cut" and page.is_file()
    bad = CliRunner().invoke(main, ["compare", str(world / "runs/base"), str(tmp_path)])
    assert bad.exit_code == 2


def test_compare_of_runs_with_integer_and_text_ids(world: Path, tmp_path: Path) -> None:
    """A run of inputs with integer IDs beside one of inputs with text IDs: both ID columns
    compare as text (the offers' did, the customers' join failed with a traceback and exit 1)."""
    import polars as pl
    text = tmp_path / "text"
    shutil.copytree(world / "runs/cut", text)
    for name in ("assignments", "offers_summary", "customers"):
        frame = pl.read_parquet(text / f"{name}.parquet")
        frame = frame.with_columns(pl.col(c).cast(pl.Utf8) for c in ("customer_id", "offer_id")
                                   if c in frame.columns)
        frame.write_parquet(text / f"{name}.parquet")
        if name != "customers":
            frame.write_csv(text / f"{name}.csv", float_precision=6)
    mixed = compare_runs([world / "runs/base", text], sample=3)
    same = compare_runs([world / "runs/base", world / "runs/cut"], sample=3)
    assert mixed.changed[0]["changed_customers"] == same.changed[0]["changed_customers"] > 0
    assert all(type(r["customer_id"]) is str for r in mixed.changed[0]["sample"])
    assert mixed.offers.schema["offer_id"] == pl.Utf8
    out = CliRunner().invoke(main, ["compare", str(world / "runs/base"), str(text), "--no-html"])
    assert out.exit_code == 0, out.output


def _garbage(run: Path) -> None:
    (run / "offers_summary.parquet").write_bytes(b"not parquet")


def _bad_json(run: Path) -> None:
    (run / "manifest.json").write_text("{")


def _no_objective(run: Path) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["objective"]
    (run / "manifest.json").write_text(json.dumps(manifest))


def _no_score(run: Path) -> None:
    import polars as pl
    path = run / "assignments.parquet"
    pl.read_parquet(path).drop("score").write_parquet(path)


@pytest.mark.parametrize("edit, phrase", [(_garbage, "offers_summary.parquet"),
                                          (_bad_json, "manifest.json"),
                                          (_no_objective, "objective"),
                                          (_no_score, "score")],
                         ids=["corrupt-parquet", "bad-json", "no-objective", "no-column"])
def test_compare_of_a_damaged_run_folder_exits_2_naming_the_file(world: Path, tmp_path: Path,
                                                                 edit, phrase) -> None:
    run = tmp_path / "run"
    shutil.copytree(world / "runs/cut", run)
    edit(run)
    out = CliRunner().invoke(main, ["compare", str(world / "runs/base"), str(run), "--no-html"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception   # a message, not a traceback
    text = "".join(out.output.split())   # the terminal wraps long paths mid-word
    assert phrase in text and "".join(str(run).split()) in text


@pytest.mark.parametrize("command", ["explain", "demo-outcomes"])
def test_a_run_folder_with_a_damaged_plan_exits_2_naming_the_file(world: Path, tmp_path: Path,
                                                                  command: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(world / "runs/cut", run)
    (run / "assignments.parquet").write_bytes(b"not parquet")
    args = (["explain", str(world / "cut.toml"), "1", "--run", str(run)] if command == "explain"
            else ["demo-outcomes", str(world / "data"), str(run), str(tmp_path / "out"),
                  "--weeks", "1", "--lift", "1", "--seed", "0"])
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception
    assert "assignments.parquet" in "".join(out.output.split())


def test_sweep_points_do_not_depend_on_their_order(world: Path) -> None:
    scenario = load_scenario(world / "base.toml", ["solver.max_iterations=3"])
    forward = sweep_budget(scenario, [0.5, 1.0]).drop("marginal_value_per_budget")
    backward = sweep_budget(scenario, [1.0, 0.5]).drop("marginal_value_per_budget")
    assert forward.equals(backward.reverse())


def test_sweep_writes_folder(world: Path, tmp_path: Path) -> None:
    assert parse_range("0.5:1.5:0.5") == [0.5, 1.0, 1.5]
    assert parse_range("0.6,1") == [0.6, 1.0]
    scenario = load_scenario(world / "base.toml", ["solver.max_iterations=6"])
    seconds: list[dict[str, float]] = []
    table = sweep_budget(scenario, [0.5, 1.0], seconds=seconds)
    assert table.height == 2 and [set(s) >= {"solve"} for s in seconds] == [True, True]
    assert table["offer_budgets"][1] == pytest.approx(2 * table["offer_budgets"][0])
    assert (table["upper_bound"] >= table["objective"] - 1e-6).all()
    write_sweep(tmp_path / "sw", scenario, table, seconds)
    assert {p.name for p in (tmp_path / "sw").iterdir()} == {"sweep.csv", "sweep.json",
                                                              "sweep.html", "timings.json"}
    # the clock reaches timings.json alone: the same points give the same data files
    write_sweep(tmp_path / "sw", scenario, table, [{"solve": 9.0}, {"solve": 8.0}])
    for name in ("sweep.csv", "sweep.json", "sweep.html"):
        assert "seconds" not in (tmp_path / "sw" / name).read_text(), name
    assert "<svg" in (tmp_path / "sw/sweep.html").read_text()
    # a CSV output prints floats with 6 decimals, as the run folder's (it printed 0.5 and
    # 1239.8050000000003)
    assert csv_floats_not_at_six_decimals(tmp_path / "sw/sweep.csv") == []


@pytest.mark.parametrize("scales", ["nan", "inf", "1e300", "0.5,nan", "0:inf:1", "0:1e9:1",
                                    "0.5:1:nan", ",", "-1,1", "0:1:1e-320"])
def test_sweep_refuses_scales_beyond_budget_scale_or_too_many_points(world: Path, tmp_path: Path,
                                                                      scales: str) -> None:
    """Each scale is a rules.budget_scale (0 to 1e6, finite): NaN and infinity were a traceback
    (exit 1) at the sweep's JSON, 1e300 was solved although `run` refuses it, and 0:1e9:1 set
    out to solve a billion points (0:1:1e-320, infinitely many, an overflow traceback). All exit 2 naming --budget-scale, before anything is solved."""
    out = CliRunner().invoke(main, ["sweep", str(world / "base.toml"), "--budget-scale", scales,
                                    "--out", str(tmp_path / "sw")])
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception
    assert "--budget-scale" in out.output
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("override", ["rules.budget_scale=0.5", " rules.budget_scale = 2"])
def test_sweep_refuses_a_set_of_the_knob_it_sweeps(world: Path, tmp_path: Path,
                                                   override: str) -> None:
    """Each point sets rules.budget_scale: a --set of it was dropped without a word (exit 0,
    the points at the scales given). Exit 2 naming it, before anything is solved."""
    out = CliRunner().invoke(main, ["sweep", str(world / "base.toml"), "--budget-scale", "1",
                                    "--set", override, "--out", str(tmp_path / "sw")])
    assert out.exit_code == 2, (out.output, out.exception)
    assert "--set rules.budget_scale" in out.output and "--budget-scale" in out.output
    assert not (tmp_path / "sw").exists()


def test_sweep_repeated_scale_has_no_marginal_value_and_no_warning(world: Path) -> None:
    import warnings
    assert parse_range("-0.0,1") == [0.0, 1.0] and str(parse_range("-0.0")[0]) == "0.0"
    scenario = load_scenario(world / "base.toml", ["solver.max_iterations=3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide warning was printed amid the progress
        table = sweep_budget(scenario, [0.5, 0.5])
    assert table["marginal_value_per_budget"].to_list() == [None, None]


def test_explain_matches_the_run(world: Path) -> None:
    import polars as pl
    assignments = pl.read_parquet(world / "runs/base/assignments.parquet")
    customer = assignments["customer_id"][0]
    result = explain_customer(load_scenario(world / "base.toml"), str(customer))
    given = {str(r["offer_id"]) for r in result.offers if r["status"] == "given"}
    expected = {str(o) for o in assignments.filter(pl.col("customer_id") == customer)["offer_id"]}
    assert given == expected and not result.warnings
    statuses = {r["status"] for r in result.offers}
    assert statuses <= {"given", "ineligible", "no_value", "not_candidate", "priced_out",
                        "category_cap", "customer_cap", "window_cap", "repair"}
    for r in result.offers:
        if r["status"] == "priced_out":
            assert r["reduced_value"] <= 1e-9
        if r["status"] == "ineligible":
            assert r["why"].startswith("forbidden by ")
    out = CliRunner().invoke(main, ["explain", str(world / "base.toml"), str(customer), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["cap"] == 3
    missing = CliRunner().invoke(main, ["explain", str(world / "base.toml"), "no-such-customer"])
    assert missing.exit_code == 2


def test_explain_warns_when_the_run_was_made_from_other_settings(world: Path) -> None:
    """explain re-derives statuses from the scenario given: against a run made with another
    budget_scale (or cap) it explained silently with the wrong numbers ("5 offers (cap 2)").
    It now warns naming each difference, as check's refusal does (one list,
    optimizer/io/run_match.py); the run's own scenario warns of nothing."""
    import polars as pl
    customer = str(pl.read_parquet(world / "runs/base/assignments.parquet")["customer_id"][0])
    other = explain_customer(load_scenario(world / "cut.toml"), customer, world / "runs/base")
    assert any("rules.budget_scale: the run had 1.0, here 0.8" in w for w in other.warnings), \
        other.warnings
    out = CliRunner().invoke(main, ["explain", str(world / "base.toml"), customer, "--set",
                                    "rules.max_offers_per_customer=2"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stderr.split())
    assert "warning:" in text and "rules.max_offers_per_customer: the run had 3, here 2" in text


def test_explain_says_once_that_an_older_runs_settings_are_unknown(world: Path,
                                                                    tmp_path: Path) -> None:
    """A manifest without 'scenario' (an older one): explain warned that every setting
    differed ("the run had (not set)", one per setting); it now says once that the run's
    settings are unknown, and still names the inputs that differ (none here)."""
    import shutil

    import polars as pl
    run = tmp_path / "old"
    shutil.copytree(world / "runs/base", run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["scenario"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    customer = str(pl.read_parquet(run / "assignments.parquet")["customer_id"][0])
    result = explain_customer(load_scenario(world / "base.toml"), customer, run)
    assert len(result.warnings) == 1, result.warnings
    assert "settings it was made with are unknown" in result.warnings[0]
    assert "older manifest" in result.warnings[0] and "setting " not in result.warnings[0]


def test_excluded_categories_in_eligibility_and_check(world: Path) -> None:
    import polars as pl
    offers = pl.read_parquet(world / "data/offers.parquet")
    banned = offers["category"].drop_nulls()[0]
    path = _scenario(world, "banned", extra=f'excluded_categories = ["{banned.lower()} "]')
    scenario = load_scenario(path)
    result = run_scenario(scenario, write=False)
    assert result.manifest["eligibility_audit"]["pairs"]["excluded_category"] > 0
    banned_ids = set(offers.filter(pl.col("category") == banned)["offer_id"])
    assert not banned_ids & set(result.assignments["offer_id"])
    report = check_run(scenario, world / "runs/base", force=True)  # base: no excluded categories
    base_ids = set(pl.read_parquet(world / "runs/base/assignments.parquet")["offer_id"])
    assert (not report.ok) == bool(banned_ids & base_ids)


def _walk(command: click.Command, path: str = "offeropt"):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    commands = dict(_walk(main))
    for name in ("offeropt run", "offeropt check", "offeropt compare", "offeropt sweep",
                 "offeropt explain", "offeropt demo-data"):
        assert name in commands
    for path, command in commands.items():
        assert (command.help or "").strip(), f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option):  # arguments show in the usage line
                assert (param.help or "").strip(), f"{path} {param.opts} has no help"
        if path != "offeropt":
            assert "Example: offeropt" in command.help, f"{path} has no example"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary installed (.ci/run installs "
                    "Debian's chromium; apt was unavailable here)")
def test_pages_render_charts_in_headless_chromium(world: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread
    compare_page = tmp_path / "compare.html"
    compare_page.write_text(render_compare(compare_runs([world / "runs/base", world / "runs/cut"])))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    for page, minimum in ((world / "runs/base/report.html", 4), (compare_page, 3)):
        dom = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        charts = re.findall(r'<div class="chart" id="chart-[a-z]+">\s*<svg', dom)
        assert len(charts) >= minimum, page
        assert dom.count("<path") > 20  # bars and axes were laid out as SVG paths
        shot = tmp_path / f"{page.stem}.png"
        subprocess.run([_chromium(), *flags, "--window-size=1000,1400", f"--screenshot={shot}",
                        page.as_uri()], capture_output=True, timeout=120, check=True)
        pixels = imread(shot)[..., :3]
        blue = ((abs(pixels[..., 0] - 0x4c / 255) < 0.03) & (abs(pixels[..., 1] - 0x78 / 255) < 0.03)
                & (abs(pixels[..., 2] - 0xa8 / 255) < 0.03))
        assert blue.sum() > 2000, f"{page.name}: no chart bars painted"


@pytest.mark.parametrize("column", ["score", "rank"])
def test_explain_of_a_plan_lacking_a_column_it_reads_exits_2(world: Path, tmp_path: Path,
                                                              column: str) -> None:
    """explain reads each given offer's score and rank from the run's plan: a plan without one
    is a damaged run folder (exit 2 naming the file and column), not a KeyError traceback."""
    import polars as pl

    run = tmp_path / "run"
    shutil.copytree(world / "runs/cut", run)
    plan = pl.read_parquet(run / "assignments.parquet")
    customer = str(plan.get_column("customer_id")[0])
    plan.drop(column).write_parquet(run / "assignments.parquet")
    out = CliRunner().invoke(main, ["explain", str(world / "cut.toml"), customer, "--run",
                                    str(run)])
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception
    text = "".join(out.output.split())
    assert "assignments.parquet" in text and column in text


@pytest.mark.parametrize("key, value", [("scenario", None), ("objective", None),
                                        ("gap", "small"), ("upper_bound", True)])
def test_compare_of_a_manifest_field_of_another_kind_exits_2(world: Path, tmp_path: Path,
                                                             key: str, value: object) -> None:
    """A manifest whose scenario is not an object, or whose objective, bound or gap is not a
    number, is a damaged run folder (exit 2 naming the field), not a traceback."""
    run = tmp_path / "run"
    shutil.copytree(world / "runs/cut", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest[key] = value
    (run / "manifest.json").write_text(json.dumps(manifest))
    out = CliRunner().invoke(main, ["compare", str(world / "runs/base"), str(run), "--no-html"])
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception
    assert key in "".join(out.output.split())


@pytest.mark.parametrize("text", ["{", "[]"], ids=["not-json", "not-an-object"])
def test_explain_of_a_damaged_manifest_exits_2_naming_it(world: Path, tmp_path: Path,
                                                        text: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(world / "runs/cut", run)
    (run / "manifest.json").write_text(text)
    out = CliRunner().invoke(main, ["explain", str(world / "cut.toml"), "1", "--run", str(run)])
    assert out.exit_code == 2, (out.output, out.exception)
    assert isinstance(out.exception, SystemExit), out.exception
    assert "manifest.json" in "".join(out.output.split())
