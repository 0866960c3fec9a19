"""``report.html``: the page a planner reads after a run (self-contained, no network)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

if TYPE_CHECKING:
    from .pipeline import RunResult


def _environment() -> Environment:
    return Environment(loader=PackageLoader("optimizer", "templates"),
                       autoescape=select_autoescape(["html"]))


def render_report(result: "RunResult") -> str:
    """Render the run's report: totals, then budget use and reach per offer."""
    summary = result.offers_summary
    manifest = result.manifest
    totals = {
        "objective": manifest["objective"], "upper_bound": manifest["upper_bound"],
        "gap": manifest["gap"], "assignments": result.assignments.height,
        "customers": manifest["customers"],
        "customers_reached": manifest.get("customers_reached", 0),
        "expected_cost": float(summary.get_column("expected_cost").sum()),
        "expected_redemptions": float(summary.get_column("expected_redemptions").sum()),
        "status": manifest["solver"]["status"], "method": manifest["solver"]["method"],
        "iterations": manifest["solver"]["iterations"],
    }
    offers = summary.sort("expected_cost", descending=True).to_dicts()
    return _environment().get_template("report.html").render(
        name=result.scenario.name, week=result.scenario.week, totals=totals, offers=offers,
        audit=manifest["eligibility_audit"], shortfalls=manifest["min_customers_shortfalls"],
        dropped=manifest["dropped_rows"])
