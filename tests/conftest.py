"""Fixtures shared by the test modules."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from tests.flight_runs import cost_by_offer, flight_scenario
from tests.tiny_world import WEEK


@pytest.fixture(scope="session")
def demo_500(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 500-customer, 30-offer demo input folder (seed 0), written once for the session.
    Read-only: a test that changes inputs copies it first."""
    root = tmp_path_factory.mktemp("demo-500")
    result = CliRunner().invoke(main, ["demo-data", str(root / "data"), "--customers", "500",
                                       "--offers", "30", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return root / "data"


EARLIER_SCENARIO = """name = "earlier"
week = 40
data = "data"
output = "out"
[rules]
max_offers_per_customer = 5
max_offers_per_category = 1
cooldown_weeks = 4
global_budget = 15000
[solver]
seed = 0
"""


@pytest.fixture()
def earlier(demo_500: Path, tmp_path: Path) -> Path:
    """A scenario (``tmp_path / "s.toml"``) on a copy of the demo_500 folder whose output folder
    (``tmp_path / "out"``) holds an earlier run; returns the scenario path. For the tests that
    interrupt a later run (Ctrl-C, SIGTERM) and check that nothing of it was changed."""
    shutil.copytree(demo_500, tmp_path / "data")
    path = tmp_path / "s.toml"
    path.write_text(EARLIER_SCENARIO)
    result = CliRunner().invoke(main, ["run", str(path), "--quiet",
                                       "--set", "solver.max_iterations=2"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def free_week_costs(demo_500: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[int, float]:
    """Each offer's expected cost in the demo_500 run of week 40 without a flight."""
    root = tmp_path_factory.mktemp("free-week")
    result = CliRunner().invoke(main, ["run", str(flight_scenario(root, demo_500)), "--quiet"])
    assert result.exit_code == 0, result.output
    return cost_by_offer(root / f"run-{WEEK}")
