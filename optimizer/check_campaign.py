"""``offeropt check`` for the always-on campaign rules, re-derived from the raw tables with polars
(this module imports only ``core`` and ``io``, like the rest of the checker).

=========================== ===================================================================
``offer_group``             a customer gets more offers of one ``offer_groups`` group than its
                            ``max_per_customer``
=========================== ===================================================================
"""
from __future__ import annotations

import polars as pl

from optimizer.check import Violation, _sample
from optimizer.io.validate import Inputs


def campaign_violations(known: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    """Every campaign rule over the assignments with known customer and offer (``known``: the
    indexed assignments, ``c`` and ``o`` set)."""
    return _check_offer_groups(known, inputs)


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
