"""Malformed inputs and scenarios: ``offeropt run`` exits 2 naming the table and column (or the
knob), and leaves no output behind (an earlier run folder stays byte-for-byte as it was)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.cli import main
from tests.tiny_world import (
    base_world,
    offer,
    score,
    tree_bytes,
    write_csv,
    write_scenario,
    write_world,
)

World = dict[str, list[dict[str, Any]]]


def good_world() -> World:
    """A valid folder with every optional table, so each can be broken."""
    world = base_world()
    world["customers"][0]["clv"] = 10.0
    world["offers"] = [offer(1, "BAKERY", 1.0, 5.0, start_week=30, end_week=45,
                             min_customers=1, max_customers=3),
                       offer(2, None, 2.0, None)]
    world["offer_products"] = [{"offer_id": 2, "product_id": 103}]
    world["restrictions"] = [{"customer_id": 2, "category": "dairy", "rule": "exclude"}]
    world["history"] = [{"customer_id": 1, "offer_id": 1, "week": 38}]
    world["redemptions"] = [{"customer_id": 1, "offer_id": 1, "week": 38}]
    world["scores"] = [score(c, o, 0.25, 1.0 + c) for c in range(1, 5) for o in (1, 2)]
    world["transactions"][0].update(quantity=1.0, discount=0.0)
    world["offer_groups"] = [{"group_id": "family", "offer_id": o, "max_per_customer": 1}
                             for o in (1, 2)]
    world["offers"][0]["funded_by"] = "brand"
    world["funders"] = [{"funded_by": "brand", "budget": 3.0, "min_redemptions": 1.0},
                        {"funded_by": "retailer", "budget": None, "min_redemptions": None}]
    world["channels"] = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.01},
                         {"channel_id": "sms", "capacity": 2, "cost_per_contact": 0.1}]
    world["customer_channels"] = [{"customer_id": c, "channel_id": ch}
                                  for c in range(1, 5) for ch in ("email", "sms")]
    return world


@dataclass
class Case:
    """One malformed input. ``world`` edits the tables before they are written, ``files`` edits
    the written folder, ``rules``/``solver``/``toml`` the scenario; ``expect`` are phrases the
    error must contain (whitespace-normalised)."""

    id: str
    expect: list[str]
    world: Callable[[World], None] | None = None
    files: Callable[[Path], None] | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)
    toml: Callable[[str], str] | None = None


def where(table: str, column: str | None = None) -> list[str]:
    return [f"table '{table}'" + (f", column '{column}'" if column else "")]


def drop_table(name: str) -> Callable[[World], None]:
    return lambda w: w.pop(name)


def drop_column(table: str, column: str) -> Callable[[World], None]:
    def edit(w: World) -> None:
        for row in w[table]:
            row.pop(column, None)
    return edit


def set_cell(table: str, row: int, **values: Any) -> Callable[[World], None]:
    def edit(w: World) -> None:
        w[table][row].update(values)
    return edit


def add_row(table: str, **values: Any) -> Callable[[World], None]:
    def edit(w: World) -> None:
        w.setdefault(table, []).append(values)
    return edit


def both(*edits: Callable[[World], None]) -> Callable[[World], None]:
    def edit(w: World) -> None:
        for e in edits:
            e(w)
    return edit


def raw_file(name: str, data: bytes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for old in folder.glob(f"{name}.*"):
            old.unlink()
        (folder / f"{name}.csv").write_bytes(data)
    return edit


def parquet_with_float_week(folder: Path, week: float) -> None:
    """Replace the CSV transactions by a Parquet file whose ``week`` column is a float column."""
    frame = pl.read_csv(folder / "transactions.csv").with_columns(pl.col("week").cast(pl.Float64))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(week)
                               .otherwise(pl.col("week")).alias("week"))
    (folder / "transactions.csv").unlink()
    frame.write_parquet(folder / "transactions.parquet")


def parquet_column(table: str, column: str, values: pl.Series) -> Callable[[Path], None]:
    """Replace the CSV ``table`` by a Parquet file whose ``column`` is ``values`` (its type)."""
    def edit(folder: Path) -> None:
        frame = pl.read_csv(folder / f"{table}.csv")
        frame = frame.with_columns(values.head(frame.height).alias(column))
        (folder / f"{table}.csv").unlink()
        frame.write_parquet(folder / f"{table}.parquet")
    return edit


def empty_customers(folder: Path) -> None:
    write_csv(folder / "customers.csv", [], ["customer_id", "segment"])


INPUT_CASES = [
    # required tables
    *[Case(f"missing-table-{t}", where(t) + ["required table missing"], world=drop_table(t))
      for t in ("customers", "transactions", "products", "offers")],
    # required columns
    Case("missing-col-customer_id", where("customers", "customer_id"),
         world=drop_column("customers", "customer_id")),
    Case("missing-col-sales_value", where("transactions", "sales_value"),
         world=drop_column("transactions", "sales_value")),
    Case("missing-col-week", where("transactions", "week"),
         world=drop_column("transactions", "week")),
    Case("missing-col-category", where("products", "category"),
         world=drop_column("products", "category")),
    Case("missing-col-discount", where("offers", "discount"),
         world=drop_column("offers", "discount")),
    Case("missing-col-budget", where("offers", "budget"), world=drop_column("offers", "budget")),
    Case("missing-col-p_redeem", where("scores", "p_redeem"),
         world=drop_column("scores", "p_redeem")),
    Case("missing-col-rule", where("restrictions", "rule"),
         world=drop_column("restrictions", "rule")),
    Case("missing-col-offer_products-product_id", where("offer_products", "product_id"),
         world=drop_column("offer_products", "product_id")),
    Case("missing-col-history-week", where("history", "week"),
         world=drop_column("history", "week")),
    # wrong types
    Case("text-sales_value", where("transactions", "sales_value") + ["numbers", "abc"],
         world=set_cell("transactions", 0, sales_value="abc")),
    Case("text-week", where("transactions", "week") + ["whole numbers"],
         world=set_cell("transactions", 0, week="wk39")),
    Case("fractional-week", where("transactions", "week"),
         world=set_cell("transactions", 0, week="39.5")),
    Case("fractional-week-parquet", where("transactions", "week") + ["whole numbers", "40.5"],
         files=lambda folder: parquet_with_float_week(folder, 40.5)),
    # a Parquet column of another kind is not read as numbers (True is not a discount of 1)
    Case("boolean-discount-parquet", where("offers", "discount") + ["numbers", "Boolean"],
         files=parquet_column("offers", "discount", pl.Series([True, True]))),
    Case("date-week-parquet", where("transactions", "week") + ["whole numbers", "Date"],
         files=parquet_column("transactions", "week", pl.Series([date(2024, 9, 30)]))),
    Case("boolean-budget-parquet", where("offers", "budget") + ["numbers", "Boolean"],
         files=parquet_column("offers", "budget", pl.Series([True, None]))),
    # a number where a date is expected is not read as days since 1970, nor True as 1970-01-02
    Case("integer-date-parquet", where("transactions", "date") + ["dates", "Int64"],
         files=parquet_column("transactions", "date", pl.Series([19_997] * 10_000))),
    Case("boolean-date-parquet", where("transactions", "date") + ["dates", "Boolean"],
         files=parquet_column("transactions", "date", pl.Series([True] * 10_000))),
    # a decimal column is not truncated either: 40.5 is not week 40
    Case("fractional-decimal-week-parquet", where("transactions", "week") + ["whole numbers",
                                                                             "40.5"],
         files=parquet_column("transactions", "week",
                              pl.Series([Decimal("40.5")] * 10_000, dtype=pl.Decimal(10, 1)))),
    Case("impossible-date", where("transactions", "date") + ["dates", "2024-13-45"],
         world=set_cell("transactions", 0, date="2024-13-45")),
    Case("repeated-column", where("customers", "segment") + ["more than one column"],
         files=raw_file("customers", b"customer_id,segment,segment\n1,a,b\n2,a,b\n")),
    Case("text-discount", where("offers", "discount") + ["numbers"],
         world=set_cell("offers", 0, discount="ten")),
    Case("text-budget", where("offers", "budget"), world=set_cell("offers", 1, budget="lots")),
    Case("text-start_week", where("offers", "start_week"),
         world=set_cell("offers", 0, start_week="soon")),
    Case("text-clv", where("customers", "clv"), world=set_cell("customers", 0, clv="high")),
    Case("text-p_redeem", where("scores", "p_redeem"), world=set_cell("scores", 0, p_redeem="x")),
    # empty IDs
    Case("empty-customer_id", where("customers", "customer_id") + ["empty"],
         world=set_cell("customers", 1, customer_id=None)),
    Case("blank-offer_id", where("offers", "offer_id") + ["empty"],
         world=set_cell("offers", 0, offer_id="  ")),
    Case("empty-product_id", where("products", "product_id"),
         world=set_cell("products", 2, product_id=None)),
    Case("empty-transactions-customer_id", where("transactions", "customer_id"),
         world=set_cell("transactions", 0, customer_id=None)),
    Case("empty-scores-offer_id", where("scores", "offer_id"),
         world=set_cell("scores", 0, offer_id="")),
    # duplicate IDs
    Case("duplicate-customer", where("customers", "customer_id") + ["unique"],
         world=add_row("customers", customer_id=2, segment="b")),
    Case("duplicate-customer-after-trim", where("customers", "customer_id") + ["unique"],
         world=add_row("customers", customer_id=" 3 ", segment="b")),
    Case("duplicate-product", where("products", "product_id") + ["unique"],
         world=add_row("products", product_id=101, category="BEEF")),
    Case("duplicate-offer", where("offers", "offer_id") + ["unique"],
         world=add_row("offers", **offer(1, "DAIRY"))),
    # ranges and finiteness
    Case("negative-discount", where("offers", "discount") + ["> 0"],
         world=set_cell("offers", 0, discount=-1.0)),
    Case("zero-discount", where("offers", "discount") + ["> 0"],
         world=set_cell("offers", 1, discount=0)),
    Case("nan-discount", where("offers", "discount") + ["finite"],
         world=set_cell("offers", 1, discount="NaN")),
    Case("negative-budget", where("offers", "budget") + [">= 0"],
         world=set_cell("offers", 0, budget=-5)),
    Case("nan-budget", where("offers", "budget") + ["finite"],
         world=set_cell("offers", 0, budget="nan")),
    Case("inf-budget", where("offers", "budget") + ["finite"],
         world=set_cell("offers", 0, budget="inf")),
    Case("minus-inf-budget", where("offers", "budget") + ["finite"],
         world=set_cell("offers", 1, budget="-inf")),
    Case("negative-max_customers", where("offers", "max_customers"),
         world=set_cell("offers", 0, max_customers=-1, min_customers=None)),
    Case("p_redeem-above-one", where("scores", "p_redeem") + ["between 0 and 1"],
         world=set_cell("scores", 3, p_redeem=1.5)),
    Case("p_redeem-negative", where("scores", "p_redeem") + ["between 0 and 1"],
         world=set_cell("scores", 0, p_redeem=-0.1)),
    Case("p_redeem-nan", where("scores", "p_redeem"), world=set_cell("scores", 0, p_redeem="NaN")),
    Case("negative-value", where("scores", "value") + [">= 0"],
         world=set_cell("scores", 2, value=-0.5)),
    Case("inf-value", where("scores", "value") + ["finite"],
         world=set_cell("scores", 2, value="inf")),
    Case("duplicate-score-pair", where("scores") + ["unique"],
         world=add_row("scores", **score(3, 2, 0.1, 1.0))),
    Case("start-after-end", where("offers", "end_week") + ["start_week"],
         world=set_cell("offers", 0, start_week=42, end_week=41)),
    Case("min-above-max", where("offers", "max_customers") + ["min_customers"],
         world=set_cell("offers", 0, min_customers=4, max_customers=3)),
    Case("negative-clv", where("customers", "clv") + [">= 0"],
         world=set_cell("customers", 0, clv=-1.0)),
    Case("inf-clv", where("customers", "clv") + ["finite"],
         world=set_cell("customers", 0, clv="inf")),
    Case("negative-sales_value", where("transactions", "sales_value") + [">= 0"],
         world=set_cell("transactions", 0, sales_value=-2.5)),
    Case("negative-transaction-discount", where("transactions", "discount"),
         world=set_cell("transactions", 0, discount=-0.5)),
    # whole-number columns keep the documented range too: a max_customers of 2**63 - 1 crashed
    # the run (exit 70) and a week of 1e16 was accepted
    Case("huge-max_customers", where("offers", "max_customers") + ["1e+15", "sample rows"],
         world=set_cell("offers", 0, max_customers=2**63 - 1, min_customers=None)),
    Case("huge-history-week", where("history", "week") + ["1e+15", "sample rows"],
         world=set_cell("history", 0, week=10**16)),
    Case("huge-end_week-parquet", where("offers", "end_week") + ["1e+15", "sample rows"],
         files=parquet_column("offers", "end_week", pl.Series([2**63 - 1, None]))),
    Case("huge-offer_groups-max", where("offer_groups", "max_per_customer") + ["1e+15"],
         world=both(set_cell("offer_groups", 0, max_per_customer=2**62),
                    set_cell("offer_groups", 1, max_per_customer=2**62))),
    # an unsigned 64-bit ID column above the signed range crashed the cast (exit 70)
    Case("uint64-id-above-int64", where("customers", "customer_id") + ["64-bit", "sample rows",
                                                                       "9223372036854775808"],
         files=parquet_column("customers", "customer_id",
                              pl.Series([2**63 + k for k in range(4)], dtype=pl.UInt64))),
    Case("uint64-reference-above-int64", where("restrictions", "customer_id") + ["64-bit"],
         files=parquet_column("restrictions", "customer_id",
                              pl.Series([2**64 - 1], dtype=pl.UInt64))),
    # references
    Case("offer_products-unknown-offer", where("offer_products", "offer_id") + ["not found"],
         world=add_row("offer_products", offer_id=77, product_id=101)),
    Case("offer_products-unknown-product", where("offer_products", "product_id") + ["not found"],
         world=add_row("offer_products", offer_id=1, product_id=999)),
    Case("restrictions-unknown-customer", where("restrictions", "customer_id") + ["not found"],
         world=add_row("restrictions", customer_id=99, category="pork", rule="exclude")),
    Case("restrictions-unknown-rule", where("restrictions", "rule") + ["exclude", "opt_in"],
         world=add_row("restrictions", customer_id=1, category="pork", rule="maybe")),
    Case("restrictions-empty-category", where("restrictions", "category"),
         world=add_row("restrictions", customer_id=1, category=None, rule="exclude")),
    # offer_groups (exclusive offers)
    Case("offer_groups-unknown-offer",
         where("offer_groups", "offer_id") + ["not found", "sample rows", "'77'"],
         world=add_row("offer_groups", group_id="family", offer_id=77, max_per_customer=1)),
    Case("offer_groups-negative-max",
         where("offer_groups", "max_per_customer") + [">= 0", "sample rows", "-1"],
         world=add_row("offer_groups", group_id="x", offer_id=1, max_per_customer=-1)),
    Case("offer_groups-limits-disagree",
         where("offer_groups", "max_per_customer") + ["same on every row", "sample rows"],
         world=set_cell("offer_groups", 1, max_per_customer=2)),
    Case("offer_groups-duplicate-pair",
         where("offer_groups", "offer_id") + ["must be unique", "sample rows"],
         world=add_row("offer_groups", group_id="family", offer_id=1, max_per_customer=1)),
    Case("offer_groups-empty-group", where("offer_groups", "group_id") + ["empty", "sample rows"],
         world=set_cell("offer_groups", 0, group_id=None)),
    Case("offer_groups-fractional-max",
         where("offer_groups", "max_per_customer") + ["whole numbers", "sample rows"],
         world=set_cell("offer_groups", 0, max_per_customer=1.5)),
    Case("offer_groups-missing-column", where("offer_groups", "max_per_customer"),
         world=drop_column("offer_groups", "max_per_customer")),
    # funders (budgets per funder)
    Case("funders-negative-budget", where("funders", "budget") + [">= 0", "sample rows", "-5"],
         world=set_cell("funders", 0, budget=-5.0)),
    Case("funders-text-budget", where("funders", "budget") + ["numbers", "sample rows", "lots"],
         world=set_cell("funders", 0, budget="lots")),
    Case("funders-negative-min", where("funders", "min_redemptions") + [">= 0", "sample rows"],
         world=set_cell("funders", 1, min_redemptions=-1.0)),
    Case("funders-duplicate", where("funders", "funded_by") + ["must be unique", "sample rows"],
         world=add_row("funders", funded_by=" brand ", budget=1.0, min_redemptions=None)),
    Case("funders-empty-name", where("funders", "funded_by") + ["empty", "sample rows"],
         world=set_cell("funders", 1, funded_by=None)),
    Case("funders-missing-budget-column", where("funders", "budget") + ["missing"],
         world=drop_column("funders", "budget")),
    Case("funders-huge-budget", where("funders", "budget") + ["1e+15", "sample rows"],
         world=set_cell("funders", 0, budget=1e17)),
    # channels and consent (optimizer/io/validate_channels.py)
    Case("channels-duplicate", where("channels", "channel_id") + ["must be unique", "sample rows"],
         world=add_row("channels", channel_id=" sms ", capacity=1, cost_per_contact=0.0)),
    Case("channels-empty-id", where("channels", "channel_id") + ["empty", "sample rows"],
         world=set_cell("channels", 0, channel_id=None)),
    Case("channels-negative-capacity", where("channels", "capacity") + [">= 0", "sample rows"],
         world=set_cell("channels", 1, capacity=-1)),
    Case("channels-fractional-capacity",
         where("channels", "capacity") + ["whole numbers", "sample rows"],
         world=set_cell("channels", 1, capacity=1.5)),
    Case("channels-negative-cost",
         where("channels", "cost_per_contact") + [">= 0", "sample rows", "-0.5"],
         world=set_cell("channels", 0, cost_per_contact=-0.5)),
    Case("channels-nan-cost", where("channels", "cost_per_contact") + ["finite", "sample rows"],
         world=set_cell("channels", 0, cost_per_contact="NaN")),
    Case("customer_channels-unknown-customer",
         where("customer_channels", "customer_id") + ["not found", "sample rows", "99"],
         world=add_row("customer_channels", customer_id=99, channel_id="email")),
    Case("customer_channels-unknown-channel",
         where("customer_channels", "channel_id") + ["not found", "sample rows", "fax"],
         world=add_row("customer_channels", customer_id=1, channel_id="fax")),
    Case("customer_channels-duplicate",
         where("customer_channels", "channel_id") + ["must be unique", "sample rows"],
         world=add_row("customer_channels", customer_id=1, channel_id="email")),
    Case("customer_channels-without-channels", where("channels") + ["missing"],
         world=drop_table("channels")),
    Case("channels-without-consent", where("customer_channels") + ["missing"],
         world=drop_table("customer_channels")),
    Case("contact-budget-without-channels", ["contact_budget", "channels"],
         world=lambda w: (w.pop("channels"), w.pop("customer_channels")),
         rules={"contact_budget": 5.0}),
    Case("contact-budget-negative", ["contact_budget"], rules={"contact_budget": -1.0}),
    Case("scores-unknown-customer", where("scores", "customer_id") + ["not found"],
         world=add_row("scores", **score(99, 1))),
    Case("scores-unknown-offer", where("scores", "offer_id") + ["not found"],
         world=add_row("scores", **score(1, 99))),
    Case("offer-without-category", where("offers", "category") + ["offer_products"],
         world=add_row("offers", **offer(3, None))),
    Case("offer-blank-category", where("offers", "category") + ["offer_products"],
         world=add_row("offers", **offer(3, "   "))),
    # file format
    Case("empty-customers", where("customers") + ["empty"], files=empty_customers),
    Case("semicolon-csv", where("offers", "offer_id") + ["separator"],
         files=raw_file("offers", b"offer_id;category;discount;budget\n1;BAKERY;1.0;5\n")),
    Case("latin-1-csv", where("products") + ["UTF-8"],
         files=raw_file("products", "product_id,category\n101,PORK\n102,CR\u00c8ME\n103,DAIRY\n"
                        "104,SNACKS\n105,INFANT FORMULA\n106,FAMILY PLANNING\n"
                        .encode("latin-1"))),
    Case("latin-1-csv-header", where("customers") + ["UTF-8"],
         files=raw_file("customers", "customer_id,s\u00e9gment\n1,a\n".encode("latin-1"))),
    Case("parquet-and-csv", where("offers") + ["keep one"],
         files=lambda folder: (folder / "offers.parquet").write_bytes(b"not parquet")),
    Case("corrupt-parquet", where("products"),
         files=lambda folder: ((folder / "products.csv").unlink(),
                               (folder / "products.parquet").write_bytes(b"PAR1garbage"))),
    # flights and pacing (optimizer/io/validate_flights.py, optimizer/model/flights.py)
    Case("flight-partial", where("offers", "flight_end_week") + ["together"],
         world=set_cell("offers", 0, flight_budget=10.0, flight_start_week=38)),
    Case("flight-negative-budget", where("offers", "flight_budget") + [">= 0"],
         world=set_cell("offers", 0, flight_budget=-1.0, flight_start_week=38,
                        flight_end_week=42)),
    Case("flight-nan-budget", where("offers", "flight_budget") + ["finite"],
         world=set_cell("offers", 0, flight_budget="NaN", flight_start_week=38,
                        flight_end_week=42)),
    Case("flight-weeks-reversed", where("offers", "flight_end_week") + [">= flight_start_week"],
         world=set_cell("offers", 0, flight_budget=10.0, flight_start_week=42,
                        flight_end_week=38)),
    Case("flight-text-week", where("offers", "flight_start_week") + ["whole numbers"],
         world=set_cell("offers", 0, flight_budget=10.0, flight_start_week="soon",
                        flight_end_week=42)),
    Case("flight-history-without-cost", where("history", "expected_cost") + ["spend table"],
         world=set_cell("offers", 0, flight_budget=10.0, flight_start_week=38,
                        flight_end_week=42)),
    # group flights (the flights table and offers.flight_id)
    Case("flight-id-without-table", where("offers", "flight_id") + ["no flights table"],
         world=set_cell("offers", 1, flight_id="spring")),
    Case("flight-id-unknown", where("offers", "flight_id") + ["not found in table 'flights'",
                                                              "autumn"],
         world=both(set_cell("offers", 1, flight_id="autumn"), add_row(
             "flights", flight_id="spring", flight_budget=5.0, flight_start_week=38,
             flight_end_week=42))),
    Case("flights-duplicate-id", where("flights", "flight_id") + ["unique"],
         world=both(*[add_row("flights", flight_id=" spring", flight_budget=5.0,
                              flight_start_week=38, flight_end_week=42) for _ in range(2)])),
    Case("flights-negative-budget", where("flights", "flight_budget") + [">= 0"],
         world=add_row("flights", flight_id="spring", flight_budget=-5.0, flight_start_week=38,
                       flight_end_week=42)),
    Case("flights-empty-budget", where("flights", "flight_budget") + ["empty"],
         world=add_row("flights", flight_id="spring", flight_budget=None, flight_start_week=38,
                       flight_end_week=42)),
    Case("flights-empty-week", where("flights", "flight_start_week") + ["empty"],
         world=add_row("flights", flight_id="spring", flight_budget=5.0,
                       flight_start_week=None, flight_end_week=42)),
    Case("flights-weeks-reversed", where("flights", "flight_end_week") + [">= flight_start_week"],
         world=add_row("flights", flight_id="spring", flight_budget=5.0, flight_start_week=42,
                       flight_end_week=38)),
    Case("flights-missing-column", where("flights", "flight_end_week") + ["missing"],
         world=add_row("flights", flight_id="spring", flight_budget=5.0, flight_start_week=42)),
    Case("flight-and-funder", where("offers", "flight_id") + ["two shared budgets", "brand"],
         world=both(set_cell("offers", 0, flight_id="spring"), add_row(
             "flights", flight_id="spring", flight_budget=5.0, flight_start_week=38,
             flight_end_week=42))),
    Case("history-negative-cost", where("history", "expected_cost") + [">= 0"],
         world=set_cell("history", 0, expected_cost=-2.0)),
    Case("spend-unknown-offer", where("spend", "offer_id") + ["not found"],
         world=add_row("spend", offer_id=77, week=38, amount=1.0)),
    Case("spend-negative-amount", where("spend", "amount") + [">= 0"],
         world=add_row("spend", offer_id=1, week=38, amount=-1.0)),
    Case("spend-empty-amount", where("spend", "amount") + ["empty"],
         world=add_row("spend", offer_id=1, week=38, amount=None)),
    Case("spend-duplicate-week", where("spend", "week") + ["unique"],
         world=both(add_row("spend", offer_id=1, week=38, amount=1.0),
                    add_row("spend", offer_id=1, week=38, amount=2.0))),
    Case("spend-missing-column", where("spend", "amount") + ["required column"],
         world=add_row("spend", offer_id=1, week=38)),
    Case("forecast-negative-demand", where("forecast", "demand") + [">= 0"],
         world=add_row("forecast", offer_id=1, week=40, demand=-1.0)),
    Case("forecast-unknown-offer", where("forecast", "offer_id") + ["not found"],
         world=add_row("forecast", offer_id=77, week=40, demand=1.0)),
    Case("forecast-pacing-without-table", where("forecast", "demand") + ["forecast table"],
         world=set_cell("offers", 0, flight_budget=10.0, flight_start_week=40,
                        flight_end_week=42), rules={"pacing": "forecast"}),
    Case("forecast-pacing-no-demand", where("forecast", "demand") + ["some demand"],
         world=both(set_cell("offers", 0, flight_budget=10.0, flight_start_week=40,
                             flight_end_week=42),
                    add_row("forecast", offer_id=1, week=39, demand=1.0)),
         rules={"pacing": "forecast"}),
]

AGE_RULE = '\n[[rules.eligibility]]\noffer_category = "bakery"\nrequire = "{}"\n'


def age_rule(require: str) -> Callable[[str], str]:
    return lambda t: t + AGE_RULE.format(require)


def ages(*values: Any) -> Callable[[World], None]:
    def edit(w: World) -> None:
        for row, value in zip(w["customers"], values):
            row["age_band"] = value
    return edit


SCENARIO_CASES = [
    # rules on customers' columns (rules.eligibility)
    Case("eligibility-missing-column", where("customers", "age_band") + ["missing"],
         toml=age_rule("age_band >= 21")),
    Case("eligibility-text-in-number-column",
         where("customers", "age_band") + ["must be numbers", "sample rows", "old"],
         world=ages(30, "old", 18, 40), toml=age_rule("age_band >= 21")),
    # NaN compared as the largest number: a customer of age NaN met "age_band >= 21"; a
    # Boolean column was compared as 0 and 1
    Case("eligibility-nan-in-number-column",
         where("customers", "age_band") + ["finite", "sample rows", "NaN"],
         world=ages(30, "NaN", 18, 40), toml=age_rule("age_band >= 21")),
    Case("eligibility-boolean-number-column",
         where("customers", "age_band") + ["must be numbers", "Boolean"],
         world=ages(30, 25, 18, 40), files=parquet_column("customers", "age_band",
                                                          pl.Series([True] * 10)),
         toml=age_rule("age_band >= 21")),
    Case("eligibility-bad-predicate", ["rules.eligibility.0", "not a valid predicate"],
         world=ages(30, 25, 18, 40), toml=age_rule("age_band >= ")),
    Case("eligibility-python-in-predicate", ["rules.eligibility.0", "not a valid predicate"],
         world=ages(30, 25, 18, 40), toml=age_rule("__import__('os').system('true')")),
    Case("eligibility-mixed-types", ["rules.eligibility.0", "numbers and texts"],
         world=ages(30, 25, 18, 40), toml=age_rule("age_band >= 21 or age_band == 'x'")),
    Case("toml-syntax", ["not valid TOML"], toml=lambda t: t + "\n[rules\nmax = 1\n"),
    Case("unknown-top-key", ["colour", "Extra inputs"], toml=lambda t: 'colour = "red"\n' + t),
    Case("unknown-rule-knob", ["rules.max_offers_per_client"],
         rules={"max_offers_per_client": 2}),
    Case("unknown-pacing", ["rules.pacing"], rules={"pacing": "fast"}),
    Case("negative-change-penalty", ["rules.change_penalty"], rules={"change_penalty": -1.0}),
    Case("string-for-int", ["rules.max_offers_per_customer"],
         rules={"max_offers_per_customer": "five"}),
    Case("negative-cap", ["rules.max_offers_per_category"], rules={"max_offers_per_category": -1}),
    Case("fractional-cap", ["rules.max_offers_per_customer"],
         rules={"max_offers_per_customer": 2.5}),
    Case("negative-cooldown", ["rules.cooldown_weeks"], rules={"cooldown_weeks": -2}),
    Case("negative-global-budget", ["rules.global_budget"], rules={"global_budget": -10.0}),
    Case("nan-global-budget", ["rules.global_budget"], toml=lambda t: t + "global_budget = nan\n"),
    Case("inf-budget-scale", ["rules.budget_scale"], toml=lambda t: t + "budget_scale = inf\n"),
    Case("zero-gap-tolerance", ["solver.gap_tolerance"], solver={"gap_tolerance": 0}),
    Case("zero-time-limit", ["solver.time_limit_s"], solver={"time_limit_s": 0}),
    Case("unknown-policy", ["rules.sensitive_policy", "opt_in"],
         rules={"sensitive_policy": "ask_nicely"}),
    Case("unknown-solver", ["solver.method"], solver={"method": "magic"}),
    # work grew with the thread count: 2**31 - 1 threads hung the features stage, 10**7 took
    # 11 s more on 2,000 customers; a memory limit of 1e300 GB crashed (OverflowError, exit 70)
    Case("threads-beyond-any-machine", ["solver.threads", "1024"],
         solver={"threads": 10**7}),
    Case("memory-limit-beyond-any-machine", ["solver.memory_limit_gb"],
         solver={"memory_limit_gb": 1e300}),
    # accepted, it would start a LocalCluster of a million processes under backend = "dask"
    Case("dask-workers-beyond-any-machine", ["solver.workers", "1024"],
         solver={"workers": 10**6}),
    Case("missing-week", ["week"], toml=lambda t: t.replace("week = 40\n", "")),
    Case("data-folder-missing", ["input folder not found", "nowhere"],
         toml=lambda t: t.replace('data = "data"', 'data = "nowhere"')),
    # a NUL character in a path crashed resolving it (ValueError, exit 70)
    Case("nul-in-data-path", ["data", "embedded null byte"],
         toml=lambda t: t.replace('data = "data"', 'data = "da\\u0000ta"')),
    Case("nul-in-output-path", ["output", "embedded null byte"],
         toml=lambda t: t.replace('output = "run"', 'output = "r\\u0000un"')),
    Case("nul-in-extends", ["scenario", "embedded null byte"],
         toml=lambda t: 'extends = "a\\u0000.toml"\n' + t),
    # the kernel cache's folder was never resolved: the NUL reached the dask workers' environment
    Case("nul-in-kernel-cache", ["solver.kernel_cache", "embedded null byte"],
         solver={"method": "lagrangian", "backend": "dask", "kernel_cache": "k"},
         toml=lambda t: t.replace('kernel_cache = "k"', 'kernel_cache = "k\\u0000c"')),
]


def build(root: Path, case: Case) -> Path:
    """Write the (broken) folder and scenario under ``root``; return the scenario path."""
    world = good_world()
    if case.world:
        case.world(world)
    write_world(root / "data", world)
    if case.files:
        case.files(root / "data")
    path = write_scenario(root / "scenario.toml", rules={"max_offers_per_customer": 3,
                                                         **case.rules},
                          solver=case.solver or None)
    if case.toml:
        path.write_text(case.toml(path.read_text()))
    return path


def invoke(path: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["run", str(path), *extra])


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_rejected(result: Result, case: Case) -> None:
    message = flat(result.stderr or result.output)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception   # no crash
    assert "error:" in message, message
    for phrase in case.expect:
        assert flat(phrase) in message, (phrase, message)
    assert "Traceback" not in message


def no_output(root: Path) -> None:
    assert not (root / "run").exists()
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".run")]
    assert leftovers == []


def test_good_world_runs(tmp_path):
    result = invoke(build(tmp_path, Case("good", [])), "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "assignments.parquet").is_file()


@pytest.mark.parametrize("case", INPUT_CASES + SCENARIO_CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_naming_table_and_column(tmp_path, case):
    result = invoke(build(tmp_path, case))
    assert_rejected(result, case)
    no_output(tmp_path)


def test_sample_rows_show_the_users_columns_only(tmp_path):
    case = Case("x", [], world=add_row("scores", **score(99, 1)))
    message = invoke(build(tmp_path, case)).stderr
    assert "{'customer_id': '99', 'offer_id': '1', 'p_redeem': 0.5, 'value': 1.0}" in message
    for internal in ("'c':", "'o':", "'p':", "__key"):
        assert internal not in message


def test_sample_rows_show_the_offending_row(tmp_path):
    case = Case("x", [], world=set_cell("offers", 0, discount=-3.5))
    message = invoke(build(tmp_path, case)).stderr
    assert "sample rows" in message and "-3.5" in message and "(1 row)" in message


EARLIER_RUN_CASES = [c for c in INPUT_CASES + SCENARIO_CASES
                     if c.id in {"missing-table-offers", "text-discount", "duplicate-customer",
                                 "negative-value", "scores-unknown-offer", "latin-1-csv",
                                 "toml-syntax", "fractional-cap", "nan-budget"}]


@pytest.mark.parametrize("case", EARLIER_RUN_CASES, ids=lambda c: c.id)
def test_bad_input_leaves_an_earlier_run_untouched(tmp_path, case):
    good = invoke(build(tmp_path, Case("good", [])), "--quiet")
    assert good.exit_code == 0, good.output
    before = tree_bytes(tmp_path / "run")
    assert "manifest.json" in before
    for child in (tmp_path / "data").iterdir():
        child.unlink()
    result = invoke(build(tmp_path, case))
    assert_rejected(result, case)
    assert tree_bytes(tmp_path / "run") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []


def test_bad_set_override_exits_2(tmp_path):
    path = build(tmp_path, Case("good", []))
    for override, phrase in [("rules.max_offers_per_customer=-1", "max_offers_per_customer"),
                             ("rules.no_such_knob=3", "no_such_knob"),
                             ("rules.max_offers_per_customer", "KEY=VALUE"),
                             # inverted ranges ran: every clv factor became clv_cap, and p_redeem
                             # fell with affinity
                             ("objective.clv_cap=0.05", "clv_floor (0.1) must be at most objective.clv_cap"),
                             ("affinity.p_floor=0.5", "p_floor (0.5) must be at most affinity.p_max"),
                             # a NUL in a path crashed resolving it (exit 70)
                             ('data="a\\u0000b"', "embedded null byte")]:
        result = invoke(path, "--set", override)
        assert result.exit_code == 2, (override, result.output)
        assert phrase in flat(result.stderr), (override, result.stderr)
    no_output(tmp_path)


# --------------------------------------------------------------------------------------------------
# rows that are tolerated


def test_history_and_redemptions_may_name_unknown_customers_and_offers(tmp_path):
    case = Case("ok", [], world=both(
        add_row("history", customer_id=99, offer_id=1, week=39),
        add_row("history", customer_id=1, offer_id=77, week=39),
        add_row("redemptions", customer_id=98, offer_id=2, week=37),
        add_row("redemptions", customer_id=2, offer_id=76, week=37),
        add_row("redemptions", customer_id=97, offer_id=75, week=36)))
    result = invoke(build(tmp_path, case), "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dropped_rows"]["history_unknown_customer_or_offer"] == 2
    assert manifest["dropped_rows"]["redemptions_unknown_customer_or_offer"] == 3


def test_transactions_naming_unknown_products_are_counted(tmp_path):
    case = Case("ok", [], world=both(
        add_row("transactions", customer_id=2, product_id=999, week=38, sales_value=1.0),
        add_row("transactions", customer_id=3, product_id=998, week=37, sales_value=4.0),
        add_row("transactions", customer_id=55, product_id=101, week=37, sales_value=4.0)))
    result = invoke(build(tmp_path, case), "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dropped_rows"]["transactions_unknown_product"] == 2
    assert manifest["dropped_rows"]["transactions_unknown_customer"] == 1
    assert manifest["inputs"]["transactions"]["rows"] == 4


def test_transactions_with_unknown_products_on_the_affinity_path(tmp_path):
    world = good_world()
    world.pop("scores")
    world["transactions"] += [
        {"customer_id": c, "product_id": p, "week": 36 + c, "sales_value": 2.0}
        for c in range(1, 5) for p in (101, 102, 103, 999)]
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 3})
    result = invoke(path, "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dropped_rows"]["transactions_unknown_product"] == 4


def test_csv_details_a_user_would_expect_to_work(tmp_path):
    world = good_world()
    world["transactions"].append({"customer_id": 2, "product_id": 102, "week": 38,
                                  "sales_value": 3.0, "discount": None})  # empty: no discount
    world.pop("scores")   # the affinity path reads transactions.discount
    write_world(tmp_path / "data", world)
    offers = tmp_path / "data" / "offers.csv"
    text = offers.read_text().replace("discount,", " discount ,", 1).replace("\n", "\r\n")
    offers.write_text(text)   # a header name with spaces around it, Windows line ends
    customers = tmp_path / "data" / "customers.csv"
    customers.write_bytes(b"\xef\xbb\xbf" + customers.read_bytes())   # a byte-order mark
    path = write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 3})
    result = invoke(path, "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "assignments.parquet").is_file()


# polars 1.x (the floor, requirements-floor.txt) fails to read a Categorical ID column that
# polars itself wrote ("Unrecognized type: 24"); the locked polars reads it
_POLARS_READS_NO_DICTIONARY_IDS = int(pl.__version__.split(".")[0]) < 2


def test_dictionary_encoded_text_ids_are_text_ids(tmp_path):
    """Parquet text IDs stored dictionary-encoded (pandas' ``category`` dtype; polars reads them
    as Categorical) are text IDs like any other: the run was refused ("IDs must be integers or
    text, not Categorical"); its files are those of the same IDs stored as plain text."""
    world = good_world()
    for rows in world.values():
        for row in rows:
            for column in ("customer_id", "offer_id", "product_id"):
                if column in row:
                    row[column] = f"id-{row[column]}"
    for fmt, folder in (("plain", "a"), ("dictionary", "b")):
        write_world(tmp_path / folder / "data", world, fmt="parquet")
        if fmt == "dictionary":
            for path in (tmp_path / folder / "data").glob("*.parquet"):
                frame = pl.read_parquet(path)
                frame.with_columns(pl.col(c).cast(pl.Categorical) for c in frame.columns
                                   if c.endswith("_id")).write_parquet(path)
        path = write_scenario(tmp_path / folder / "scenario.toml",
                              rules={"max_offers_per_customer": 3})
        result = invoke(path, "--quiet")
        if fmt == "dictionary" and _POLARS_READS_NO_DICTIONARY_IDS:
            # the lowest polars pyproject.toml allows cannot read these columns back: a clear
            # refusal, nothing written
            assert result.exit_code == 2 and "cannot read" in result.output, result.output
            assert not (tmp_path / folder / "run").exists()
            return
        assert result.exit_code == 0, result.output
        checked = CliRunner().invoke(main, ["check", str(path)])
        assert checked.exit_code == 0, checked.output
    assert pl.read_parquet(tmp_path / "b" / "run" / "assignments.parquet").schema["customer_id"] \
        == pl.Utf8
    for name in ("assignments.parquet", "assignments.csv", "offers_summary.csv"):
        assert (tmp_path / "a" / "run" / name).read_bytes() == \
            (tmp_path / "b" / "run" / name).read_bytes(), name


def test_header_only_transactions_on_the_scores_path(tmp_path):
    write_world(tmp_path / "data", {**good_world(), "transactions": []},
                headers={"transactions": ["customer_id", "product_id", "week", "sales_value"]})
    path = write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 3})
    result = invoke(path, "--quiet")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, option", [
    (["measure", "--power", "--effect", "nan", "--baseline-sd", "1", "--customers", "100"],
     "--effect"),
    (["measure", "--power", "--effect", "inf", "--baseline-sd", "1", "--customers", "100"],
     "--effect"),
    (["measure", "--power", "--effect", "1", "--baseline-sd", "nan", "--customers", "100"],
     "--baseline-sd"),
    (["measure", "--power", "--effect", "1", "--baseline-sd", "1", "--customers", "100",
      "--alpha", "nan"], "--alpha"),
    (["measure", "--power", "--effect", "1", "--baseline-sd", "1", "--customers", "100",
      "--power-target", "nan"], "--power-target"),
    (["measure", "x", "--outcomes", "y", "--margin-rate", "nan"], "--margin-rate"),
    (["demo-outcomes", "d", "r", "o", "--lift", "nan"], "--lift"),
    (["demo-outcomes", "d", "r", "o", "--lift", "inf"], "--lift"),
])
def test_a_float_option_that_is_not_finite_is_a_usage_error(tmp_path, monkeypatch, args, option):
    """click's FloatRange lets NaN through every bound (and infinity through an open one): the
    command failed later with a ValueError traceback, exit 1. A finite-only range: exit 2."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert option in result.output and "not a finite number" in result.output
    assert list(tmp_path.iterdir()) == []
