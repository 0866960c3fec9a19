"""Column names and types of every table, input and output (the data contract in code)."""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

ID = "id"  # marker: an ID column, integer or string, kept as the input typed it
STR = pl.Utf8
FLOAT = pl.Float64
INT = pl.Int64


@dataclass(frozen=True)
class TableSchema:
    """A table of the input folder: its required and optional columns and their kinds."""

    name: str
    required_table: bool
    columns: dict[str, object]
    optional: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = field(default=())

    @property
    def required_columns(self) -> list[str]:
        return [c for c in self.columns if c not in self.optional]


INPUT_TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in [
        TableSchema("customers", True, {"customer_id": ID, "segment": STR, "clv": FLOAT},
                    optional=("segment", "clv"), id_columns=("customer_id",)),
        TableSchema("transactions", True,
                    {"customer_id": ID, "product_id": ID, "week": INT, "sales_value": FLOAT,
                     "date": pl.Date, "quantity": FLOAT, "discount": FLOAT},
                    optional=("date", "quantity", "discount"),
                    id_columns=("customer_id", "product_id")),
        TableSchema("products", True,
                    {"product_id": ID, "category": STR, "department": STR, "brand": STR},
                    optional=("department", "brand"), id_columns=("product_id",)),
        TableSchema("offers", True,
                    {"offer_id": ID, "discount": FLOAT, "budget": FLOAT, "category": STR,
                     "brand": STR, "margin": FLOAT, "min_customers": INT, "max_customers": INT,
                     "start_week": INT, "end_week": INT, "funded_by": STR,
                     "flight_budget": FLOAT, "flight_start_week": INT, "flight_end_week": INT,
                     "flight_id": STR},
                    optional=("category", "brand", "margin", "min_customers", "max_customers",
                              "start_week", "end_week", "funded_by", "flight_budget",
                              "flight_start_week", "flight_end_week", "flight_id"),
                    id_columns=("offer_id",)),
        TableSchema("offer_products", False, {"offer_id": ID, "product_id": ID},
                    id_columns=("offer_id", "product_id")),
        TableSchema("restrictions", False, {"customer_id": ID, "category": STR, "rule": STR},
                    id_columns=("customer_id",)),
        TableSchema("history", False, {"customer_id": ID, "offer_id": ID, "week": INT,
                                        "expected_cost": FLOAT},
                    optional=("expected_cost",), id_columns=("customer_id", "offer_id")),
        TableSchema("redemptions", False, {"customer_id": ID, "offer_id": ID, "week": INT},
                    id_columns=("customer_id", "offer_id")),
        TableSchema("offer_groups", False,
                    {"group_id": STR, "offer_id": ID, "max_per_customer": INT},
                    id_columns=("offer_id",)),
        TableSchema("funders", False,
                    {"funded_by": STR, "budget": FLOAT, "min_redemptions": FLOAT},
                    optional=("min_redemptions",)),
        # channels and consent (optimizer/model/channels.py)
        TableSchema("channels", False,
                    {"channel_id": STR, "capacity": INT, "cost_per_contact": FLOAT},
                    optional=("capacity", "cost_per_contact")),
        TableSchema("customer_channels", False, {"customer_id": ID, "channel_id": STR},
                    id_columns=("customer_id",)),
        TableSchema("scores", False,
                    {"customer_id": ID, "offer_id": ID, "p_redeem": FLOAT, "value": FLOAT},
                    id_columns=("customer_id", "offer_id")),
        # flights and pacing (optimizer/model/flights.py)
        TableSchema("spend", False, {"offer_id": ID, "week": INT, "amount": FLOAT},
                    id_columns=("offer_id",)),
        TableSchema("forecast", False, {"offer_id": ID, "week": INT, "demand": FLOAT},
                    id_columns=("offer_id",)),
        # group flights (offers.flight_id names a row)
        TableSchema("flights", False,
                    {"flight_id": STR, "flight_budget": FLOAT, "flight_start_week": INT,
                     "flight_end_week": INT}),
    ]
}

# Which master table defines each ID (its type is the type every other table is read as).
ID_MASTER = {"customer_id": "customers", "product_id": "products", "offer_id": "offers"}

RESTRICTION_RULES = ("exclude", "opt_in")

ASSIGNMENT_COLUMNS = ["customer_id", "rank", "offer_id", "p_redeem", "expected_cost", "score"]
OFFER_SUMMARY_COLUMNS = [
    "offer_id", "customers", "expected_redemptions", "expected_cost", "budget", "budget_used",
    "min_customers", "max_customers", "shortfall", "shadow_price",
]


def normalize_category(expr: pl.Expr) -> pl.Expr:
    """Category names compare after trimming spaces and ignoring case (docs/contract.md)."""
    return expr.cast(pl.Utf8).str.strip_chars().str.to_uppercase()


def normalize_category_name(name: str) -> str:
    """The same normalisation for one Python string (scenario knobs)."""
    return name.strip().upper()
