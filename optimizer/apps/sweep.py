"""The budget-to-value curve (``offeropt sweep``): one scenario solved at many ``budget_scale``s.

Each point is solved from a cold start, exactly as ``offeropt run`` solves its scenario, so a
point's figures do not depend on the order of the points. Points are not written as run folders;
the sweep folder holds
``sweep.csv``, ``sweep.json`` (the points and the resolved base scenario) and ``sweep.html`` (the
curve and the table), the same bytes at every re-run, and ``timings.json`` (each point's seconds
per stage, as a run's manifest has them): the clock reaches that file alone.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from optimizer.apps.pipeline import Progress, run_scenario
from optimizer.core.config import MAX_FACTOR, Scenario, scenario_to_dict
from optimizer.core.errors import ScenarioError
from optimizer.io.runfolder import csv_writer, json_writer, write_run_folder
from optimizer.report import charts
from optimizer.report.page import environment

PointCallback = Callable[[int, int, dict[str, Any]], None]


MAX_POINTS = 1000  # each point is a whole solve: a range of more is a typo, not a sweep


def parse_range(text: str) -> list[float]:
    """``START:STOP:STEP`` (STOP included) or a comma list ``0.5,0.8,1`` into scales: finite,
    in ``rules.budget_scale``'s range (0 to ``MAX_FACTOR``), at most ``MAX_POINTS`` of them."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if not all(map(math.isfinite, (start, stop, step))) or step <= 0 or stop < start:
                raise ValueError
            steps = (stop - start) / step  # infinite for a tiny STEP: floor() would overflow
            n = int(math.floor(steps + 1e-9)) + 1 if math.isfinite(steps) else math.inf
            if n > MAX_POINTS:
                raise ScenarioError(f"--budget-scale {text!r}: {n:,} points; a sweep solves at "
                                    f"most {MAX_POINTS:,} (a larger STEP or a shorter range)")
            values = [round(start + k * step, 10) for k in range(int(n))]
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ScenarioError(f"--budget-scale {text!r}: expected START:STOP:STEP with STEP > 0 and "
                            "STOP >= START (e.g. 0.5:1.5:0.1), or a list like 0.6,0.8,1") from None
    if not values:
        raise ScenarioError(f"--budget-scale {text!r}: no scales given (e.g. 0.6,0.8,1)")
    if not all(0 <= v <= MAX_FACTOR for v in values):  # NaN fails both
        raise ScenarioError(f"--budget-scale {text!r}: scales must be numbers from 0 to "
                            f"{MAX_FACTOR:g} (rules.budget_scale's range)")
    if len(values) > MAX_POINTS:
        raise ScenarioError(f"--budget-scale {text!r}: {len(values):,} points; a sweep solves at "
                            f"most {MAX_POINTS:,}")
    return [v + 0.0 for v in values]  # -0.0 is 0


def sweep_budget(scenario: Scenario, scales: list[float], progress: Progress | None = None,
                 on_point: PointCallback | None = None,
                 seconds: list[dict[str, float]] | None = None) -> pl.DataFrame:
    """Solve ``scenario`` at every ``budget_scale`` in ``scales`` (in the order given). Returns one
    row per point; ``seconds``, when given, gets each point's seconds per stage appended (kept out
    of the table, whose bytes a re-run must not change).

    Each point is solved from a cold start, as ``offeropt run`` would solve it: a point's plan is
    the plan its scenario gives, whatever the order or the other points of the sweep.
    """
    rows: list[dict[str, Any]] = []
    for k, scale in enumerate(scales):
        point = scenario.model_copy(update={
            "rules": scenario.rules.model_copy(update={"budget_scale": float(scale)})})
        result = run_scenario(point, progress=progress, write=False)
        prices = result.solution.prices
        s, m = result.offers_summary, result.manifest
        capped = s.filter(pl.col("budget").is_not_null())
        budget = float(capped.get_column("budget").sum()) if capped.height else 0.0
        row = {
            "budget_scale": float(scale), "offer_budgets": budget,
            "objective": m["objective"], "upper_bound": m["upper_bound"], "gap": m["gap"],
            "status": m["solver"]["status"], "iterations": m["solver"]["iterations"],
            "expected_cost": float(s.get_column("expected_cost").sum()),
            "expected_redemptions": float(s.get_column("expected_redemptions").sum()),
            "customers_reached": m["customers_reached"], "assignments": result.assignments.height,
            "offers_with_binding_budget": m["offers_with_binding_budget"],
            "global_budget_price": float(prices.global_budget),
        }
        rows.append(row)
        if seconds is not None:
            seconds.append(dict(m["seconds"]))
        if on_point:
            on_point(k + 1, len(scales), row)
    table = pl.DataFrame(rows)
    objective_step = table.get_column("objective").diff().to_numpy()
    budget_step = table.get_column("offer_budgets").diff().to_numpy()
    moved = np.abs(budget_step) > 1e-9  # the first point and repeated scales have no step
    marginal = pl.Series(np.divide(objective_step, budget_step, out=np.full(moved.size, np.nan),
                                   where=moved))
    return table.with_columns(marginal.fill_nan(None).alias("marginal_value_per_budget"))


def render_sweep(scenario: Scenario, table: pl.DataFrame) -> str:
    """The sweep page: the budget-to-value curve and the points' table."""
    x = table.get_column("budget_scale").to_list()
    chart = charts.line_chart(
        x, {"objective": table.get_column("objective").to_list(),
            "upper bound": table.get_column("upper_bound").to_list()},
        f"Budget to value: {scenario.name}", xlabel="budget_scale (multiplies offer budgets)",
        ylabel="objective", secondary={"expected spend": table.get_column("expected_cost")
                                       .to_list()}, secondary_label="expected spend")
    return environment().get_template("sweep.html").render(
        name=scenario.name, week=scenario.week, rows=table.to_dicts(), chart=chart,
        global_budget=scenario.rules.global_budget)


def write_sweep(out_dir: Path, scenario: Scenario, table: pl.DataFrame,
                seconds: list[dict[str, float]] | None = None) -> None:
    """Write the sweep folder (whole or not at all): sweep.csv, sweep.json, sweep.html and
    timings.json (per point, its ``budget_scale`` and the ``seconds`` per stage of
    :func:`sweep_budget`; an empty dict each when not given)."""
    data = {"scenario": scenario_to_dict(scenario), "points": table.to_dicts()}
    scales = table.get_column("budget_scale").to_list()
    per_point = seconds if seconds is not None else [{} for _ in scales]
    timings = {"points": [{"budget_scale": scale, "seconds": spent}
                          for scale, spent in zip(scales, per_point, strict=True)]}
    write_run_folder(Path(out_dir), {
        "sweep.csv": csv_writer(table),
        "sweep.json": json_writer(data),
        "sweep.html": lambda path: path.write_text(render_sweep(scenario, table), "utf-8"),
        "timings.json": json_writer(timings),
    }, kind="sweep")
