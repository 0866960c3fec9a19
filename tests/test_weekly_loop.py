"""The weekly loop (issue 8): the frequency window across weeks, and appending a run to ``history``.

- the window rule (``max_offers_per_window`` over ``window_weeks``, counted from ``history``)
  changes the plan, and ``check`` agrees;
- ``--append-history`` keeps the table's format (CSV text, Parquet types) and extra columns,
  creates ``history.parquet`` when there is none, refuses a week twice unless ``--replace-week``,
  and leaves inputs untouched without the flag;
- a failing writer leaves the old history intact and no temporary file;
- three consecutive weeks on a synthetic folder: each passes ``check_run`` and no customer exceeds
  the window across weeks, counted from the final history table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

import optimizer.io.history as history_mod
from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.core.errors import InputError
from optimizer.io.history import LOCK_NAME, append_history, check_history_week
from tests.tiny_world import (
    base_world,
    offer,
    offers_of,
    score,
    tree_bytes,
    write_scenario,
    write_world,
)

WEEK = 40


@pytest.fixture(autouse=True)
def _no_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report page is not under test here and costs seconds per run: write a stub."""
    monkeypatch.setattr("optimizer.apps.pipeline.render_report", lambda result: "<html></html>",
                        raising=False)


def _world(history: list[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Customers 1..4, offers 1..3 (BAKERY, DAIRY, SNACKS) scored for everybody, value = offer."""
    world = base_world()
    world["offers"] = [offer(1, "BAKERY"), offer(2, "DAIRY"), offer(3, "SNACKS")]
    world["scores"] = [score(c, o, value=float(o)) for c in range(1, 5) for o in (1, 2, 3)]
    if history is not None:
        world["history"] = history
    return world


def _setup(root: Path, world: dict[str, list[dict[str, Any]]], fmt: str = "csv",
           rules: dict[str, Any] | None = None) -> Path:
    write_world(root / "data", world, fmt)
    return write_scenario(root / "scenario.toml",
                          rules={"max_offers_per_customer": 3, **(rules or {})})


def _history(data: Path) -> pl.DataFrame:
    found = sorted(data.glob("history.*"))
    assert len(found) == 1, found
    path = found[0]
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)


# --------------------------------------------------------------------------------------------------
# the rule


def test_frequency_window_changes_the_plan_and_check_agrees(tmp_path):
    history = [
        {"customer_id": 1, "offer_id": 1, "week": 38},   # in the window (weeks 38..39)
        {"customer_id": 1, "offer_id": 2, "week": 39},
        {"customer_id": 2, "offer_id": 1, "week": 37},   # before the window
        {"customer_id": 3, "offer_id": 1, "week": 40},   # the planning week: not counted
    ]
    path = _setup(tmp_path, _world(history))
    free = run_scenario(load_scenario(path), write=False)
    assert free.assignments.height == 12
    ruled_scenario = load_scenario(path, ("rules.max_offers_per_window=3", "rules.window_weeks=3"))
    ruled = run_scenario(ruled_scenario)
    assert offers_of(ruled.assignments, 1) == {3}              # 2 in history + 1 = 3, the best
    assert offers_of(ruled.assignments, 2) == {1, 2, 3}
    assert offers_of(ruled.assignments, 3) == {1, 2, 3}
    caps = ruled.manifest["eligibility_audit"]["caps"]
    assert caps == {"customers_limited_by_window": 1, "customers_at_window_cap": 0}
    assert check_run(ruled_scenario).ok
    # the free plan breaks the window rule, and check says so
    free_out = f"output='{tmp_path / 'free'}'"
    free_run = run_scenario(load_scenario(path, (free_out,)))
    report = check_run(load_scenario(path, (free_out, "rules.max_offers_per_window=3",
                                            "rules.window_weeks=3")), free_run.output, force=True)
    assert report.rules == {"frequency_window"}
    assert any("rules.max_offers_per_window" in note for note in report.notes)


# --------------------------------------------------------------------------------------------------
# appending to history


def test_append_keeps_csv_text_and_extra_columns(tmp_path):
    rows = [{"customer_id": 1, "offer_id": 1, "week": 30, "channel": "email"},
            {"customer_id": 99, "offer_id": 7, "week": 31, "channel": None}]  # gone: kept as is
    path = _setup(tmp_path, _world(rows))
    data = tmp_path / "data"
    before = (data / "history.csv").read_text()
    result = run_scenario(load_scenario(path), append_history=True)
    assert result.history_appended == result.assignments.height == 12
    # no temporary file left; the lock file beside the table stays (optimizer/io/history.py)
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(("history", ".history"))) \
        == [".history.lock", "history.csv"]
    after = (data / "history.csv").read_text()
    assert after.startswith(before)            # the old rows, byte for byte
    table = pl.read_csv(data / "history.csv")
    assert table.columns == ["customer_id", "offer_id", "week", "channel"]
    new = table.filter(pl.col("week") == WEEK)
    assert new.height == 12 and new.get_column("channel").null_count() == 12
    assert set(new.select("customer_id", "offer_id").iter_rows()) == set(
        result.assignments.select("customer_id", "offer_id").iter_rows())


def test_append_keeps_parquet_types_and_extra_columns(tmp_path):
    path = _setup(tmp_path, _world())
    data = tmp_path / "data"
    old = pl.DataFrame({"customer_id": pl.Series([1, 2], dtype=pl.Int32),
                        "offer_id": pl.Series([1, 3], dtype=pl.Int64),
                        "week": pl.Series([38, 39], dtype=pl.Int16),
                        "channel": ["email", "app"], "cost": [0.5, 1.5]})
    old.write_parquet(data / "history.parquet")
    result = run_scenario(load_scenario(path), append_history=True)
    table = pl.read_parquet(data / "history.parquet")
    assert table.schema == old.schema
    assert table.head(2).equals(old)
    new = table.slice(2)
    assert new.height == result.assignments.height
    assert new.get_column("week").unique().to_list() == [WEEK]
    assert new.get_column("channel").null_count() == new.height
    assert new.get_column("cost").null_count() == new.height


def test_append_creates_history_parquet_when_there_is_none(tmp_path):
    path = _setup(tmp_path, _world(), fmt="csv")
    result = run_scenario(load_scenario(path), append_history=True)
    table = pl.read_parquet(tmp_path / "data" / "history.parquet")
    assert table.columns == ["customer_id", "offer_id", "week"]
    assert table.height == result.assignments.height
    assert table.get_column("week").dtype == pl.Int64


def test_same_week_refused_before_planning_then_replaced(tmp_path):
    path = _setup(tmp_path, _world([{"customer_id": 1, "offer_id": 1, "week": 30}]))
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(path), "--append-history", "--quiet"])
    assert first.exit_code == 0, first.output
    snapshot = tree_bytes(tmp_path)
    again = runner.invoke(main, ["run", str(path), "--append-history", "--quiet"])
    assert again.exit_code == 2
    message = " ".join(again.output.split())
    assert "table 'history'" in message and "column 'week'" in message
    assert "week 40" in message and "--replace-week" in message
    assert tree_bytes(tmp_path) == snapshot            # nothing planned, nothing written
    with pytest.raises(InputError):
        check_history_week(tmp_path / "data", WEEK)
    # replace the week with a plan of one offer per customer
    replaced = runner.invoke(main, ["run", str(path), "--append-history", "--replace-week",
                                    "--quiet", "--set", "rules.max_offers_per_customer=1"])
    assert replaced.exit_code == 0, replaced.output
    table = _history(tmp_path / "data")
    assert table.height == 1 + 4
    assert table.filter(pl.col("week") == WEEK).select("customer_id", "offer_id").sort(
        "customer_id").rows() == [(1, 3), (2, 3), (3, 3), (4, 3)]
    # week-40 rows do not count against week 40, nor make history another input for check
    assert check_run(load_scenario(path, ("rules.max_offers_per_customer=1",))).ok
    said = runner.invoke(main, ["run", str(path), "--append-history", "--replace-week",
                                "--set", "rules.max_offers_per_customer=1"],
                         env={"COLUMNS": "300"})
    assert said.exit_code == 0, said.output
    assert "replaced that week's rows" in said.output and "appended" not in said.output


def test_replace_week_needs_append_history(tmp_path):
    path = _setup(tmp_path, _world())
    result = CliRunner().invoke(main, ["run", str(path), "--replace-week"])
    assert result.exit_code == 2 and "--append-history" in result.output


def test_inputs_untouched_without_the_flag(tmp_path):
    path = _setup(tmp_path, _world([{"customer_id": 1, "offer_id": 1, "week": 39}]), "parquet")
    before = tree_bytes(tmp_path / "data")
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert tree_bytes(tmp_path / "data") == before


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_failing_writer_leaves_history_intact_and_no_temp_file(tmp_path, monkeypatch, fmt):
    write_world(tmp_path, _world([{"customer_id": 1, "offer_id": 1, "week": 39}]), fmt)
    before = tree_bytes(tmp_path)

    def half_write(frame: pl.DataFrame, path: Path, file_format: str) -> None:
        path.write_bytes(b"customer_id,offer_id,we")   # a torn write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(history_mod, "_write_frame", half_write)
    assignments = pl.DataFrame({"customer_id": [1, 2], "offer_id": [2, 3]})
    with pytest.raises(OSError, match="disk full"):
        append_history(tmp_path, assignments, WEEK)
    # same files, same bytes, no temp file (the lock file beside the table stays, empty)
    assert {k: v for k, v in tree_bytes(tmp_path).items() if k != LOCK_NAME} == before
    assert [p.name for p in tmp_path.glob(".*")] == [LOCK_NAME]


# --------------------------------------------------------------------------------------------------
# three weeks in a row


def test_three_week_loop_obeys_the_window_across_weeks(tmp_path):
    data = tmp_path / "data"
    write_demo_data(data, customers=400, offers=25, seed=3)
    n_cap, w_weeks, cooldown = 6, 3, 2
    path = write_scenario(tmp_path / "scenario.toml", rules={
        "max_offers_per_customer": 4, "max_offers_per_category": 1, "cooldown_weeks": cooldown,
        "max_offers_per_window": n_cap, "window_weeks": w_weeks})
    original = pl.read_parquet(data / "history.parquet")
    weeks = (40, 41, 42)
    limited = 0
    for week in weeks:
        scenario = load_scenario(path, (f"week={week}", f"output='{tmp_path / f'week-{week}'}'"))
        result = run_scenario(scenario, append_history=True)
        assert result.assignments.height > 0
        limited += result.manifest["eligibility_audit"]["caps"]["customers_limited_by_window"]
        report = check_run(scenario)
        assert report.ok, report.describe()
    assert limited > 0                                  # the window did bind

    table = pl.read_parquet(data / "history.parquet")
    assert table.schema == original.schema
    assert table.height == original.height + sum(
        pl.read_parquet(tmp_path / f"week-{w}" / "assignments.parquet").height
        for w in weeks)
    assert table.filter(pl.col("week") < 40).equals(original)
    # rows naming offers that no longer exist are ignored by every rule (CONTRACT.md)
    known = table.join(pl.read_parquet(data / "offers.parquet").select("offer_id"), on="offer_id",
                       how="semi")
    for week in weeks:
        sent = known.filter(pl.col("week") == week)
        window = (known.filter(pl.col("week").is_between(week - w_weeks + 1, week))
                  .join(sent.select("customer_id").unique(), on="customer_id")
                  .group_by("customer_id").len())
        assert window.get_column("len").max() <= n_cap, week
        earlier = known.filter(pl.col("week").is_between(week - cooldown, week - 1))
        assert sent.join(earlier, on=["customer_id", "offer_id"]).height == 0, week
