"""The CSV and Parquet copies of a published table, compared cell by cell at the CSV's printed
precision (part of ``offeropt check``; see :mod:`optimizer.check.outputs`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from optimizer.check.base import PRINTED_HALF_STEP, ROUNDING, Violation


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path, glob=False)
    return pl.read_csv(path, infer_schema=False, raise_if_empty=False, glob=False)


def _printed_tolerance(text: pl.Expr) -> pl.Expr:
    """Half a unit of the last digit a CSV number prints (``0.125`` -> 0.0005, ``1e-05`` ->
    0.5e-05), slightly widened for the parse."""
    s = text.str.strip_chars().str.to_lowercase()
    mantissa = s.str.split("e").list.first()
    exponent = s.str.split("e").list.get(1, null_on_oob=True).cast(pl.Int64, strict=False)
    decimals = (pl.when(mantissa.str.contains(".", literal=True))
                .then(mantissa.str.split(".").list.last().str.len_chars()).otherwise(0))
    step = pl.lit(10.0).pow((exponent.fill_null(0) - decimals).cast(pl.Float64))
    return 0.5 * step * (1 + 1e-9)


def _cells_agree(typed: pl.Series, text: pl.Series) -> pl.Series:
    """Row by row: the Parquet cell equals the CSV text (numbers at the CSV's precision)."""
    frame = pl.DataFrame({"p": typed, "t": text.cast(pl.Utf8)})
    if not typed.dtype.is_float():
        return frame.select(pl.col("p").cast(pl.Utf8).eq_missing(pl.col("t"))).to_series()
    v = pl.col("t").str.strip_chars().cast(pl.Float64, strict=False)
    p = pl.col("p")
    # exact first (a round-trip writer prints every value exactly); the printed precision is
    # worked out only for the cells that differ, which keeps string splitting off the hot path
    exact = ((p.is_null() & pl.col("t").is_null()) | (p.is_nan() & v.is_nan())
             | (p == v)).fill_null(False)
    ok = frame.select(exact).to_series()
    if ok.all():
        return ok
    rows = frame.with_row_index("i").filter(~exact)
    close = rows.select(
        "i", (p.is_finite() & v.is_finite()
              & ((p - v).abs() <= _printed_tolerance(pl.col("t")) + _parsed(p, v)))
        .fill_null(False).alias("close")).filter("close").get_column("i")
    return ok.scatter(close, True) if close.len() else ok


# the whole-number columns of each Parquet table a run writes; ID columns keep the inputs' type
_WHOLE_COLUMNS = {"assignments": ("customer_id", "offer_id", "rank"),
                  "offers_summary": ("offer_id", "customers", "min_customers", "max_customers",
                                     "shortfall"),
                  "controls": ("customer_id", "offer_id", "week"),
                  "customers": ("customer_id", "clv_decile")}


def check_column_types(run_dir: Path, id_is_int: dict[str, bool]) -> list[Violation]:
    """The Parquet copies keep the inputs' types (docs/contract.md: "outputs keep the type that
    the input used"): an ID column holds integers where the inputs' IDs are integers and text
    where they are text (a join of a tool downstream fails on the other), and ranks, counts and
    weeks are whole numbers. Compared on the files' schemas; a column of nulls alone says
    nothing, and an unreadable file is reported where it is read."""
    out = []
    for name, columns in _WHOLE_COLUMNS.items():
        path = Path(run_dir) / f"{name}.parquet"
        try:
            schema = pl.read_parquet_schema(path) if path.is_file() else {}
        except (pl.exceptions.PolarsError, OSError):
            continue
        for column in (c for c in columns if c in schema and schema[c] != pl.Null):
            dtype = schema[column]
            text = column in id_is_int and not id_is_int[column]
            if (dtype == pl.Utf8) if text else dtype.is_integer():
                continue
            want = "text" if text else ("integers, as the inputs' IDs" if column in id_is_int
                                        else "whole numbers")
            out.append(Violation("column_types", f"{path.name}: column {column} is {dtype}; it "
                                 f"holds {want}", 1))
    return out


def compare_copies(run_dir: Path, name: str) -> tuple[bool, list[Violation]]:
    """``NAME.parquet`` against ``NAME.csv``, row for row; ``(agree, violations)``. Agrees
    trivially when either file is absent."""
    pq_path, csv_path = Path(run_dir) / f"{name}.parquet", Path(run_dir) / f"{name}.csv"
    if not (pq_path.is_file() and csv_path.is_file()):
        return True, []
    try:
        typed, text = _read(pq_path), _read(csv_path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return False, [Violation("published_files", f"cannot read {name}: {exc}", 1)]
    what = f"{csv_path.name} and {pq_path.name}"
    if typed.columns != text.columns:
        return False, [Violation("published_files", f"{what} have different columns "
                                 f"({', '.join(text.columns)} vs {', '.join(typed.columns)})", 1)]
    n = min(typed.height, text.height)
    agree = pl.DataFrame({c: _cells_agree(typed.get_column(c).head(n), text.get_column(c).head(n))
                          for c in typed.columns}) if typed.columns else pl.DataFrame()
    rows = (np.flatnonzero(~agree.select(pl.all_horizontal(pl.all())).to_series().to_numpy())
            if agree.width and n else np.zeros(0, dtype=np.int64))
    out = []
    if typed.height != text.height:
        out.append(Violation("published_files", f"{what} disagree: {text.height} rows in the CSV, "
                             f"{typed.height} in the Parquet", abs(typed.height - text.height)))
    if rows.size:
        k = int(rows[0])
        cells = [c for c in typed.columns if not agree.get_column(c)[k]]
        sample = [{"row": int(r), "parquet": typed.row(int(r), named=True),
                   "csv": text.row(int(r), named=True)} for r in rows[:5]]
        out.append(Violation("published_files",
                             f"{what} disagree on {rows.size} row(s) (first: row {k}, column(s) "
                             f"{', '.join(cells)})", int(rows.size), sample))
    return not out, out


def _in_file(violations: list[Violation], name: str) -> list[Violation]:
    return [Violation(v.rule, f"in {name}: {v.message}", v.count, v.sample) for v in violations]




def _parsed(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """What parsing a printed number adds to its rounding: the parsed value is the double
    nearest the printed decimal, off by up to half a unit in its last place, so a value printed
    exactly half a step away (12.7939875 as 12.793988) differs by a hair more than half a step
    (a few ulps of the larger value allowed)."""
    return pl.max_horizontal(a.abs(), b.abs()) * (4 * float(np.finfo(float).eps))


def _exact_where_rounded(csv: pl.DataFrame, parquet: pl.DataFrame) -> pl.DataFrame:
    """The CSV copy's rows with, for a pair the Parquet copy also lists, the Parquet's numbers
    wherever the CSV's are only their printed rounding: the rules then judge the CSV's rows (a
    duplicated or added pair) without flagging the rounding, while a number edited beyond it
    keeps its CSV value (and is also reported as a difference of the copies). A row whose
    numbers all came from the Parquet copy carries no rounding (``rounding`` 0), so it does not
    widen the CSV's budget sums."""
    key = [pl.col(c).cast(pl.Utf8).alias(f"__{c}") for c in ("customer_id", "offer_id")]
    exact = (parquet.with_columns(key).unique(["__customer_id", "__offer_id"], keep="first",
                                              maintain_order=True)
             .select("__customer_id", "__offer_id",
                     *[pl.col(c).alias(f"__exact_{c}") for c in ("p_redeem", "expected_cost",
                                                                  "score")]))
    joined = csv.with_columns(key).join(exact, on=["__customer_id", "__offer_id"], how="left",
                                        maintain_order="left")
    numbers = ("p_redeem", "expected_cost", "score")
    printed = {c: ((pl.col(c) - pl.col(f"__exact_{c}")).abs()
                   <= PRINTED_HALF_STEP + _parsed(pl.col(c), pl.col(f"__exact_{c}")))
               for c in numbers}
    # a row whose every number is now the Parquet's carries no rounding (base.ROUNDING)
    exact_row = ([pl.when(pl.all_horizontal(printed[c].fill_null(False) for c in numbers))
                  .then(pl.lit(0.0)).otherwise(pl.col(ROUNDING)).alias(ROUNDING)]
                 if ROUNDING in csv.columns else [])
    return joined.with_columns(
        *(pl.when(printed[c]).then(pl.col(f"__exact_{c}")).otherwise(pl.col(c)).alias(c)
          for c in numbers),
        *exact_row,
    ).select(csv.columns)
