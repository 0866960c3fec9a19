"""Validation of the tables of rules: ``offer_products`` and ``restrictions``, and the always-on
campaign tables ``offer_groups`` (exclusive offers), ``funders`` (budgets per funder) and the
extra ``customers`` columns ``rules.eligibility`` reads. Each bad row stops the run with the table, the column and
sample rows (exit 2), as every other table's checks do (:mod:`optimizer.io.validate`)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from optimizer.core.errors import InputError
from optimizer.core.schemas import ID, RESTRICTION_RULES, STR, TableSchema, normalize_category
from optimizer.io.load import RawTable


def validate_offer_groups(raw: RawTable | None, offers: pl.DataFrame) -> pl.DataFrame | None:
    """The ``offer_groups`` rows with the offer index ``o`` (``None`` without the table).

    Every column is required and non-empty; ``offer_id`` names a known offer; ``max_per_customer``
    is a whole number >= 0 and the same on every row of its group; a (group, offer) pair appears
    once."""
    from optimizer.io import validate as v  # local: validate imports this module

    if raw is None:
        return None
    frame = raw.frame.with_columns(pl.col("group_id").str.strip_chars())
    v._require_not_null("offer_groups", frame, ["group_id", "offer_id", "max_per_customer"])
    frame = v._attach(frame, "offer_id", offers)
    v._references("offer_groups", frame, "offer_id")
    v._range("offer_groups", frame, "max_per_customer", pl.col("max_per_customer") < 0, ">= 0")
    v._require_unique("offer_groups", frame.select("group_id", "offer_id", "o"),
                      ["group_id", "offer_id"])
    disagree = pl.col("max_per_customer").n_unique().over("group_id") > 1
    v._fail_rows("offer_groups", "max_per_customer", frame, disagree,
                 "max_per_customer must be the same on every row of a group")
    return frame.select("group_id", "offer_id", "o", "max_per_customer")


def read_customer_columns(folder: Path, names: tuple[str, ...], n_customers: int
                          ) -> pl.DataFrame | None:
    """The ``customers`` columns ``names`` (extra columns the contract otherwise ignores, read
    for ``rules.eligibility`` requirements) as stored, one row per customer in the table's order
    (row ``c`` is customer index ``c``); ``None`` when no rule reads any. A column missing from
    the table stops the run naming it."""
    from optimizer.io.load import _read_file, table_path

    if not names:
        return None
    path = table_path(folder, "customers")
    if path is None:
        raise InputError("customers", None, f"required table missing in {folder}")
    schema = TableSchema("customers", True, {"customer_id": ID, **{n: STR for n in names}})
    frame = _read_file(schema, path)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InputError("customers", missing[0],
                         f"column {missing[0]} missing: a rules.eligibility requirement reads it "
                         f"(the table has: {', '.join(frame.columns)})")
    if frame.height != n_customers:  # the same file was read twice: cannot differ
        raise InputError("customers", None, "the table changed while it was read")
    return frame.select(list(names))


def validate_funders(raw: RawTable | None) -> pl.DataFrame | None:
    """The ``funders`` rows (``funded_by`` trimmed, ``budget`` and ``min_redemptions`` as
    numbers, empty = none); ``None`` without the table. ``funded_by`` is required, non-empty and
    unique; amounts are finite, >= 0 and within the contract's range."""
    from optimizer.io import validate as v  # local: validate imports this module

    if raw is None:
        return None
    frame = raw.frame.with_columns(pl.col("funded_by").str.strip_chars())
    if "min_redemptions" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("min_redemptions"))
    v._require_not_null("funders", frame, ["funded_by"])
    v._require_unique("funders", frame, ["funded_by"])
    for column in ("budget", "min_redemptions"):
        v._range("funders", frame, column, pl.col(column) < 0, ">= 0")
    return frame.select("funded_by", "budget", "min_redemptions")


def validate_offer_products(table: RawTable | None, offers: pl.DataFrame,
                             products: pl.DataFrame) -> pl.DataFrame | None:
    """The optional ``offer_products`` table with its indices; every offer needs a category or
    listed products."""
    from optimizer.io.validate import _attach, _fail_rows, _references

    offer_products = None
    if table is not None:
        offer_products = _attach(_attach(table.frame, "offer_id", offers), "product_id", products)
        _references("offer_products", offer_products, "offer_id")
        _references("offer_products", offer_products, "product_id")
        offer_products = offer_products.unique(["o", "p"], maintain_order=True)
    listed = (offer_products.get_column("o").unique() if offer_products is not None
              else pl.Series("o", [], dtype=pl.Int32))
    _fail_rows("offers", "category", offers,
               pl.col("category").is_null() & ~pl.col("o").is_in(listed.implode()),
               "an offer needs a category or products listed in offer_products")
    return offer_products


def validate_restrictions(table: RawTable | None, customers: pl.DataFrame
                           ) -> pl.DataFrame | None:
    """The optional ``restrictions`` table: known customers, normalised category and rule."""
    from optimizer.io.validate import _attach, _fail_rows, _references, _require_not_null

    if table is None:
        return None
    restrictions = _attach(table.frame, "customer_id", customers)
    _references("restrictions", restrictions, "customer_id")
    _require_not_null("restrictions", restrictions, ["category", "rule"])
    restrictions = restrictions.with_columns(
        normalize_category(pl.col("category")).alias("category"),
        pl.col("rule").str.strip_chars().str.to_lowercase().alias("rule"),
    )
    _fail_rows("restrictions", "rule", restrictions,
               ~pl.col("rule").is_in(list(RESTRICTION_RULES)),
               "rule must be 'exclude' or 'opt_in'")
    return restrictions
