"""``simulate.json`` and the simulation's page: the seeds' results side by side.

Per strategy: each total over the quarter as a list with one value per seed, in seed order
(``incremental_margin``, ``spend``, ...; stock figures such as ``customers_retained`` and
``customer_equity`` are the last week's), and per week each series' mean over seeds with a 95%
interval of that mean (Student's t over seeds; a single seed gives the value itself). Nothing in
the file depends on the clock or the machine, so a seed's file is the same byte for byte.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from optimizer.apps.simulate.loop import SERIES, SeedResult
from optimizer.apps.simulate.world import MARGIN_RATE

STOCKS = ("customers_retained", "customer_equity", "incremental_customer_equity",
          "contact_fatigue")  # a state at the end of the quarter, not a flow to be summed
HEADLINE = ("incremental_margin", "incremental_sales", "redemptions", "spend", "planned_spend",
            "sends", "customers_retained", "customer_equity", "contact_fatigue")
EQUAL_SPEND = (
    "Budgets are on expected cost (p_redeem x discount). Every strategy prices its sends with the "
    "same p_redeem (the product's scoring fitted on the strategy's own tables) under the same "
    "offer budgets and global budget: customer_first, popular and random through the solver, "
    "offer_first by filling each offer's budget in score order. The plans therefore spend the "
    "same expected budget wherever budgets bind; planned_spend is each plan's expected cost, "
    "spend the discounts actually redeemed in the world.")


def _interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (axis 0) and its 95% interval."""
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def _total(series: list[float], name: str) -> float:
    return float(series[-1]) if name in STOCKS else float(np.sum(series))


def summarise(results: list[SeedResult], settings: dict[str, Any]) -> dict[str, Any]:
    """The content of ``simulate.json`` (module docstring)."""
    strategies = list(results[0].series)
    out: dict[str, Any] = {"settings": settings, "weeks": results[0].weeks,
                           "seeds": [r.seed for r in results], "strategies": {}}
    for s in strategies:
        entry: dict[str, Any] = {}
        for name in SERIES:
            entry[name] = [round(_total(r.series[s][name], name), 6) for r in results]
        weekly = {}
        for name in SERIES:
            values = np.array([r.series[s][name] for r in results])
            mean, low, high = _interval(values)
            weekly[name] = {"mean": np.round(mean, 6).tolist(), "low": np.round(low, 6).tolist(),
                            "high": np.round(high, 6).tolist()}
        entry["weekly"] = weekly
        totals = {}
        for name in HEADLINE:
            mean, low, high = _interval(np.array(entry[name], float)[:, None])
            totals[name] = {"mean": round(float(mean[0]), 6), "low": round(float(low[0]), 6),
                            "high": round(float(high[0]), 6)}
        entry["total"] = totals
        out["strategies"][s] = entry
    base = {name: np.round(np.array([r.baseline[name] for r in results]).mean(axis=0),
                           6).tolist() for name in ("customers_retained", "customer_equity")}
    out["no_offers"] = {"weekly_mean": base}
    out["comparisons"] = _comparisons(out["strategies"])
    return out


def _comparisons(strategies: dict[str, Any]) -> dict[str, Any]:
    """customer_first against each other strategy, seed by seed, on incremental margin."""
    if "customer_first" not in strategies:
        return {}
    first = np.array(strategies["customer_first"]["incremental_margin"])
    out = {}
    for other, entry in strategies.items():
        if other == "customer_first":
            continue
        diff = first - np.array(entry["incremental_margin"])
        out[f"customer_first_vs_{other}"] = {
            "incremental_margin_difference": np.round(diff, 6).tolist(),
            "wins": int((diff > 0).sum()), "seeds": int(diff.size)}
    return out


def settings_record(scenario_name: str, customers: int, offers: int, weeks: int,
                    strategies: tuple[str, ...], seeds: list[int], scenario: dict[str, Any]
                    ) -> dict[str, Any]:
    """The run's settings as recorded in ``simulate.json``."""
    return {"scenario_name": scenario_name, "customers": customers, "offers": offers,
            "weeks": weeks, "strategies": list(strategies), "seeds": seeds,
            "margin_rate": MARGIN_RATE, "equal_spend": EQUAL_SPEND,
            "incremental": "the strategy's world minus the world without offers, both driven "
                           "by the same random draws (common random numbers per seed and week)",
            "scenario": scenario}


def render_page(summary: dict[str, Any]) -> str:
    """The self-contained HTML page: the weekly curves (means over seeds) and the totals."""
    from optimizer.report import charts
    from optimizer.report.page import environment

    weeks = summary["weeks"]
    curves = {}
    for name in ("incremental_margin", "incremental_sales", "redemptions", "spend",
                 "customers_retained", "customer_equity", "contact_fatigue"):
        series = {s: e["weekly"][name]["mean"] for s, e in summary["strategies"].items()}
        if name in ("customers_retained", "customer_equity"):
            series["no offers"] = summary["no_offers"]["weekly_mean"][name]
        curves[name] = charts.line_chart(weeks, series, name.replace("_", " "), "week",
                                         "mean over seeds")
    names = list(summary["strategies"])
    totals = [summary["strategies"][s]["total"]["incremental_margin"] for s in names]
    chart = charts.interval_chart(names, [t["mean"] for t in totals], [t["low"] for t in totals],
                                  [t["high"] for t in totals],
                                  "incremental margin over the quarter (95% interval over seeds)")
    return environment().get_template("simulate.html").render(
        s=summary, curves=curves, chart=chart, headline=HEADLINE)
