"""The manifest's campaign figures against the run's assignments and the inputs, for
``offeropt check`` (rule ``manifest``, :mod:`optimizer.check.figures`): ``funders``,
``offer_groups``, ``group_flights``, ``channels`` and ``contact_budget`` (docs/contract.md,
"Always-on campaign rules", "Flights and pacing" and "Channels"), re-derived from the raw tables
with polars. The prices (``shadow_price``) are the solver's and are not re-derived; every count,
sum and share is.

A figure is compared when the manifest lists it (a run of an earlier version may not); a listed
entry that the inputs do not give, or an entry the inputs give that the list lacks, is a
problem too. Sums allow ``FIGURE_RTOL`` of their magnitude plus what reading a CSV copy may have
rounded (:data:`optimizer.check.base.ROUNDING`).
"""
from __future__ import annotations

from typing import Any

import polars as pl

from optimizer.check.base import ROUNDING, _fmt
from optimizer.check.flights import group_caps
from optimizer.core.config import Scenario
from optimizer.core.numerics import group_sums
from optimizer.io.validate import Inputs

FIGURE_RTOL, FIGURE_ATOL = 1e-9, 1e-9      # manifest figures == recomputed

Expected = dict[str, dict[str, Any]]       # per entry's key: its figures


def campaign_figure_problems(manifest: dict[str, Any], a: pl.DataFrame, inputs: Inputs,
                             scenario: Scenario) -> list[str]:
    """What disagrees between the manifest's campaign entries and the assignments (``a`` as
    :func:`optimizer.check.verify.indexed_assignments`) and inputs, one text per problem."""
    known = a.filter(pl.col("c").is_not_null() & pl.col("o").is_not_null()).with_columns(
        cost=pl.col("expected_cost").cast(pl.Float64),
        cost_rounding=pl.col("cost_slack"), p_rounding=pl.col(ROUNDING))
    problems: list[str] = []
    if inputs.funders is not None:
        problems += _compare(manifest, "funders", "funded_by", _funders(known, inputs))
    if inputs.offer_groups is not None:
        problems += _compare(manifest, "offer_groups", "group_id", _groups(known, inputs))
    if inputs.flights is not None:
        problems += _compare(manifest, "group_flights", "flight_id",
                             _group_flights(known, inputs, scenario))
    if inputs.channels is not None and inputs.customer_channels is not None:
        channels, contact = _channels(known, inputs)
        problems += _compare(manifest, "channels", "channel_id", channels)
        if isinstance(manifest.get("contact_budget"), dict):
            problems += _entry_problems("contact_budget", manifest["contact_budget"], contact)
    return problems


def _sums(known: pl.DataFrame, members: pl.DataFrame, key: str) -> pl.DataFrame:
    """Per ``key`` of ``members`` (``key``, ``o``): the assignments' expected cost and
    redemptions, and how much reading may have rounded each."""
    return group_sums(known.join(members, on="o", how="inner", maintain_order="left_right"),
                      [key], {"cost": pl.col("cost"), "cost_slack": pl.col("cost_rounding"),
                              "cost_abs": pl.col("cost").abs(),
                              "redemptions": pl.col("p_redeem"),
                              "redemptions_slack": pl.col("p_rounding")})


def _share(cost: float, budget: float | None) -> float | None:
    return cost / budget if budget is not None and budget > 0 else None


def _funders(known: pl.DataFrame, inputs: Inputs) -> Expected:
    assert inputs.funders is not None
    members = inputs.offers.select(
        "o", funded_by=pl.col("funded_by").cast(pl.Utf8).str.strip_chars())
    counts = members.group_by("funded_by").agg(offers=pl.len())
    sums = _sums(known, members, "funded_by")
    rows = (inputs.funders.join(counts, on="funded_by", how="left", maintain_order="left")
            .join(sums, on="funded_by", how="left", maintain_order="left"))
    out: Expected = {}
    for r in rows.iter_rows(named=True):
        cost, red = r["cost"] or 0.0, r["redemptions"] or 0.0
        floor = r["min_redemptions"] or 0.0
        slack, red_slack = r["cost_slack"] or 0.0, r["redemptions_slack"] or 0.0
        out[str(r["funded_by"])] = {
            "offers": r["offers"] or 0,
            "expected_cost": (cost, slack),
            "budget_used": (_share(cost, r["budget"]),
                            _share(slack, r["budget"]) if r["budget"] else 0.0),
            "expected_redemptions": (red, red_slack),
            "redemption_shortfall": (max(0.0, floor - red), red_slack)}
    return out


