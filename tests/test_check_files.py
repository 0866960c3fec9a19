"""``offeropt check`` fails on a run folder that lacks a file the run writes (rule
``missing_output``, optimizer/check/files.py), naming each missing file; a whole folder passes,
and so do the forms the contract allows (CSV copies only; no controls from a run without a
control group made before controls existed; no pacing without flights).

One small demo (the 300-customer world of tests/test_check_published.py) is planned once; each
test deletes files of a private copy of its run folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from tests.tiny_world import planned_demo, write_scenario

# what `offeropt run` writes for this world, each required (no holdout: controls are empty but
# written, and required once one copy is there; no flight: no pacing)
REQUIRED = ("manifest.json", "report.html", "assignments.parquet", "assignments.csv",
            "offers_summary.parquet", "offers_summary.csv", "controls.parquet", "controls.csv")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return planned_demo(tmp_path_factory.mktemp("files"), 4)


@pytest.fixture()
def copy(world, tmp_path) -> Path:
    shutil.copytree(world, tmp_path / "w")
    return tmp_path / "w"


def _check(root: Path, scenario: str = "scenario.toml"):
    return CliRunner().invoke(main, ["check", str(root / scenario)])


def _missing(output: str) -> list[str]:
    """The ``[missing_output]`` lines of check's report."""
    return [line for line in output.splitlines() if "[missing_output]" in line]


def test_the_run_writes_every_required_file_and_passes(copy):
    names = {p.name for p in (copy / "run").iterdir()}
    assert set(REQUIRED) <= names, sorted(names)
    result = _check(copy)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", REQUIRED)
def test_each_missing_file_fails_naming_it(copy, name):
    (copy / "run" / name).unlink()
    result = _check(copy)
    assert result.exit_code == 1, result.output
    lines = _missing(result.output)
    assert len(lines) == 1 and name in lines[0], result.output


def test_every_missing_file_is_named(copy):
    for name in ("manifest.json", "report.html", "offers_summary.csv"):
        (copy / "run" / name).unlink()
    result = _check(copy)
    assert result.exit_code == 1, result.output
    lines = "\n".join(_missing(result.output))
    assert all(name in lines for name in ("manifest.json", "report.html", "offers_summary.csv"))


def test_a_csv_only_folder_needs_its_csv_copies(copy):
    """The contract's CSV-only form passes; in it, a missing CSV copy fails, and a Parquet copy
    left behind makes the folder a two-copy one again (its missing twins are named)."""
    run = copy / "run"
    for path in run.glob("*.parquet"):
        if path.name != "customers.parquet":
            path.unlink()
    assert _check(copy).exit_code == 0
    saved = (run / "offers_summary.csv").read_bytes()
    (run / "offers_summary.csv").unlink()
    result = _check(copy)
    assert result.exit_code == 1 and "offers_summary.csv" in "\n".join(_missing(result.output))
    (run / "offers_summary.csv").write_bytes(saved)
    pl.read_csv(run / "controls.csv").write_parquet(run / "controls.parquet")
    result = _check(copy)
    assert result.exit_code == 1, result.output
    named = "\n".join(_missing(result.output))
    assert "assignments.parquet" in named and "offers_summary.parquet" in named, result.output


def test_controls_are_optional_without_a_control_group(copy):
    """A run of a version before controls (no copy at all) is not blamed without a holdout."""
    for name in ("controls.parquet", "controls.csv"):
        (copy / "run" / name).unlink()
    result = _check(copy)
    assert result.exit_code == 0, result.output


def test_pacing_is_required_when_a_flight_covers_the_week(demo_500, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_500, data)
    offers = pl.read_parquet(data / "offers.parquet")
    first = pl.int_range(pl.len()) == 0
    offers.with_columns(flight_budget=pl.when(first).then(pl.lit(50.0)),
                        flight_start_week=pl.when(first).then(pl.lit(40)),
                        flight_end_week=pl.when(first).then(pl.lit(43))
                        ).write_parquet(data / "offers.parquet")
    scenario = write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 3},
                              solver={"max_iterations": 5})
    result = CliRunner().invoke(main, ["run", str(scenario), "--quiet"])
    assert result.exit_code == 0, result.output
    assert _check(tmp_path).exit_code == 0
    for name in ("pacing.csv", "pacing.parquet"):
        saved = (tmp_path / "run" / name).read_bytes()
        (tmp_path / "run" / name).unlink()
        result = _check(tmp_path)
        assert result.exit_code == 1, result.output
        lines = _missing(result.output)
        assert len(lines) == 1 and name in lines[0], result.output
        (tmp_path / "run" / name).write_bytes(saved)
