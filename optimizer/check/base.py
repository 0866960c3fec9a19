"""What every part of ``offeropt check`` shares: the tolerances, a violation and the report, and
reading and typing the run's assignments (see :mod:`optimizer.check`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from optimizer.core.errors import InputError, OptimizerError
from optimizer.core.schemas import ASSIGNMENT_COLUMNS
from optimizer.io.load import unify_id_type
from optimizer.io.runfolder import CSV_DECIMALS

SAMPLE_ROWS = 5


# Tolerances (see the module docstring of each check).
COST_RTOL, COST_ATOL = 1e-9, 1e-9          # expected_cost == p_redeem * discount


BUDGET_RTOL, BUDGET_ATOL = 1e-9, 1e-6      # spend <= cap


SCORES_RTOL, SCORES_ATOL = 1e-12, 1e-12    # outputs == scores table


SUMMARY_RTOL, SUMMARY_ATOL = 1e-6, 1e-9    # offers_summary == aggregated assignments


# What reading rounded away, the one place the checks learn it: a number read from a CSV output
# is the value printed at CSV_DECIMALS decimals (optimizer/io/runfolder.py), so it may be off by
# half a unit of the last decimal (widened a hair for the parse); one read from Parquet is exact.
# The assignments carry it per row (column ROUNDING); every comparison of their numbers widens
# its tolerance by it, and a comparison of a sum by the sum of it over the rows summed.
PRINTED_HALF_STEP = 0.5 * 10.0 ** -CSV_DECIMALS * (1 + 1e-9)
ROUNDING = "rounding"


def read_precision(path: Path) -> float:
    """How far a number read from the run's file ``path`` may be from the value the run held:
    0 for Parquet (full precision), :data:`PRINTED_HALF_STEP` for CSV."""
    return 0.0 if Path(path).suffix == ".parquet" else PRINTED_HALF_STEP


_NUMERIC = ("rank", "p_redeem", "expected_cost", "score")


_SHOW = ["customer_id", "rank", "offer_id", "p_redeem", "expected_cost", "score"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: its id, a sentence with numbers, how many rows/customers/offers break it,
    and up to five offending rows."""

    rule: str
    message: str
    count: int
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_run`. ``notes``: what the check could not compare (a run
    folder without a manifest) or compared and let pass (``force``), for the terminal."""

    run_dir: Path
    violations: list[Violation]
    assignments: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> set[str]:
        """The ids of the rules broken (empty when the run is fine)."""
        return {v.rule for v in self.violations}

    def describe(self) -> str:
        """A plain-text listing for the terminal."""
        head = f"{self.run_dir}: {self.assignments} assignment{'s' if self.assignments != 1 else ''}"
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        if self.ok:
            return head + " checked; every hard rule holds" + notes
        lines = [head + f" checked; {len(self.violations)} rule violation"
                 + ("s" if len(self.violations) != 1 else "")]
        for v in self.violations:
            lines.append(f"  [{v.rule}] {v.message} ({v.count})")
            lines.extend(f"      {row}" for row in v.sample)
        return "\n".join(lines) + notes


def _read_run_table(run_dir: Path, name: str) -> tuple[pl.DataFrame, Path] | None:
    """Read ``NAME.parquet`` (preferred) or ``NAME.csv`` (as text) from the run folder."""
    for path in (run_dir / f"{name}.parquet", run_dir / f"{name}.csv"):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                return pl.read_parquet(path, glob=False), path
            return pl.read_csv(path, infer_schema=False, raise_if_empty=False, glob=False), path
        except (pl.exceptions.PolarsError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(name, None, f"cannot read {path}: {first}") from None
    return None


def _id_column(frame: pl.DataFrame, column: str, table: str) -> pl.Series:
    series = frame.get_column(column)
    if series.dtype.is_integer():
        return series.cast(pl.Int64)
    if series.dtype in (pl.Utf8, pl.Null):
        return series.cast(pl.Utf8)
    raise InputError(table, column, f"IDs must be integers or text, not {series.dtype}",
                     sample=frame.head(3).rows(named=True))


def _numbers(series: pl.Series, keep_int: bool = False) -> pl.Series:
    """A numeric column as Float64 (Int64 kept with ``keep_int``); text that is not a number
    becomes null (and is then flagged)."""
    if keep_int and series.dtype.is_integer():
        return series.cast(pl.Int64)
    if series.dtype == pl.Utf8:
        series = series.str.strip_chars().replace("", None)
    out = series.cast(pl.Float64, strict=False)
    if keep_int:
        values = out.drop_nulls()
        if values.is_finite().all() and (values == values.floor()).all():
            return out.cast(pl.Int64)
    return out


def _read_assignments(run_dir: Path) -> pl.DataFrame:
    if not run_dir.is_dir():
        raise OptimizerError(f"run folder not found: {run_dir} (run the scenario first, or "
                             "name the folder that offeropt run wrote)")
    found = _read_run_table(run_dir, "assignments")
    if found is None:
        raise InputError("assignments", None,
                         f"no assignments.parquet or assignments.csv in {run_dir}")
    return assignments_table(*found)


def assignments_table(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """An assignments file as read (Parquet typed, CSV as text) in the checks' types."""
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError("assignments", missing[0],
                         f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"missing from {path.name} (it has: {', '.join(frame.columns) or 'none'})")
    # a run with channels writes each pair's channel_id (optimizer/check/channels.py checks it)
    channel = ([frame.get_column("channel_id").cast(pl.Utf8).str.strip_chars()]
               if "channel_id" in frame.columns else [])
    return pl.DataFrame([
        _id_column(frame, "customer_id", "assignments"),
        _id_column(frame, "offer_id", "assignments"),
        *(_numbers(frame.get_column(c), keep_int=c == "rank").alias(c) for c in _NUMERIC),
        *channel,
    ]).select(_SHOW + [c.name for c in channel]).with_columns(
        pl.lit(read_precision(path), dtype=pl.Float64).alias(ROUNDING))


def _attach_index(frame: pl.DataFrame, id_col: str, master: pl.DataFrame, index: str,
                  is_int: bool, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """Add the master's dense index (null where unknown), comparing IDs as the master's type."""
    key = unify_id_type(frame.get_column(id_col), is_int).alias("__key")
    lookup = master.select(pl.col(id_col).alias("__key"), pl.col(index), *extra)
    return (frame.with_columns(key)
            .join(lookup, on="__key", how="left", maintain_order="left")
            .drop("__key"))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.10g}"
    return str(x)


def _sample(rows: pl.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return rows.select([c for c in columns if c in rows.columns]).head(SAMPLE_ROWS).rows(named=True)


def _close(a: pl.Expr, b: pl.Expr, rtol: float, atol: float | pl.Expr) -> pl.Expr:
    """``|a - b| <= rtol * max(|a|, |b|) + atol``; null or NaN on either side is not close."""
    ok = (a - b).abs() <= pl.max_horizontal(a.abs(), b.abs()) * rtol + atol
    return ok.fill_null(False)


def _over(spent: pl.Expr, cap: pl.Expr, slack: float | pl.Expr = 0.0) -> pl.Expr:
    """``spent`` exceeds ``cap`` beyond the budget tolerance and ``slack``, what reading may
    have rounded away from ``spent`` (the summed ``cost_slack`` of its rows)."""
    return spent > cap * (1 + BUDGET_RTOL) + BUDGET_ATOL + slack
