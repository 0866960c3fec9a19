"""Planners' side-by-side of runs (``offeropt compare``): reads run folders only.

The first run is the baseline; every other run is compared with it: totals (objective, bound and
gap, expected redemptions and spend, budget use, reach), value by lifetime-value decile, per-offer
changes in reach and spend, and the customers whose offer lists changed (how many, and a sample).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from optimizer.core.errors import OptimizerError
from optimizer.io.runview import RunView
from optimizer.report import charts
from optimizer.report.page import environment

TOTAL_KEYS = ("objective", "upper_bound", "gap", "status", "expected_redemptions",
              "expected_cost", "offer_budget_used", "global_budget_used", "customers_reached",
              "assignments", "offers_with_binding_budget", "min_customers_shortfalls",
              "lists_changed_vs_last_week")
CHART_OFFERS = 25  # the per-offer chart shows the offers whose spend moved most


@dataclass
class Comparison:
    """The side-by-side. ``labels[k]`` names run k; run 0 is the baseline.

    totals: per run, :meth:`RunView.totals`. deciles: long table (run, clv_decile, value,
    expected_cost, reached), None when no run has lifetime values. offers: per offer and run,
    customers and expected_cost, with ``d_customers`` and ``d_expected_cost`` against the baseline.
    changed: per non-baseline run, ``{"run", "changed_customers", "sample": [{customer_id,
    baseline, run}]}``.
    """

    labels: list[str]
    paths: list[str]
    totals: list[dict[str, Any]]
    deciles: pl.DataFrame | None
    offers: pl.DataFrame
    changed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON-able data (for ``--json``)."""
        return {"runs": [{"label": lab, "path": p, **t}
                         for lab, p, t in zip(self.labels, self.paths, self.totals)],
                "deciles": self.deciles.to_dicts() if self.deciles is not None else None,
                "offers": self.offers.to_dicts(), "changed": self.changed}


def _labels(views: Sequence[RunView]) -> list[str]:
    names = [v.name for v in views]
    if len(set(names)) == len(names):
        return names
    return [v.label if names.count(v.name) > 1 else v.name for v in views]


def _id_type(views: Sequence[RunView], column: str) -> pl.DataType:
    """The type of ``column`` (``customer_id`` or ``offer_id``) in the comparison: the runs' own
    when they agree (IDs keep the input's type), else text (runs of inputs with integer IDs and
    of inputs with text IDs: their IDs compare as text, never as a failed join)."""
    types = {t for v in views for t in (v.assignments.schema[column],
                                          *([v.offers_summary.schema[column]]
                                            if column in v.offers_summary.columns else []))
             if t != pl.Null}
    return types.pop() if len(types) == 1 else pl.Utf8()


@dataclass(frozen=True)
class _IdTypes:
    customer: pl.DataType
    offer: pl.DataType


def _offer_lists(view: RunView, ids: _IdTypes) -> pl.DataFrame:
    return (view.assignments.sort(["customer_id", "rank"], maintain_order=True)
            .with_columns(pl.col("customer_id").cast(ids.customer))
            .group_by("customer_id", maintain_order=True)
            .agg(pl.col("offer_id").cast(ids.offer).alias("offers")))


def _changed(base: RunView, other: RunView, label: str, sample: int,
             ids: _IdTypes) -> dict[str, Any]:
    def key(view: RunView) -> pl.DataFrame:
        return _offer_lists(view, ids).with_columns(
            pl.col("offers").list.eval(pl.element().cast(pl.Utf8)).list.sort().alias("key"))
    a, b = key(base), key(other)
    joined = a.join(b, on="customer_id", how="full", coalesce=True, suffix="_run")
    diff = joined.filter(pl.col("key").fill_null([]).list.join(",")
                         != pl.col("key_run").fill_null([]).list.join(",")).sort("customer_id")
    rows = diff.head(sample).select("customer_id", pl.col("offers").fill_null([]).alias("baseline"),
                                    pl.col("offers_run").fill_null([]).alias("run")).to_dicts()
    return {"run": label, "changed_customers": diff.height, "sample": rows}