def _groups(known: pl.DataFrame, inputs: Inputs) -> Expected:
    assert inputs.offer_groups is not None
    groups = inputs.offer_groups.select("group_id", "o", "offer_id", "max_per_customer")
    per_customer = (known.join(groups, on="o", how="inner")
                    .group_by("group_id", "c").agg(n=pl.len(),
                                                   limit=pl.first("max_per_customer")))
    usage = per_customer.group_by("group_id").agg(
        assignments=pl.col("n").sum(), customers=pl.len(),
        at_limit=(pl.col("n") >= pl.col("limit")).sum())
    out: Expected = {}
    for g, rows in groups.group_by("group_id", maintain_order=True):
        name = str(g[0])
        used = usage.filter(pl.col("group_id") == name)
        first = used.row(0, named=True) if used.height else {}
        out[name] = {"offers": sorted(str(o) for o in rows.get_column("offer_id").unique()),
                     "assignments": int(first.get("assignments", 0)),
                     "customers": int(first.get("customers", 0)),
                     "customers_at_limit": int(first.get("at_limit", 0))}
    return out


def _group_flights(known: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> Expected:
    caps, members = group_caps(inputs, scenario)
    counts = members.group_by("flight_id").agg(offers=pl.len())
    rows = (caps.join(counts, on="flight_id", how="left")
            .join(_sums(known, members, "flight_id"), on="flight_id", how="left"))
    out: Expected = {}
    for r in rows.iter_rows(named=True):
        cost, slack = r["cost"] or 0.0, r["cost_slack"] or 0.0
        out[str(r["flight_id"])] = {
            "offers": r["offers"] or 0, "expected_cost": (cost, slack),
            "week_budget": (r["flight_cap"], 0.0),
            "budget_used": (_share(cost, r["flight_cap"]),
                            _share(slack, r["flight_cap"]) if r["flight_cap"] else 0.0)}
    return out


def _channels(known: pl.DataFrame, inputs: Inputs) -> tuple[Expected, dict[str, Any]]:
    assert inputs.channels is not None and inputs.customer_channels is not None
    contacts = (known.filter(pl.col("channel_id").is_not_null())
                .group_by("channel_id").agg(contacts=pl.len())
                if "channel_id" in known.columns
                else pl.DataFrame(schema={"channel_id": pl.Utf8, "contacts": pl.UInt32}))
    consenting = inputs.customer_channels.group_by("channel_id").agg(consenting=pl.len())
    rows = (inputs.channels.join(contacts, on="channel_id", how="left", maintain_order="left")
            .join(consenting, on="channel_id", how="left", maintain_order="left"))
    out: Expected = {}
    total = 0.0
    for r in rows.iter_rows(named=True):
        n, unit = int(r["contacts"] or 0), float(r["cost_per_contact"] or 0.0)
        total += n * unit
        out[str(r["channel_id"])] = {"contacts": n, "contact_cost": (n * unit, 0.0),
                                     "consenting_customers": int(r["consenting"] or 0)}
    return out, {"contact_cost": (total, 0.0)}


def _compare(manifest: dict[str, Any], name: str, key: str, expected: Expected) -> list[str]:
    listed = manifest.get(name)
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        return [f"{name} is not a list of entries"]
    given = {str(e.get(key)): e for e in listed}
    problems = []
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or extra:
        problems.append(f"{name} lists {sorted(given)[:5]}, the inputs give {sorted(expected)[:5]}")
    for k in sorted(set(given) & set(expected)):
        problems += _entry_problems(f"{name}[{key}={k}]", given[k], expected[k])
    return problems


def _entry_problems(where: str, entry: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    problems = []
    for figure, want in expected.items():
        if figure not in entry:
            continue
        have = entry[figure]
        if isinstance(want, tuple):   # (value, rounding): a float figure
            value, slack = want
            if not _same_number(have, value, slack):
                problems.append(f"{where}.{figure} is {_shown(have)}, the assignments and inputs "
                                f"give {_shown(value)}")
        elif figure == "offers" and isinstance(want, list):
            if not isinstance(have, list) or sorted(str(o) for o in have) != want:
                problems.append(f"{where}.offers is {have!r}, the inputs give {want}")
        elif have != want or isinstance(have, bool):
            problems.append(f"{where}.{figure} is {have!r}, the assignments and inputs give "
                            f"{want!r}")
    return problems


def _same_number(have: Any, want: float | None, slack: float | None) -> bool:
    if want is None or have is None:
        return want is None and have is None
    if isinstance(have, bool) or not isinstance(have, (int, float)):
        return False
    return abs(float(have) - want) <= (FIGURE_RTOL * max(abs(float(have)), abs(want))
                                       + FIGURE_ATOL + (slack or 0.0))


def _shown(value: Any) -> str:
    return _fmt(value) if isinstance(value, float) else repr(value)
