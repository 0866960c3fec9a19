"""The figures of a run's ``manifest.json`` against its files and inputs, for ``offeropt check``
(rule ``manifest``; :mod:`optimizer.check.outputs` lists what they are)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.check.base import ROUNDING, Violation, _fmt, _numbers, read_precision
from optimizer.check.campaign_figures import campaign_figure_problems
from optimizer.check.channels import contact_cost
from optimizer.core.config import Scenario
from optimizer.core.numerics import BINDING_PRICE
from optimizer.io.validate import Inputs

FIGURE_RTOL, FIGURE_ATOL = 1e-9, 1e-9      # manifest figures == recomputed


def _figure(manifest: dict[str, Any], key: str) -> float | None:
    value = manifest.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_manifest(manifest: dict[str, Any], a: pl.DataFrame, inputs: Inputs,
                   summary: tuple[pl.DataFrame, Path] | None = None,
                   scenario: Scenario | None = None) -> list[Violation]:
    """The manifest's figures against the assignments (``a`` as :func:`indexed_assignments`),
    the inputs and, when given, an ``offers_summary`` file (its frame and path) and the
    scenario (for the campaign figures, :mod:`optimizer.check.campaign_figures`)."""
    problems = []
    objective, bound, gap = (_figure(manifest, k) for k in ("objective", "upper_bound", "gap"))
    scores = a.get_column("score").cast(pl.Float64)
    total, scale = float(scores.sum()), float(scores.abs().sum())
    rounded = float(a.get_column(ROUNDING).sum())  # what reading the scores may have lost
    contact = contact_cost(a, inputs)  # with channels the objective pays each contact
    total -= contact
    for key, value in (("objective", objective), ("upper_bound", bound), ("gap", gap)):
        if value is None or not np.isfinite(value):
            problems.append(f"{key} is {manifest.get(key)!r}, not a finite number")
    if objective is not None and np.isfinite(objective):
        if abs(objective - total) > (FIGURE_RTOL * max(scale, abs(objective)) + FIGURE_ATOL
                                     + rounded):
            problems.append(f"objective {_fmt(objective)} is not the sum of the assignments' "
                            f"scores{' less their contact costs' if contact else ''}, "
                            f"{_fmt(total)}")
    if (objective is not None and bound is not None and gap is not None
            and all(np.isfinite(v) for v in (objective, bound, gap))):
        if objective > bound + FIGURE_RTOL * max(abs(bound), abs(objective)) + FIGURE_ATOL:
            problems.append(f"objective {_fmt(objective)} exceeds upper_bound {_fmt(bound)}")
        expected = max(0.0, (bound - objective) / bound) if bound > 0 else 0.0
        if abs(gap - expected) > FIGURE_RTOL * abs(expected) + FIGURE_ATOL:
            problems.append(f"gap {_fmt(gap)} is not max(0, (upper_bound - objective) / "
                            f"upper_bound) = {_fmt(expected)}")
    counts = {"customers_reached": a.get_column("customer_id").n_unique(),
              "customers": inputs.n_customers, "offers": inputs.n_offers}
    for key, expected_count in counts.items():
        if key in manifest and manifest[key] != expected_count:
            problems.append(f"{key} is {manifest[key]!r}, the run's files and inputs give "
                            f"{expected_count}")
    problems += _redemptions_problems(manifest, a)
    if summary is not None:
        problems += _binding_problems(manifest, *summary)
    problems += _shortfall_problems(manifest, a, inputs)
    problems += _input_count_problems(manifest, inputs)
    problems += _contract_field_problems(manifest)
    problems += _status_problems(manifest, scenario)
    if scenario is not None:
        problems += campaign_figure_problems(manifest, a, inputs, scenario)
    return [Violation("manifest", f"manifest.json: {p}", 1) for p in problems]


# docs/contract.md, "Solver status": every status a run may record (check imports no solver)
SOLVER_STATUSES = ("optimal", "iteration_limit", "time_limit", "stalled")


def _contract_field_problems(manifest: dict[str, Any]) -> list[str]:
    """The contract's fields beyond the figures checked above: the solver's ``status`` (one of
    :data:`SOLVER_STATUSES`), ``method`` (text) and ``iterations`` (a whole number >= 0),
    ``seconds`` per stage (numbers >= 0) and the ``package_version`` (text); a manifest without
    them passed."""
    solver = manifest.get("solver")
    solver = solver if isinstance(solver, dict) else {}
    seconds = manifest.get("seconds")
    found = {
        "solver.status": solver.get("status"),
        "solver.method": solver.get("method"),
        "solver.iterations": solver.get("iterations"),
        "seconds": seconds,
        "package_version": manifest.get("package_version"),
    }
    fits = {
        "solver.status": lambda v: v in SOLVER_STATUSES,
        "solver.method": lambda v: isinstance(v, str) and v != "",
        "solver.iterations": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "seconds": lambda v: isinstance(v, dict) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x >= 0
            for x in v.values()),
        "package_version": lambda v: isinstance(v, str) and v != "",
    }
    what = {"solver.status": f"one of {', '.join(SOLVER_STATUSES)}", "solver.method": "a text", "solver.iterations": "a whole number >= 0",
            "seconds": "an object of seconds >= 0 per stage", "package_version": "a text"}
    return [f"{key} is {found[key]!r}, not {what[key]} (a field of the contract)"
            for key in fits if not fits[key](found[key])]


def _status_problems(manifest: dict[str, Any], scenario: Scenario | None) -> list[str]:
    """``solver.status = "optimal"`` means the gap is within the run's ``gap_tolerance``
    (docs/contract.md, "Solver status"), judged as the solver judged it: the plan before the
    controls' sends were withheld (``measurement.planned_objective``) plus the kept slots' bonus
    of ``rules.change_penalty`` (what the penalised solve maximised; with sends withheld, every
    slot of last week's lists, as the kept ones before withholding are not recorded), against
    ``upper_bound``. The tolerance is the one the run's manifest records (the ``[solver]`` knobs
    are not compared with the scenario given), else the given scenario's. Other statuses claim
    nothing more: one short of its ``min_customers`` targets may stop within the tolerance."""
    solver = manifest.get("solver")
    if not isinstance(solver, dict) or solver.get("status") != "optimal":
        return []
    objective, bound = _figure(manifest, "objective"), _figure(manifest, "upper_bound")
    tolerance = _recorded_tolerance(manifest, scenario)
    if objective is None or bound is None or tolerance is None:
        return []
    measurement = manifest.get("measurement")
    measurement = measurement if isinstance(measurement, dict) else {}
    planned = _figure(measurement, "planned_objective")
    withheld = _figure(measurement, "withheld_sends") or 0.0
    judged = planned if planned is not None and withheld > 0 else objective
    stability = manifest.get("stability")
    stability = stability if isinstance(stability, dict) else {}
    penalty = _figure(stability, "change_penalty") or 0.0
    slots = _figure(stability, "previous_slots" if withheld > 0 else "kept_slots") or 0.0
    judged += penalty * slots
    if not all(np.isfinite(v) for v in (judged, bound)):
        return []
    gap = max(0.0, (bound - judged) / bound) if bound > 0 else 0.0
    if gap <= tolerance * (1 + FIGURE_RTOL) + FIGURE_ATOL:
        return []
    what = ("measurement.planned_objective" if planned is not None and withheld > 0
            else "objective")
    bonus = f" + change_penalty x {int(slots)} slot(s)" if penalty and slots else ""
    return [f"solver.status is 'optimal' but the gap of {what}{bonus} "
            f"({_fmt(judged)}) to upper_bound {_fmt(bound)} is {_fmt(gap)}, above "
            f"solver.gap_tolerance {_fmt(tolerance)} ('optimal' means the gap is within it)"]


def _recorded_tolerance(manifest: dict[str, Any], scenario: Scenario | None) -> float | None:
    """The run's ``solver.gap_tolerance`` as its manifest records it, else ``scenario``'s."""
    recorded = manifest.get("scenario")
    solver = recorded.get("solver") if isinstance(recorded, dict) else None
    value = solver.get("gap_tolerance") if isinstance(solver, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None if scenario is None else float(scenario.solver.gap_tolerance)


def _redemptions_problems(manifest: dict[str, Any], a: pl.DataFrame) -> list[str]:
    """``expected_redemptions`` is the sum of the assignments' ``p_redeem``."""
    if "expected_redemptions" not in manifest:
        return []
    given = _figure(manifest, "expected_redemptions")
    p = a.get_column("p_redeem").cast(pl.Float64)
    total, rounded = float(p.sum()), float(a.get_column(ROUNDING).sum())
    if given is None or not np.isfinite(given):
        return [f"expected_redemptions is {manifest['expected_redemptions']!r}, not a finite "
                "number"]
    if abs(given - total) > FIGURE_RTOL * max(total, abs(given)) + FIGURE_ATOL + rounded:
        return [f"expected_redemptions {_fmt(given)} is not the sum of the assignments' "
                f"p_redeem, {_fmt(total)}"]
    return []


