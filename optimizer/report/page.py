"""``report.html``: the page a planner reads after a run (self-contained, no network).

Totals; budget use per offer; reach; value by lifetime-value decile; the eligibility audit by
reason; offers short of ``min_customers``; the shadow price of every binding budget. Charts are
matplotlib SVG inlined in the page (:mod:`optimizer.report.charts`), the page a jinja2 template.
"""
from __future__ import annotations

from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from optimizer import __version__
from optimizer.io.runview import RunOutputs, RunView
from optimizer.report import campaign, charts

BUDGET_CHART_OFFERS = 40  # the budget chart shows this many capped offers, fullest first


def environment() -> Environment:
    """The jinja2 environment of the package's templates (HTML autoescaped)."""
    env = Environment(loader=PackageLoader("optimizer.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.globals["version"] = __version__
    return env


def render_report(result: RunOutputs) -> str:
    """Render the report of a run just made."""
    return render_run_report(RunView.from_result(result))


def run_charts(view: RunView) -> dict[str, str]:
    """The report's charts as SVG text, by name (only those with data to show)."""
    out: dict[str, str] = {}
    capped = (view.offers_summary.filter(pl.col("budget_used").is_not_null())
              .sort(["budget_used", "expected_cost"], descending=True, maintain_order=True)
              .head(BUDGET_CHART_OFFERS))  # ties (unused budgets) in the offers' order
    if capped.height:
        out["budget"] = charts.bar_chart(
            [str(x) for x in capped.get_column("offer_id")],
            {"budget used": (100 * capped.get_column("budget_used")).to_list()},
            f"Budget use, {capped.height} fullest capped offers", xlabel="% of budget",
            horizontal=True, reference=100.0)
    reach = view.offers_per_customer()
    out["reach"] = charts.bar_chart(
        [str(x) for x in reach.get_column("offers")], {"customers": reach.get_column("customers")
                                                        .to_list()},
        "Reach: customers by number of offers", xlabel="offers per customer",
        ylabel="customers")
    deciles = view.value_by_decile()
    if deciles is not None and deciles.height:
        out["deciles"] = charts.bar_chart(
            [str(d) for d in deciles.get_column("clv_decile")],
            {"objective value": deciles.get_column("value").to_list(),
             "expected spend": deciles.get_column("expected_cost").to_list()},
            "Value and spend by lifetime-value decile (10 = highest)",
            xlabel="lifetime-value decile")
    audit = _audit_rows(view.manifest)
    if audit:
        out["audit"] = charts.bar_chart(
            [r["reason"] for r in audit], {"count": [r["count"] for r in audit]},
            "Exclusions by reason", xlabel="pairs (customers for caps)", horizontal=True)
    binding = view.binding_budgets()[:BUDGET_CHART_OFFERS]
    if binding:
        out["shadow"] = charts.bar_chart(
            [str(r["offer_id"]) for r in binding],
            {"shadow price": [r["budget_price"] for r in binding]},
            "Value of one more unit of budget, binding offers", xlabel="objective per unit",
            horizontal=True)
    return out


def _audit_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    audit = manifest.get("eligibility_audit", {})
    rows = [{"reason": k, "count": int(v), "unit": "pairs"}
            for k, v in audit.get("pairs", {}).items() if k not in ("considered", "removed")]
    rows += [{"reason": k, "count": int(v), "unit": "customers"}
             for k, v in audit.get("caps", {}).items()]
    return rows


def render_run_report(view: RunView) -> str:
    """Render ``report.html`` for any run, made now or read back from its folder."""
    m = view.manifest
    prices = m.get("dual_prices", {})
    return environment().get_template("report.html").render(
        name=view.name, week=m.get("scenario", {}).get("week"), totals=view.totals(),
        offers=view.offers_summary.sort("expected_cost", descending=True,
                                        maintain_order=True).to_dicts(),
        audit=_audit_rows(m), audit_pairs=m.get("eligibility_audit", {}).get("pairs", {}),
        shortfalls=m.get("min_customers_shortfalls", []), dropped=m.get("dropped_rows", {}),
        input_warnings=m.get("input_warnings", []),
        deciles=(d.to_dicts() if (d := view.value_by_decile()) is not None else None),
        reach=view.offers_per_customer().to_dicts(), binding=view.binding_budgets(),
        global_price=float(prices.get("global_budget", 0.0)), charts=run_charts(view),
        campaign=campaign.section(m), offer_groups=m.get("offer_groups"),
        funders=m.get("funders"), channels=m.get("channels"),
        contact_budget=m.get("contact_budget"))
