"""``offeropt check`` for the always-on campaign rules, re-derived from the raw tables with polars
(this module imports only ``core`` and ``io``, like the rest of the checker).

=========================== ===================================================================
``offer_group``             a customer gets more offers of one ``offer_groups`` group than its
                            ``max_per_customer``
``funder_budget``           a funder's offers' expected spend exceeds its ``funders.budget``
``customer_attribute``      a customer gets an offer a ``[[rules.eligibility]]`` rule covers
                            without meeting its ``require`` (an empty column does not meet it)
=========================== ===================================================================
"""
from __future__ import annotations

from typing import Any

import polars as pl

from optimizer.check.base import Violation, _fmt, _over, _sample
from optimizer.check.channels import channel_violations
from optimizer.check.rules import _offer_categories
from optimizer.core.config import Scenario
from optimizer.core.numerics import group_sums
from optimizer.core.predicate import parse, prepared, to_polars
from optimizer.core.schemas import normalize_category_name
from optimizer.io.validate import Inputs


def campaign_violations(known: pl.DataFrame, inputs: Inputs, scenario: Scenario
                        ) -> list[Violation]:
    """Every campaign rule over the assignments with known customer and offer (``known``: the
    indexed assignments, ``c`` and ``o`` set)."""
    return (_check_offer_groups(known, inputs) + _check_attributes(known, inputs, scenario)
            + _check_funders(known, inputs) + channel_violations(known, inputs, scenario))


def _check_funders(known: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    """Each funder's spend: the assignments' ``cost`` (the larger of the written and the
    recomputed expected cost) over the offers whose trimmed ``funded_by`` names it."""
    if inputs.funders is None:
        return []
    funded = inputs.offers.select(
        "o", pl.col("funded_by").cast(pl.Utf8).str.strip_chars().alias("funded_by"))
    spend = group_sums(known.join(funded, on="o", how="inner", maintain_order="left"),
                       ["funded_by"], {"spent": pl.col("cost"), "slack": pl.col("cost_slack")})
    bad = (inputs.funders.join(spend, on="funded_by", how="inner", maintain_order="left")
           .filter(pl.col("budget").is_not_null()
                   & _over(pl.col("spent"), pl.col("budget"), pl.col("slack"))))
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("funder_budget",
                      f"{bad.height} funder(s) spend more than their budget (funder "
                      f"{first['funded_by']!r} spends {_fmt(first['spent'])} of "
                      f"{_fmt(first['budget'])})", bad.height,
                      _sample(bad, ["funded_by", "spent", "budget"]))]


def _check_attributes(known: pl.DataFrame, inputs: Inputs, scenario: Scenario
                      ) -> list[Violation]:
    out: list[Violation] = []
    for k, rule in enumerate(scenario.rules.eligibility):
        bad = attribute_hits(known, inputs, rule)
        if bad.height:
            out.append(Violation(
                "customer_attribute",
                f"{bad.height} assignment(s) give an offer of rules.eligibility[{k}] "
                f"(offer_category = {rule.offer_category!r}) to customers not meeting "
                f"require = {rule.require!r}", bad.height,
                _sample(bad, ["customer_id", "offer_id"])))
    return out


def attribute_hits(pairs: pl.DataFrame, inputs: Inputs, rule: Any) -> pl.DataFrame:
    """The rows of ``pairs`` (``c``, ``o``) that the ``[[rules.eligibility]]`` ``rule`` covers
    and whose customer does not meet its ``require`` (an empty column does not meet it)."""
    assert inputs.customer_attributes is not None
    node = parse(rule.require)
    meets = (prepared(inputs.customer_attributes, node).with_row_index("c")
             .select(pl.col("c").cast(pl.Int32), to_polars(node).alias("__meets")))
    if rule.offer_category is not None:
        covered = (_offer_categories(inputs)
                   .filter(pl.col("category") == normalize_category_name(rule.offer_category))
                   .select("o").unique())
        pairs = pairs.join(covered, on="o", how="semi", maintain_order="left")
    return (pairs.with_columns(pl.col("c").cast(pl.Int32))
            .join(meets, on="c", how="left", maintain_order="left")
            .filter(~pl.col("__meets").fill_null(False)).drop("__meets"))


def _check_offer_groups(known: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    if inputs.offer_groups is None:
        return []
    groups = inputs.offer_groups.select("group_id", "o", "max_per_customer")
    per = (known.join(groups, on="o", how="inner", maintain_order="left")
           .group_by("c", "group_id", maintain_order=True)
           .agg(customer_id=pl.first("customer_id"), offers=pl.len(),
                max_per_customer=pl.first("max_per_customer"), offer_ids=pl.col("offer_id")))
    bad = per.filter(pl.col("offers") > pl.col("max_per_customer"))
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("offer_group",
                      f"{bad.height} (customer, group) pair(s) exceed the group's "
                      f"max_per_customer (customer {first['customer_id']!r} gets "
                      f"{first['offers']} offers of group {first['group_id']!r}, at most "
                      f"{first['max_per_customer']})", bad.height,
                      _sample(bad, ["customer_id", "group_id", "offers", "max_per_customer",
                                    "offer_ids"]))]