def _binding_problems(manifest: dict[str, Any], frame: pl.DataFrame, path: Path) -> list[str]:
    """``offers_with_binding_budget`` counts the offers of ``offers_summary`` (``frame``, read
    from ``path``) whose ``shadow_price`` is above :data:`BINDING_PRICE` (docs/contract.md, "one
    definition each"); a price printed near the threshold may count either way."""
    given = manifest.get("offers_with_binding_budget")
    if given is None or "shadow_price" not in frame.columns:
        return []
    prices = _numbers(frame.get_column("shadow_price")).fill_null(0.0)
    slack = read_precision(path)
    surely = int((prices - slack > BINDING_PRICE).sum())
    maybe = int((prices + slack > BINDING_PRICE).sum())
    if not isinstance(given, int) or isinstance(given, bool) or not surely <= given <= maybe:
        counted = surely if surely == maybe else f"{surely} to {maybe}"
        return [f"offers_with_binding_budget is {given!r}, {path.name} has {counted} offer(s) "
                f"with a shadow_price above {BINDING_PRICE:g}"]
    return []


def _shortfall_problems(manifest: dict[str, Any], a: pl.DataFrame, inputs: Inputs) -> list[str]:
    listed = manifest.get("min_customers_shortfalls")
    if listed is None:
        return []
    reached = (a.filter(pl.col("o").is_not_null()).group_by("o")
               .agg(customers=pl.len().cast(pl.Int64)))
    expected = (inputs.offers.select("o", "offer_id",
                                     pl.col("min_customers").cast(pl.Int64).fill_null(0))
                .join(reached, on="o", how="left").with_columns(pl.col("customers").fill_null(0))
                .with_columns(shortfall=pl.col("min_customers") - pl.col("customers"))
                .filter(pl.col("shortfall") > 0))
    try:
        given = pl.DataFrame(listed, schema={"offer_id": pl.Utf8, "shortfall": pl.Int64},
                             strict=False)
        given = given.with_columns(pl.col("offer_id").cast(pl.Utf8))
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        return [f"min_customers_shortfalls cannot be read ({exc})"]
    want = sorted((str(r[0]), int(r[1])) for r in expected.select(
        pl.col("offer_id").cast(pl.Utf8), "shortfall").iter_rows())
    have = sorted((str(r[0]), r[1]) for r in given.select("offer_id", "shortfall").iter_rows())
    if want != have:
        return [f"min_customers_shortfalls lists {len(have)} offer(s) short of min_customers, the "
                f"assignments give {len(want)} (first differences: "
                f"{sorted(set(have) ^ set(want))[:3]})"]
    return []


def _input_count_problems(manifest: dict[str, Any], inputs: Inputs) -> list[str]:
    """``inputs.<table>.rows`` of each input whose SHA-256 is the manifest's (the same bytes
    hold as many rows; a history that only gained rows of the planning week differs in both and
    is compared by ``history_before_week_sha256`` instead), and ``dropped_rows`` when every
    input is the same bytes."""
    listed = manifest.get("inputs")
    if not isinstance(listed, dict):
        return []
    problems = []
    same = set()
    for table, entry in sorted(listed.items()):
        if not isinstance(entry, dict) or entry.get("sha256") != inputs.sha256.get(table):
            continue
        same.add(table)
        rows = inputs.row_counts.get(table)
        if entry.get("rows") != rows or isinstance(entry.get("rows"), bool):
            problems.append(f"inputs.{table}.rows is {entry.get('rows')!r}, the table has {rows}")
    dropped = manifest.get("dropped_rows")
    if isinstance(dropped, dict) and same == set(listed) == set(inputs.sha256):
        for key, count in sorted(inputs.dropped.items()):
            if key in dropped and (dropped[key] != count or isinstance(dropped[key], bool)):
                problems.append(f"dropped_rows.{key} is {dropped[key]!r}, the inputs give {count}")
    return problems
