"""A run as planners see it: its tables and manifest, from memory or from a run folder.

:class:`RunView` is what ``report`` and ``compare`` read. It holds the run folder's files
(``assignments``, ``offers_summary``, ``manifest.json`` and, where the run knew lifetime values,
``customers.parquet`` with ``customer_id, clv, clv_decile``) and derives the planners' summaries:
totals, value by lifetime-value decile, offers per customer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from optimizer.core.errors import InputError, OptimizerError
from optimizer.core.numerics import binding, group_sums
from optimizer.io.load import unify_id_type
from optimizer.io.manifest import MANIFEST, Manifest, read_manifest

# what the planners' summaries read of a run folder (the contract's names)
_MANIFEST_FIELDS = ("objective", "upper_bound", "gap", "solver")
_NUMBER_FIELDS = ("objective", "upper_bound", "gap")
_SOLVER_FIELDS = ("status", "method", "iterations")
_ASSIGNMENT_COLUMNS = ("customer_id", "offer_id", "p_redeem", "expected_cost", "score")
_SUMMARY_COLUMNS = ("offer_id", "customers", "expected_redemptions", "expected_cost", "budget",
                    "budget_used")
_CUSTOMER_COLUMNS = ("customer_id", "clv", "clv_decile")


def read_run_table(path: Path, columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """A run folder's Parquet table, or an OptimizerError naming the file when it cannot be read
    or lacks one of ``columns``."""
    try:
        # glob=False: a folder named with brackets ("run [2]") is a path, not a pattern
        frame = pl.read_parquet(path, glob=False)
    except pl.exceptions.PolarsError as exc:
        raise OptimizerError(f"{path} cannot be read as a run's table: {exc}") from exc
    lacking = [c for c in columns if c not in frame.columns]
    if lacking:
        raise OptimizerError(f"{path} is not a run's table: it lacks the column(s) "
                             f"{', '.join(lacking)}")
    return frame


def read_run_arm(run_dir: Path, name: str, ids_int: dict[str, bool],
                 columns: tuple[str, ...] = (), required: bool = True) -> pl.DataFrame:
    """A run folder's ``assignments`` or ``controls`` (``NAME.parquet``, else ``NAME.csv``): its
    ``customer_id`` and ``offer_id`` typed as the run's inputs type them (``ids_int``; an empty
    ``offer_id``, a universal control's, null) and the other ``columns`` as they are. The one
    reader of a run's arms (``measure``, ``demo-outcomes``, ``explain``). A table that cannot be read, or
    lacks a column, is an :class:`InputError` naming it; a missing table too, unless not
    ``required`` (then the table without rows)."""
    for path in (run_dir / f"{name}.parquet", run_dir / f"{name}.csv"):
        if path.is_file():
            try:
                frame = (pl.read_parquet(path, glob=False) if path.suffix == ".parquet"
                         else pl.read_csv(path, infer_schema=False, raise_if_empty=False))
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise InputError(name, None, f"cannot read {path}: {exc}") from None
            break
    else:
        if not required:
            return pl.DataFrame(schema={
                **{c: pl.Int64 if ids_int[c] else pl.Utf8 for c in ("customer_id", "offer_id")},
                **dict.fromkeys(columns, pl.Utf8)})
        raise InputError(name, None, f"no {name}.parquet or {name}.csv in {run_dir} (controls "
                         "come with runs of this version; plan with [measurement] to have "
                         "control groups)")
    for column in ("customer_id", "offer_id", *columns):
        if column not in frame.columns:
            raise InputError(name, column, f"missing from {path}")
    offer = frame.get_column("offer_id")
    if offer.dtype == pl.Utf8:
        offer = offer.str.strip_chars().replace("", None)
    return frame.select(unify_id_type(frame.get_column("customer_id"), ids_int["customer_id"]),
                        unify_id_type(offer, ids_int["offer_id"]), *columns)


def read_run_manifest(run_dir: Path) -> Manifest:
    """A run folder's manifest, or an OptimizerError naming the file when it cannot be read or
    is not a JSON object."""
    try:
        return read_manifest(run_dir)
    except (OSError, ValueError) as exc:   # unreadable, not JSON, or not a JSON object
        raise OptimizerError(f"{Path(run_dir) / MANIFEST} cannot be read as a run's manifest: "
                             f"{exc}") from exc


class _Scenario(Protocol):
    @property
    def name(self) -> str: ...


class RunOutputs(Protocol):
    """What a run just made offers a view (``optimizer.apps.pipeline.RunResult`` has it); a
    protocol, so that io does not import the pipeline above it."""

    @property
    def scenario(self) -> _Scenario: ...
    @property
    def output(self) -> Path | None: ...
    @property
    def manifest(self) -> dict[str, Any]: ...
    @property
    def assignments(self) -> pl.DataFrame: ...
    @property
    def offers_summary(self) -> pl.DataFrame: ...
    @property
    def customers(self) -> pl.DataFrame | None: ...


@dataclass(frozen=True)
class RunView:
    """One run's outputs. ``customers`` is None when the run had no lifetime values."""

    name: str
    path: Path | None
    manifest: dict[str, Any]
    assignments: pl.DataFrame
    offers_summary: pl.DataFrame
    customers: pl.DataFrame | None

    @classmethod
    def from_result(cls, result: RunOutputs) -> "RunView":
        """The view of a run just made (before or after it is written)."""
        return cls(result.scenario.name, result.output, result.manifest, result.assignments,
                   result.offers_summary, result.customers)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunView":
        """Read a run folder written by ``offeropt run``; a missing file is an OptimizerError."""
        run_dir = Path(run_dir)
        need = [run_dir / "manifest.json", run_dir / "assignments.parquet",
                run_dir / "offers_summary.parquet"]
        missing = [p.name for p in need if not p.is_file()]
        if missing:
            raise OptimizerError(f"{run_dir} is not a run folder: missing {', '.join(missing)} "
                                 "(run `offeropt run SCENARIO` first)")
        manifest = read_run_manifest(run_dir).data
        lacking = [k for k in _MANIFEST_FIELDS if k not in manifest] + [
            f"solver.{k}" for k in _SOLVER_FIELDS
            if not isinstance(manifest.get("solver"), dict) or k not in manifest["solver"]]
        lacking += [f"{k} (a number)" for k in _NUMBER_FIELDS if k in manifest and (
            isinstance(manifest[k], bool) or not isinstance(manifest[k], (int, float)))]
        if not isinstance(manifest.get("scenario", {}), dict):
            lacking.append("scenario (a JSON object)")
        if lacking:
            raise OptimizerError(f"{need[0]} is not a run's manifest: it lacks "
                                 f"{', '.join(lacking)}")
        customers_file = run_dir / "customers.parquet"
        tables = {path.name: read_run_table(path, columns) for path, columns in (
            (need[1], _ASSIGNMENT_COLUMNS), (need[2], _SUMMARY_COLUMNS),
            (customers_file, _CUSTOMER_COLUMNS)) if path.is_file()}
        name = str(manifest.get("scenario", {}).get("name", run_dir.name))
        return cls(name, run_dir, manifest, tables[need[1].name], tables[need[2].name],
                   tables.get(customers_file.name))

    @property
    def label(self) -> str:
        """The run's name, with its folder when the name alone could be ambiguous."""
        return self.name if self.path is None else f"{self.name} ({self.path.name})"

    def totals(self) -> dict[str, Any]:
        """Headline numbers: objective, bound, gap, redemptions, spend, budget use, reach."""
        m, s = self.manifest, self.offers_summary
        capped = s.filter(pl.col("budget").is_not_null())
        budget_total = float(capped.get_column("budget").sum()) if capped.height else 0.0
        spend_capped = float(capped.get_column("expected_cost").sum()) if capped.height else 0.0
        global_budget = m.get("scenario", {}).get("rules", {}).get("global_budget")
        spend = float(s.get_column("expected_cost").sum())
        return {
            "objective": float(m["objective"]), "upper_bound": float(m["upper_bound"]),
            "gap": float(m["gap"]), "status": m["solver"]["status"],
            "method": m["solver"]["method"], "iterations": int(m["solver"]["iterations"]),
            "assignments": self.assignments.height,
            "customers": int(m.get("customers", 0)),
            "customers_reached": int(self.assignments.get_column("customer_id").n_unique()),
            "expected_redemptions": float(s.get_column("expected_redemptions").sum()),
            "expected_cost": spend,
            "offer_budgets": budget_total,
            "offer_budget_used": spend_capped / budget_total if budget_total > 0 else None,
            "global_budget": global_budget,
            "global_budget_used": spend / global_budget if global_budget else None,
            "offers_with_binding_budget": int(m.get("offers_with_binding_budget", 0)),
            "min_customers_shortfalls": len(m.get("min_customers_shortfalls", [])),
            # against last week's lists (optimizer/model/stability.py); None when not recorded
            "lists_changed_vs_last_week": (m.get("stability") or {}).get("changed_lists"),
        }

    def value_by_decile(self) -> pl.DataFrame | None:
        """Per lifetime-value decile (1 = lowest): customers, reached, offers, objective value,
        expected redemptions and spend. None without ``customers``."""
        if self.customers is None:
            return None
        per_customer = group_sums(self.assignments, ["customer_id"], {
            "offers": pl.lit(1, dtype=pl.UInt32), "value": pl.col("score"),
            "expected_redemptions": pl.col("p_redeem"), "expected_cost": pl.col("expected_cost")})
        joined = self.customers.filter(pl.col("clv_decile").is_not_null()).join(
            per_customer, on="customer_id", how="left", maintain_order="left")
        sums = group_sums(joined, ["clv_decile"], {
            "customers": pl.lit(1, dtype=pl.UInt32),
            "reached": pl.col("offers").is_not_null().cast(pl.UInt32),
            "offers": pl.col("offers"), "value": pl.col("value"),
            "expected_redemptions": pl.col("expected_redemptions"),
            "expected_cost": pl.col("expected_cost"), "mean_clv": pl.col("clv"),
            "with_clv": pl.col("clv").is_not_null().cast(pl.UInt32)})
        return sums.with_columns(pl.when(pl.col("with_clv") > 0)
                                 .then(pl.col("mean_clv") / pl.col("with_clv"))).drop("with_clv")

    def offers_per_customer(self) -> pl.DataFrame:
        """How many customers got 0, 1, 2, ... offers."""
        counts = self.assignments.group_by("customer_id").agg(pl.len().alias("offers"))
        hist = counts.group_by("offers").agg(pl.len().alias("customers"))
        zero = int(self.manifest.get("customers", 0)) - counts.height
        return (pl.concat([pl.DataFrame({"offers": [0], "customers": [max(zero, 0)]},
                                        schema=hist.schema), hist])
                .sort("offers"))

    def binding_budgets(self) -> list[dict[str, Any]]:
        """Offers whose own budget is binding (:func:`optimizer.core.numerics.binding`: a positive
        shadow price, the objective value of one more unit of that budget), most valuable first.
        Exactly the offers that the manifest's ``offers_with_binding_budget`` counts."""
        rows = self.offers_summary.to_dicts()
        price = np.array([r["shadow_price"] for r in rows], dtype=float)
        chosen = [{**r, "budget_price": r["shadow_price"]}
                  for r, b in zip(rows, binding(price)) if b]
        return sorted(chosen, key=lambda r: -r["budget_price"])
