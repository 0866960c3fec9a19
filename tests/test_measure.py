"""``offeropt measure``, ``measure --power`` and ``demo-outcomes`` (issue 19).

One small demo world (3,000 customers x 30 offers) is planned twice: without controls, and with
a 10% universal and a 10% per-offer control. The plan does not depend on the controls (they are
withheld after planning, optimizer/model/holdout.py), so other salts' splits of the same plan are made
here by withholding from the plan without controls; a test checks that this gives exactly what
the pipeline writes.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.measure import Settings, measure_runs, power_plan
from optimizer.apps.outcomes import simulate_outcomes
from optimizer.cli import main
from optimizer.core.config import Measurement
from optimizer.core.errors import InputError
from optimizer.model.holdout import offer_controls, universal_controls
from tests.tiny_world import tree_bytes

BOTH = ("measurement.holdout_share=0.1", "measurement.offer_holdout_share=0.1")


def _invoke(*args: str) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("measure")
    result = _invoke("demo-data", root / "data", "--customers", "3000", "--offers", "30",
                     "--seed", "0")
    assert result.exit_code == 0, result.output
    (root / "s.toml").write_text(
        'name = "m"\nweek = 40\ndata = "data"\noutput = "runs/plain"\n'
        "[rules]\nmax_offers_per_customer = 5\nmax_offers_per_category = 1\n"
        "cooldown_weeks = 4\n[solver]\nmax_iterations = 5\n")
    for name, sets in (("plain", ()), ("both", BOTH)):
        args = ["run", root / "s.toml", "--quiet", "--set", f"output={root / 'runs' / name}"]
        for text in sets:
            args += ["--set", text]
        result = _invoke(*args)
        assert result.exit_code == 0, result.output
    return root


def split(world: Path, name: str, measurement: Measurement) -> Path:
    """The plan without controls, withheld for ``measurement`` (as optimizer/model/holdout.py does)."""
    plain = world / "runs" / "plain"
    run = world / "runs" / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(plain, run)
    a = pl.read_parquet(plain / "assignments.parquet")
    reached = a.get_column("customer_id").unique().sort()
    held = reached.filter(pl.Series(universal_controls(reached, measurement)))
    rest = a.filter(~pl.col("customer_id").is_in(held.implode()))
    pair = pl.Series(offer_controls(rest.get_column("customer_id"), rest.get_column("offer_id"),
                                    measurement))
    offer_type = a.schema["offer_id"]
    controls = pl.concat([
        pl.DataFrame({"customer_id": held,
                      "offer_id": pl.Series([None] * held.len(), dtype=offer_type)}),
        rest.filter(pair).select("customer_id", "offer_id"),
    ]).sort("customer_id", "offer_id", nulls_last=False).with_columns(
        week=pl.lit(40, pl.Int64),
        reason=pl.when(pl.col("offer_id").is_null()).then(pl.lit("universal_holdout"))
        .otherwise(pl.lit("offer_holdout")))
    rest.filter(~pair).write_parquet(run / "assignments.parquet")
    controls.write_parquet(run / "controls.parquet")
    for stale in ("assignments.csv", "controls.csv"):
        (run / stale).unlink(missing_ok=True)
    return run


def test_split_of_the_plan_is_what_the_pipeline_writes(world: Path):
    run = split(world, "split", Measurement(holdout_share=0.1, offer_holdout_share=0.1))
    both = world / "runs" / "both"
    keys = ["customer_id", "offer_id"]
    for table in ("assignments", "controls"):
        ours = pl.read_parquet(run / f"{table}.parquet")
        theirs = pl.read_parquet(both / f"{table}.parquet")
        columns = keys + (["week", "reason"] if table == "controls" else [])
        assert ours.select(columns).sort(keys, nulls_last=False).equals(
            theirs.select(columns).sort(keys, nulls_last=False)), table


def test_demo_outcomes_refuses_an_input_folder(world: Path):
    """OUT = the data folder would replace its transactions and redemptions with the outcome
    weeks: exit 2 before anything is simulated, the folder left byte for byte."""
    before = tree_bytes(world / "data")
    result = _invoke("demo-outcomes", world / "data", world / "runs" / "both", world / "data",
                     "--weeks", "1", "--seed", "1")
    assert result.exit_code == 2, result.output
    assert "input folder" in " ".join(result.output.split())
    assert tree_bytes(world / "data") == before


def test_measure_cli_writes_json_and_page(world: Path, tmp_path: Path):
    out = tmp_path / "outcomes"
    result = _invoke("demo-outcomes", world / "data", world / "runs" / "both", out,
                     "--weeks", "2", "--lift", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"transactions.parquet", "redemptions.parquet",
                                               "truth.json"}
    report = tmp_path / "report"
    result = _invoke("measure", world / "runs" / "both", "--outcomes", out, "--weeks", "2",
                     "--out", report, "--bootstrap", "300", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    written = json.loads((report / "measure.json").read_text())
    assert printed == written
    total = written["total"]
    for key in ("incremental_sales_per_customer", "ci_low", "ci_high", "treated_customers",
                "control_customers", "mde_sales_per_customer"):
        assert total[key] is not None, key
    controls = pl.read_parquet(world / "runs" / "both" / "controls.parquet")
    assert total["control_customers"] == controls.filter(
        pl.col("reason") == "universal_holdout").height
    assert total["treated_customers"] == _program_arm(world / "runs" / "both")[1]
    assert total["ci_low"] < 5 < total["ci_high"] and total["significant"]
    assert total["ci_low"] < total["incremental_sales_per_customer"] < total["ci_high"]
    # every offer with a per-offer control is measured, each arm counted
    per_offer = {e["offer_id"]: e for e in written["per_offer"]}
    counts = controls.filter(pl.col("reason") == "offer_holdout").group_by("offer_id").len()
    for offer, n in counts.iter_rows():
        assert per_offer[offer]["control_customers"] == n
    assert written["runs"][0]["weeks"] == [40, 41]
    page = (report / "measure.html").read_text()
    assert "<svg" in page and "Lift in sales per customer" in page and "id=\"per-offer\"" in page
    # the same seed gives the same answer
    again = _invoke("measure", world / "runs" / "both", "--outcomes", out, "--weeks", "2",
                    "--out", tmp_path / "again", "--bootstrap", "300", "--no-html")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "measure.json").read_text() == (
        report / "measure.json").read_text()
    assert not (tmp_path / "again" / "measure.html").exists()


def _whole(text: str) -> str:
    return " ".join(text.split())


def test_measure_refuses_to_write_into_a_run_folder(world: Path, tmp_path: Path):
    """A run replaces its folder whole: measure.json or a page written into it (or a folder
    inside it) was deleted by the next run into that folder. Refused, exit 2 before measuring,
    the run folder left byte for byte; likewise demo-outcomes' OUT (audit29 b)."""
    outcomes = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", outcomes, 1, 1.0, 0)
    run = world / "runs" / "both"
    before = tree_bytes(run)
    base = ["measure", run, "--outcomes", outcomes, "--weeks", "1", "--bootstrap", "20"]
    for extra in (["--out", run], ["--out", run / "measured"],
                  ["--out", tmp_path / "m", "--html", run / "measure.html"]):
        result = _invoke(*base, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert "a run's output (manifest.json)" in _whole(result.output), result.output
        assert tree_bytes(run) == before
    assert not (tmp_path / "m").exists()
    result = _invoke("demo-outcomes", world / "data", run, run / "outcomes", "--weeks", "1")
    assert result.exit_code == 2 and "a run's output" in _whole(result.output), result.output
    assert tree_bytes(run) == before


def test_measure_writes_both_files_or_neither(world: Path, tmp_path: Path):
    """A page that cannot be written (no folder can be made under /proc) left measure.json
    written beside it; the contract says both or neither. Now: exit 3, no measure.json."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    outcomes = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", outcomes, 1, 1.0, 0)
    report = tmp_path / "report"
    result = _invoke("measure", world / "runs" / "both", "--outcomes", outcomes, "--weeks", "1",
                     "--bootstrap", "20", "--out", report, "--html", "/proc/offeropt-page.html")
    assert result.exit_code == 3, result.output
    assert not (report / "measure.json").exists()
    assert [p.name for p in report.iterdir()] == []   # no temporary file left either


def test_demo_outcomes_writes_its_three_files_or_none(world: Path, tmp_path: Path, monkeypatch):
    """transactions, redemptions and truth.json were written one after the other: a failure at
    the last (disk full) left new transactions and redemptions beside the old truth.json. Now
    all three are staged first: a failure leaves the earlier outcomes byte for byte."""
    import errno

    import optimizer.apps.outcomes as outcomes

    out = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", out, 1, 1.0, 0)
    before = tree_bytes(out)

    def full_disk(data):
        def write(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write
    monkeypatch.setattr(outcomes, "json_writer", full_disk)
    result = _invoke("demo-outcomes", world / "data", world / "runs" / "both", out,
                     "--weeks", "2", "--seed", "5")
    assert result.exit_code == 3, result.output
    assert tree_bytes(out) == before


def _program_arm(run: Path) -> tuple[int, int]:
    """Customers sent an offer, and those plus the ones whose every planned send was withheld
    by the per-offer control (the total's treated arm, by intention to treat)."""
    sent = set(pl.read_parquet(run / "assignments.parquet").get_column("customer_id").to_list())
    withheld = set(pl.read_parquet(run / "controls.parquet")
                   .filter(pl.col("reason") == "offer_holdout").get_column("customer_id").to_list())
    return len(sent), len(sent | withheld)


def test_customers_whose_sends_were_all_withheld_stay_treated(world: Path, tmp_path: Path):
    """Half the pairs held out: some customers lose every planned send. They stay in the total's
    treated arm (intention to treat), and demo-outcomes puts its lift on that arm, so the lift
    measured is the lift put in."""
    run = split(world, "half", Measurement(holdout_share=0.1, offer_holdout_share=0.5))
    sent, program = _program_arm(run)
    assert program > sent
    out = tmp_path / "outcomes"
    truth = simulate_outcomes(world / "data", run, out, 2, 5.0, 2)
    assert truth["treated_customers"] == program
    total = measure_runs([run], out, Settings(weeks=2, bootstrap=300))["total"]
    assert total["treated_customers"] == program
    assert total["ci_low"] < 5.0 < total["ci_high"]


def _drop_reason(run: Path) -> None:
    path = run / "controls.parquet"
    pl.read_parquet(path).drop("reason").write_parquet(path)


@pytest.mark.parametrize("table, column, break_run", [
    ("controls", "reason", _drop_reason),
    ("controls", None, lambda run: (run / "controls.parquet").write_bytes(b"not parquet")),
    ("assignments", None, lambda run: (run / "assignments.parquet").write_bytes(b"not parquet")),
])
def test_measure_and_demo_outcomes_read_a_runs_arms_through_one_reader(
        world: Path, tmp_path: Path, table, column, break_run):
    """``measure`` and ``demo-outcomes`` read a run's assignments and controls with one reader
    (:func:`optimizer.io.runview.read_run_arm`): a broken table is the same error from both,
    naming the table and column."""
    run = tmp_path / "run"
    shutil.copytree(world / "runs" / "both", run)
    break_run(run)
    with pytest.raises(InputError) as measured:
        measure_runs([run], world / "data", Settings(weeks=1, bootstrap=10))
    with pytest.raises(InputError) as simulated:
        simulate_outcomes(world / "data", run, tmp_path / "out", 1, 1.0, 0)
    assert (measured.value.table, measured.value.column) == (table, column)
    assert str(simulated.value) == str(measured.value)
    assert not (tmp_path / "out").exists()


def test_pooled_over_runs_counts_both_and_page_escapes(world: Path, tmp_path: Path):
    out = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", out, 2, 0.0, 3)
    one = measure_runs([world / "runs" / "both"], out, Settings(weeks=2, bootstrap=200))
    # another run of the same plan, as of another customers table (two runs of one week for one
    # customers table are refused: the same customers twice)
    again = tmp_path / "again"
    shutil.copytree(world / "runs" / "both", again)
    manifest = json.loads((again / "manifest.json").read_text())
    manifest["inputs"]["customers"]["sha256"] = "0" * 64
    (again / "manifest.json").write_text(json.dumps(manifest))
    two = measure_runs([world / "runs" / "both", again], out, Settings(weeks=2, bootstrap=200))
    assert two["total"]["treated_customers"] == 2 * one["total"]["treated_customers"]
    assert two["total"]["incremental_sales_per_customer"] == pytest.approx(
        one["total"]["incremental_sales_per_customer"])
    assert len(two["runs"]) == 2
    from optimizer.apps.measure import render_measure
    two["settings"]["outcomes"] = "<script>alert(1)</script>"
    page = render_measure(two)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_demo_outcomes_checks_the_input_rows(world: Path, tmp_path: Path):
    """demo-outcomes read DATA's tables unchecked: a NaN discount was simulated into the
    outcomes (exit 0). The inputs' row checks: exit 2 naming the table and column, OUT unwritten."""
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    offers = pl.read_parquet(data / "offers.parquet")
    offers.with_columns(pl.lit(float("nan")).alias("discount")).write_parquet(
        data / "offers.parquet")
    result = _invoke("demo-outcomes", data, world / "runs" / "both", tmp_path / "out")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "table 'offers', column 'discount'" in _whole(result.output), result.output
    assert not (tmp_path / "out").exists()


def test_demo_outcomes_checks_the_optional_offer_products_rows(world: Path, tmp_path: Path):
    """demo-outcomes read ``offer_products`` unchecked: an empty product_id was drawn into the
    outcomes' redemption lines, whose transactions ``measure`` then refused (exit 2 there,
    exit 0 here). The inputs' row checks: exit 2 naming the table and column, OUT unwritten."""
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    listed = pl.read_parquet(data / "offer_products.parquet")
    listed.with_columns(pl.lit(None, dtype=listed.schema["product_id"]).alias("product_id")
                        ).write_parquet(data / "offer_products.parquet")
    result = _invoke("demo-outcomes", data, world / "runs" / "both", tmp_path / "out",
                     "--lift", "5")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "table 'offer_products', column 'product_id'" in _whole(result.output), result.output
    assert not (tmp_path / "out").exists()


def test_demo_outcomes_are_deterministic_and_controls_redeem_nothing(world: Path,
                                                                     tmp_path: Path):
    run = world / "runs" / "both"
    for name in ("a", "b"):
        simulate_outcomes(world / "data", run, tmp_path / name, 2, 4.0, 7)
    for table in ("transactions.parquet", "redemptions.parquet", "truth.json"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()
    red = pl.read_parquet(tmp_path / "a" / "redemptions.parquet")
    sent = pl.read_parquet(run / "assignments.parquet").select("customer_id", "offer_id")
    assert red.join(sent, on=["customer_id", "offer_id"], how="anti").height == 0
    assert red.get_column("week").is_between(40, 41).all()
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    # the extra sales are exactly the redemptions times the value per redemption
    tx = pl.read_parquet(tmp_path / "a" / "transactions.parquet")
    zero = tmp_path / "zero"
    simulate_outcomes(world / "data", run, zero, 2, 0.0, 7)
    base = pl.read_parquet(zero / "transactions.parquet")
    assert tx.get_column("sales_value").sum() - base.get_column("sales_value").sum() == (
        pytest.approx(red.height * truth["sales_per_redemption"]))


@pytest.mark.parametrize("table, column, edit", [
    ("transactions", "sales_value", lambda f: f.drop("sales_value")),
    ("transactions", "sales_value", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("sales_value"))
        .alias("sales_value"))),
    ("transactions", "week", lambda f: f.with_columns(pl.col("week").cast(pl.Utf8)
                                                     .replace("40", "forty"))),
    ("redemptions", "offer_id", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("offer_id"))
        .alias("offer_id"))),
    ("redemptions", None, None),
    # the inputs' row checks (optimizer.io.validate.check_rows): these were measured, every
    # result null (1e300) or silently
    ("transactions", "sales_value", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(1e300).otherwise(pl.col("sales_value"))
        .alias("sales_value"))),
    ("transactions", "discount", lambda f: f.with_columns(pl.lit(float("nan")).alias("discount"))),
    ("redemptions", "week", lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(2**62).otherwise(pl.col("week")).alias("week"))),
])
def test_bad_outcome_tables_exit_2_naming_table_and_column(world: Path, tmp_path: Path, table,
                                                           column, edit):
    out = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", out, 2, 1.0, 0)
    frame = pl.read_parquet(out / f"{table}.parquet")
    (out / f"{table}.parquet").unlink()
    if edit is not None:
        frame = edit(frame)
        if frame.schema.get("week") == pl.Utf8:
            frame.write_csv(out / f"{table}.csv")
        else:
            frame.write_parquet(out / f"{table}.parquet")
    result = _invoke("measure", world / "runs" / "both", "--outcomes", out, "--out",
                     tmp_path / "report")
    assert result.exit_code == 2, result.output
    assert f"table '{table}'" in result.output
    if column:
        assert f"column '{column}'" in result.output
    assert not (tmp_path / "report").exists()


