"""Flight runs through the command line, shared by the single-offer and group flight tests:
the scenario of a week, each offer's expected cost in a run, and a week-by-week loop with
``--append-history``."""
from __future__ import annotations

from pathlib import Path

import polars as pl
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.core.config import load_scenario
from tests.tiny_world import WEEK, write_scenario


def cost_by_offer(run: Path) -> dict[int, float]:
    """Each offer's expected cost in the run folder ``run``."""
    summary = pl.read_parquet(run / "offers_summary.parquet")
    return dict(zip(summary.get_column("offer_id").to_list(),
                    summary.get_column("expected_cost").to_list()))


def flight_scenario(root: Path, data: Path, week: int = WEEK, **rules) -> Path:
    """The scenario of ``week`` on ``data``, its run folder ``root/run-{week}``."""
    return write_scenario(root / f"scenario-{week}.toml", data=str(data),
                          output=str(root / f"run-{week}"), week=week,
                          rules={"max_offers_per_customer": 3, "cooldown_weeks": 2, **rules})


def run_flight_week(path: Path, *extra: str) -> Path:
    """``offeropt run`` of the scenario ``path`` (exit 0 asserted); its run folder."""
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return Path(load_scenario(path).output)


def run_weeks_with_history(root: Path, data: Path, offers: list[int], budget: float,
                           weeks: tuple[int, ...] = (WEEK, WEEK + 1, WEEK + 2)) -> float:
    """Run and check each week with ``--append-history``; the flight's running spend (the
    ``offers``' expected cost) never exceeds ``budget`` and ends within 2% of it."""
    total = 0.0
    for week in weeks:
        path = flight_scenario(root, data, week=week)
        run_flight_week(path, "--append-history")
        checked = CliRunner().invoke(main, ["check", str(path)])
        assert checked.exit_code == 0, checked.output
        costs = cost_by_offer(root / f"run-{week}")
        total += sum(costs[o] for o in offers)
        assert total <= budget * (1 + 1e-9) + 1e-6
    assert total >= 0.98 * budget, (total, budget)
    return total
