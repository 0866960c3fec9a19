"""``offeropt check`` for channels (the optional ``channels`` and ``customer_channels`` tables),
re-derived from the raw tables with polars (this module imports only ``core`` and ``io``, like
the rest of the checker).

=========================== ===================================================================
``channel_missing``         an assignment of a run with channels names no ``channel_id`` (or
                            the assignments have no such column)
``channel_consent``         an assignment goes out on a channel its customer did not consent to
                            in ``customer_channels`` (an unknown channel included)
``channel_capacity``        a channel carries more assignments than its ``capacity``
``contact_budget``          the assignments' contact cost (``cost_per_contact`` of each one's
                            channel) exceeds ``rules.contact_budget``
=========================== ===================================================================
"""
from __future__ import annotations

import polars as pl

from optimizer.check.base import Violation, _fmt, _over, _sample
from optimizer.core.config import Scenario
from optimizer.io.validate import Inputs


def channel_violations(known: pl.DataFrame, inputs: Inputs, scenario: Scenario
                       ) -> list[Violation]:
    """Every channel rule over the assignments with known customer and offer (``known``: the
    indexed assignments, ``c`` set); none without the channel tables."""
    if inputs.channels is None or inputs.customer_channels is None:
        return []
    if "channel_id" not in known.columns:
        return [Violation("channel_missing", f"{known.height} assignment(s) of a run with "
                          "channels, and the assignments have no channel_id column",
                          known.height, _sample(known, ["customer_id", "offer_id"]))]
    out: list[Violation] = []
    missing = known.filter(pl.col("channel_id").is_null() | (pl.col("channel_id") == ""))
    if missing.height:
        out.append(Violation("channel_missing", f"{missing.height} assignment(s) without a "
                             "channel_id", missing.height,
                             _sample(missing, ["customer_id", "offer_id"])))
    sent = known.filter(pl.col("channel_id").is_not_null() & (pl.col("channel_id") != ""))
    consent = inputs.customer_channels.select(pl.col("c").cast(pl.Int64), "channel_id")
    bad = sent.with_columns(pl.col("c").cast(pl.Int64)).join(
        consent, on=["c", "channel_id"], how="anti", maintain_order="left")
    if bad.height:
        out.append(Violation("channel_consent", f"{bad.height} assignment(s) go out on a channel "
                             "their customer did not consent to in customer_channels",
                             bad.height, _sample(bad, ["customer_id", "offer_id", "channel_id"])))
    per = (sent.group_by("channel_id", maintain_order=True).agg(contacts=pl.len())
           .join(inputs.channels, on="channel_id", how="inner", maintain_order="left"))
    over = per.filter(pl.col("capacity").is_not_null() & (pl.col("contacts") > pl.col("capacity")))
    if over.height:
        first = over.row(0, named=True)
        out.append(Violation("channel_capacity", f"{over.height} channel(s) carry more "
                             f"assignments than their capacity (channel {first['channel_id']!r}: "
                             f"{first['contacts']} of {first['capacity']})", over.height,
                             _sample(over, ["channel_id", "contacts", "capacity"])))
    budget = scenario.rules.contact_budget
    if budget is not None:
        cost = float(per.select((pl.col("contacts") * pl.col("cost_per_contact")).sum()).item()
                     or 0.0)
        if pl.select(_over(pl.lit(cost), pl.lit(float(budget)))).item():
            out.append(Violation("contact_budget", f"the assignments' contact cost "
                                 f"{_fmt(cost)} exceeds rules.contact_budget {_fmt(budget)}", 1,
                                 []))
    return out


def contact_cost(a: pl.DataFrame, inputs: Inputs) -> float:
    """The assignments' contact cost: each one's channel's ``cost_per_contact`` (0.0 without
    channels or without a ``channel_id`` column; unknown channels cost nothing here, they are
    ``channel_consent`` violations)."""
    if inputs.channels is None or "channel_id" not in a.columns:
        return 0.0
    costs = inputs.channels.select("channel_id", "cost_per_contact")
    joined = a.select("channel_id").join(costs, on="channel_id", how="left",
                                          maintain_order="left")  # the sum's order
    return float(joined.get_column("cost_per_contact").fill_null(0.0).sum())