def _offers_table(views: Sequence[RunView], offer_type: pl.DataType) -> pl.DataFrame:
    table: pl.DataFrame | None = None
    for k, view in enumerate(views):
        part = view.offers_summary.select(
            pl.col("offer_id").cast(offer_type), pl.col("customers").alias(f"customers_{k}"),
            pl.col("expected_cost").alias(f"expected_cost_{k}"),
            pl.col("budget_used").alias(f"budget_used_{k}"))
        table = part if table is None else table.join(part, on="offer_id", how="full",
                                                      coalesce=True)
    assert table is not None
    fills = [pl.col(c).fill_null(0) for c in table.columns if c.startswith(("customers_",
                                                                            "expected_cost_"))]
    table = table.with_columns(fills)
    # every run's change against the baseline (k >= 1), not only the last run's
    runs = range(1, len(views))
    table = table.with_columns(
        *[(pl.col(f"customers_{k}") - pl.col("customers_0")).alias(f"d_customers_{k}")
          for k in runs],
        *[(pl.col(f"expected_cost_{k}") - pl.col("expected_cost_0")).alias(f"d_expected_cost_{k}")
          for k in runs])
    moved = pl.max_horizontal(*[pl.col(f"d_expected_cost_{k}").abs() for k in runs])
    return table.sort(moved, "offer_id", descending=[True, False])


def _deciles(views: Sequence[RunView], labels: list[str]) -> pl.DataFrame | None:
    parts = []
    for view, label in zip(views, labels):
        d = view.value_by_decile()
        if d is not None:
            parts.append(d.select(pl.lit(label).alias("run"), "clv_decile", "value",
                                  "expected_cost", "reached"))
    return pl.concat(parts) if parts else None


def compare_runs(run_dirs: Sequence[str | Path], sample: int = 10) -> Comparison:
    """Compare run folders; the first is the baseline. ``sample`` changed customers are listed
    per run. Raises OptimizerError on a missing run folder or fewer than two runs."""
    if len(run_dirs) < 2:
        raise OptimizerError("compare needs at least two run folders")
    views = [RunView.load(d) for d in run_dirs]
    labels = _labels(views)
    ids = _IdTypes(customer=_id_type(views, "customer_id"), offer=_id_type(views, "offer_id"))
    return Comparison(
        labels=labels, paths=[str(Path(d)) for d in run_dirs],
        totals=[v.totals() for v in views], deciles=_deciles(views, labels),
        offers=_offers_table(views, ids.offer),
        changed=[_changed(views[0], v, lab, sample, ids)
                 for v, lab in zip(views[1:], labels[1:])])


def compare_charts(comparison: Comparison) -> dict[str, str]:
    """The compare page's charts as SVG text, by name."""
    labels, totals = comparison.labels, comparison.totals
    out = {"totals": charts.bar_chart(
        labels, {"objective": [t["objective"] for t in totals],
                 "expected spend": [t["expected_cost"] for t in totals],
                 "expected redemptions": [t["expected_redemptions"] for t in totals]},
        "Totals by run")}
    if comparison.deciles is not None:
        d = comparison.deciles
        deciles = sorted(d.get_column("clv_decile").unique().to_list())
        series = {}
        for label in labels:
            run = d.filter(pl.col("run") == label).sort("clv_decile")
            if run.height:
                values = dict(zip(run.get_column("clv_decile"), run.get_column("value")))
                series[label] = [values.get(x, 0.0) for x in deciles]
        out["deciles"] = charts.bar_chart([str(x) for x in deciles], series,
                                          "Objective value by lifetime-value decile (10 = highest)",
                                          xlabel="lifetime-value decile")
    changes = [f"d_expected_cost_{k}" for k in range(1, len(labels))]
    moved = comparison.offers.filter(pl.any_horizontal(*[pl.col(c) != 0 for c in changes]))
    moved = moved.head(CHART_OFFERS)
    if moved.height:
        out["offers"] = charts.bar_chart(
            [str(o) for o in moved.get_column("offer_id").to_list()],
            {f"{labels[k]} vs {labels[0]}": moved.get_column(c).to_list()
             for k, c in enumerate(changes, start=1)},
            f"Offers whose spend moved most against {labels[0]}",
            xlabel="change in expected spend", horizontal=True, reference=0.0)
    return out


def render_compare(comparison: Comparison) -> str:
    """The compare page (self-contained HTML)."""
    n = len(comparison.labels)
    offers = comparison.offers.to_dicts()
    return environment().get_template("compare.html").render(
        c=comparison, runs=list(zip(comparison.labels, comparison.paths, comparison.totals)),
        n=n, offers=offers, charts=compare_charts(comparison))