def test_power_gives_the_least_holdout_share():
    plan = power_plan(20.0, 1.0, 0.05, 0.8, customers=20_000)
    k = 1.959963984540054 + 0.8416212335729143
    se = lambda control: 20.0 * math.sqrt(1 / control + 1 / (20_000 - control))  # noqa: E731
    control = plan["control_customers"]
    assert k * se(control) <= 1.0 < k * se(control - 1)
    assert plan["customers_per_arm_equal_split"] == math.ceil(2 * (k * 20.0) ** 2)
    assert power_plan(20.0, 1.0, customers=5_000)["holdout_share"] is None
    result = _invoke("measure", "--power", "--baseline-sd", "20", "--effect", "1",
                     "--customers", "20000", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["control_customers"] == control
    result = _invoke("measure", "--power", "--effect", "1")
    assert result.exit_code == 2 and "--baseline-sd" in result.output


@pytest.mark.parametrize("column, value", [("week", None), ("sales_value", float("nan"))])
def test_power_from_data_checks_the_transactions_rows(world: Path, tmp_path: Path, column,
                                                      value):
    """--data DIR read its tables unchecked: an empty week crashed (int(None), exit 70) and a NaN
    sale gave a NaN spread. The inputs' row checks: exit 2 naming the table and column."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(world / "data" / "customers.parquet", data)
    tx = pl.read_parquet(world / "data" / "transactions.parquet")
    tx.with_columns(pl.when(pl.col("week") == pl.col("week").max()).then(value)
                    .otherwise(pl.col(column)).alias(column)).write_parquet(
                        data / "transactions.parquet")
    result = _invoke("measure", "--power", "--effect", "1", "--data", data)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "table 'transactions'" in result.output and f"column '{column}'" in result.output


def test_power_from_data_refuses_more_weeks_than_the_transactions_hold(world: Path):
    """--data DIR --weeks N past the transactions' weeks took the weeks there were and printed
    "sales over N week(s)" with their spread (a 1000-week ask read 26 weeks, exit 0). Like
    measure's own --weeks, that is exit 2 naming the table and the weeks it holds."""
    weeks = pl.read_parquet(world / "data" / "transactions.parquet").get_column("week")
    held = int(weeks.max()) - int(weeks.min()) + 1
    ok = _invoke("measure", "--power", "--effect", "1", "--data", world / "data",
                 "--weeks", held, "--json")
    assert ok.exit_code == 0, ok.output
    result = _invoke("measure", "--power", "--effect", "1", "--data", world / "data",
                     "--weeks", held + 1)
    assert result.exit_code == 2, result.output
    text = _whole(result.output)
    assert "table 'transactions', column 'week'" in text and f"--weeks {held}" in text, text


@pytest.mark.slow
def test_measure_recovers_a_known_lift_in_19_of_20_seeds(world: Path, tmp_path: Path):
    """Issue 19's test: 10% universal holdout, each seed a new split (salt) and new outcome
    weeks; the 95% interval holds the true lift in at least 19 of every 20 seeds, and with no
    lift at most 1 of every 20 seeds reports a significant one.

    The rate is checked over 60 seeds (at least 57 covered, at most 3 significant): over one set
    of 20, even an exactly calibrated 95% interval covers 19 or more only 74% of the time, so a
    verdict on 20 seeds would say more about the seeds than about the interval."""
    covered, significant = 0, 0
    for seed in range(60):
        run = split(world, f"seed{seed}", Measurement(holdout_share=0.1, salt=f"seed-{seed}"))
        for lift in (5.0, 0.0):
            out = tmp_path / f"o{seed}-{lift}"
            simulate_outcomes(world / "data", run, out, 2, lift, seed)
            total = measure_runs([run], out, Settings(weeks=2, bootstrap=500, seed=seed))["total"]
            if lift > 0:
                covered += total["ci_low"] <= lift <= total["ci_high"]
            else:
                significant += total["significant"]
    assert covered >= 57, covered
    assert significant <= 3, significant


def test_text_customer_ids_in_transactions_beside_integer_customers(world: Path, tmp_path: Path):
    """``run`` accepts a folder whose transactions store ``customer_id`` as text beside integer
    customers (load_inputs reads every table's IDs as the master's type). demo-outcomes,
    measure (the pre-period sales) and measure --power --data joined the tables as stored and
    failed (exit 70, a join of text and integer keys). Read as the run read them, they give what
    the integer-typed folder gives."""
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    tx = pl.read_parquet(data / "transactions.parquet")
    tx.with_columns(pl.col("customer_id").cast(pl.Utf8)).write_parquet(
        data / "transactions.parquet")
    run = tmp_path / "run"
    shutil.copytree(world / "runs" / "both", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["scenario"]["data"] = str(data)
    (run / "manifest.json").write_text(json.dumps(manifest))

    for folder, source, target in ((data, run, tmp_path / "text"),
                                   (world / "data", world / "runs" / "both", tmp_path / "int")):
        result = _invoke("demo-outcomes", folder, source, target, "--weeks", "2", "--lift", "3")
        assert result.exit_code == 0, (result.output, result.exception)
        result = _invoke("measure", source, "--outcomes", target, "--out", target / "m",
                         "--no-html", "--bootstrap", "50")
        assert result.exit_code == 0, (result.output, result.exception)
    for name in ("transactions.parquet", "redemptions.parquet", "m/measure.json"):
        text, whole = (tmp_path / "text" / name).read_bytes(), (tmp_path / "int" / name).read_bytes()
        if name.endswith(".json"):  # the runs' folders differ; every figure is the same
            text, whole = (json.loads(b)["total"] for b in (text, whole))
        assert text == whole, name
    powers = [_invoke("measure", "--power", "--effect", "1", "--data", folder, "--json")
              for folder in (data, world / "data")]
    assert [p.exit_code for p in powers] == [0, 0], powers[0].output
    figures = [{k: v for k, v in json.loads(p.output).items()
                if k != "baseline_sd_from"} for p in powers]
    assert figures[0] == figures[1]


def test_one_run_folder_given_twice_exits_2(world: Path, tmp_path: Path):
    """``measure runs/both runs/both`` (a shell glob repeating a folder) counted the run's
    customers twice: treated and incremental_sales_total doubled, exit 0. Refused, exit 2
    naming the folder, nothing written."""
    out = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", out, 2, 0.0, 3)
    run = world / "runs" / "both"
    result = _invoke("measure", run, run.parent / "." / "both", "--outcomes", out,
                     "--out", tmp_path / "m")
    assert result.exit_code == 2, result.output
    assert "is given twice" in _whole(result.output) and str(run) in _whole(result.output)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("copy", ["copy", "rerun"])
def test_two_runs_of_the_same_week_for_the_same_customers_exit_2(world: Path, tmp_path: Path,
                                                                  copy: str):
    """A copy of a run folder, or another run of the same week for the same customers table
    (another rule), measured the same customers against the same outcome weeks twice: treated
    and incremental_sales_total doubled, exit 0. Refused, exit 2 naming both folders, nothing
    written."""
    out = tmp_path / "outcomes"
    simulate_outcomes(world / "data", world / "runs" / "both", out, 2, 0.0, 3)
    run = world / "runs" / "both"
    other = tmp_path / "other"
    shutil.copytree(run, other)
    if copy == "rerun":
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["scenario"]["rules"]["max_offers_per_customer"] = 4
        (other / "manifest.json").write_text(json.dumps(manifest))
    result = _invoke("measure", run, other, "--outcomes", out, "--out", tmp_path / "m")
    assert result.exit_code == 2, result.output
    text = _whole(result.output)
    assert "same week 40 for the same customers" in text, text
    assert str(run) in text and str(other) in text, text
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("table", ["customers", "offers"])
def test_demo_outcomes_refuses_data_that_is_not_the_runs_inputs(world: Path, tmp_path: Path,
                                                                 table: str):
    """DATA is the run's input folder: another folder's customers or offers (a larger demo,
    another week's offers) simulated outcomes from other purchases and discounts, exit 0. Their
    SHA-256 against the run's manifest.json: exit 2 naming the table, OUT unwritten."""
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    pl.read_parquet(data / f"{table}.parquet").reverse().write_parquet(data / f"{table}.parquet")
    result = _invoke("demo-outcomes", data, world / "runs" / "both", tmp_path / "out")
    assert result.exit_code == 2, (result.output, result.exception)
    text = _whole(result.output)
    assert f"table '{table}'" in text and "is not the input folder of the run" in text, text
    assert not (tmp_path / "out").exists()


def test_demo_outcomes_are_the_same_bytes_from_a_csv_folder(world: Path, tmp_path: Path):
    """The same inputs as CSV files plan the same week; their outcome weeks were other bytes
    (outcome IDs as text, and each redemption's product drawn from a list in text order), as
    demo-outcomes read the CSV's IDs as stored where run reads plain integers as integers."""
    data = tmp_path / "data"
    data.mkdir()
    for path in (world / "data").glob("*.parquet"):
        pl.read_parquet(path).write_csv(data / f"{path.stem}.csv")
    run = tmp_path / "run"
    result = _invoke("run", world / "s.toml", "--quiet", "--set", f"data={data}",
                     "--set", f"output={run}", *[a for s in BOTH for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert (run / "assignments.parquet").read_bytes() == (
        world / "runs" / "both" / "assignments.parquet").read_bytes()
    for folder, source, target in ((data, run, tmp_path / "csv"),
                                   (world / "data", world / "runs" / "both", tmp_path / "pq")):
        result = _invoke("demo-outcomes", folder, source, target, "--weeks", "2", "--lift", "3")
        assert result.exit_code == 0, (result.output, result.exception)
    for name in ("transactions.parquet", "redemptions.parquet", "truth.json"):
        assert (tmp_path / "csv" / name).read_bytes() == (tmp_path / "pq" / name).read_bytes(), name
