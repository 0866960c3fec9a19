"""``offeropt check``: every pin missing from the plan is justified (rule ``pin``, docs/contract.md,
"Stable lists"), re-derived here from the inputs and the run folder, independently of
:mod:`optimizer.model.pins`.

A pinned pair (``stability``'s pinned pairs) missing from the plan is justified when

1. **control**: her customer is listed in the run's controls as a universal control, or the pair
   as a per-offer control (the plan withheld it, or she was released anyway);
2. **per-pair rule**: a rule the check itself verifies forbids the pair this week (``window``,
   ``exclude``, ``sensitive``, ``cooldown``, ``excluded_category``, ``customer_attribute``;
   the masks of :mod:`optimizer.check.rules` and :mod:`optimizer.check.campaign`);
3. **not a candidate** (scores path): the pair is not listed in ``scores`` or its value is <= 0;
4. **capacity**: adding it back to what the pins *kept before it* use breaks a capacity rule:
   her pins reach her cap (``max_offers_per_customer``, lowered by the frequency window's
   room), one of its categories ``max_offers_per_category``, one of its offer groups its
   ``max_per_customer``, its offer ``max_customers``; or its expected cost ``x`` on top of
   their spend exceeds its offer's budget (``budget x budget_scale``, or its flight's week
   share when smaller), its funder's budget, its group flight's week share or
   ``global_budget`` (with the check's budget slack, 1e-9 relative plus 1e-6 absolute, taken in
   the release's favour: the check's budgets may differ from the solve's in the last bits, so
   a pin that would fit within that slack of a full budget is let pass);
5. **channel** (with the ``channels`` tables): her customer consented to no channel in
   ``customer_channels``; or each of her consented channels is closed to it: no room
   (``capacity``) beside the kept pins of at least its value that the plan sends on it, or its
   ``cost_per_contact`` on top of those kept pins' contact cost exceeds ``rules.contact_budget``
   (the same slack): the pass tries her cheapest channel with room, so a full cheap channel
   sends her to a dearer one that the budget may refuse. A withheld pin's channel is not in the plan: it
   counts on each channel its customer consented to, at her dearest consented channel's cost
   (again a superset of what the pass used).

Why (4) holds: the solve's capacity pass keeps pins best value first (ties: customer, offer)
and every kept pin is in the plan as solved (the plan as sent, plus what the controls withheld);
a pin released by that pass broke a limit with the pins kept before it, and those are among the
pinned pairs of the plan (or the controls) whose value is at least its own. "Kept before it"
is read as: the pinned pairs in the plan, or withheld (a per-offer control pair, or any pinned
pair of a universal control, whose withheld sends are not listed pair by pair) of value >= its
own (ties included) -- a superset of the pins the pass kept before it, so a justified release
is never reported.

What is not re-derived (and so accepted as the manifest states it):

- the built-in affinity path's values: a pin's value (whether it is a candidate, value > 0) and
  its order in the pass are unknown, so every pinned pair of the plan counts as kept before it,
  and its cost is bounded by its offer's ``discount`` (``p_redeem <= 1``); pins with no other
  reason are accepted as ``not_a_candidate`` up to the manifest's count of those;
- which listed pairs ``solver.scores_per_customer`` left out: likewise, the pins with no other
  reason are accepted up to the manifest's ``not_a_candidate`` count;
- a withheld pin's cost on the affinity path: bounded by its offer's discount.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from optimizer.check.base import BUDGET_ATOL, BUDGET_RTOL, Violation, _sample
from optimizer.check.campaign import attribute_hits
from optimizer.check.controls import PER_OFFER, UNIVERSAL, run_controls
from optimizer.check.flights import flight_caps, group_caps
from optimizer.check.rules import (
    _cooldown_hits,
    _exclude_hits,
    _excluded_category_hits,
    _listed_values,
    _offer_categories,
    _outside_window,
    _sensitive_hits,
)
from optimizer.core.config import Scenario
from optimizer.io.validate import Inputs

_TIE = 1e-9  # relative: pins of (nearly) equal value count as kept before each other


def unjustified_pins(pinned: pl.DataFrame, known: pl.DataFrame, inputs: Inputs,
                     scenario: Scenario, run_dir: Path | None, pins: dict[str, Any]
                     ) -> list[Violation]:
    """The ``pin`` violation for the pinned pairs (``c``, ``o``) missing from the plan
    (``known``: the assignments with ``c``, ``o``, ``cost`` and ``cost_slack``) that nothing
    justifies (module
    docstring); ``pins``: the manifest's ``stability.pins``."""
    frame = _pins_frame(pinned, known, inputs, run_dir)
    missing = frame.filter(~pl.col("in_plan"))
    if not missing.height:
        return []
    ok = missing.filter(pl.col("control")).get_column("id")
    ok = pl.concat([ok, _forbidden(missing.filter(~pl.col("control")), inputs, scenario)])
    listed = "table_value" in frame.columns
    if listed:
        ok = pl.concat([ok, missing.filter(~pl.col("listed") | (pl.col("table_value") <= 0))
                        .get_column("id")])
    rest = missing.filter(~pl.col("id").is_in(ok.implode()))
    if rest.height:
        ok = pl.concat([ok, _at_capacity(frame, rest, inputs, scenario),
                        _no_channel_room(frame, rest, inputs, scenario)])
        rest = rest.filter(~pl.col("id").is_in(ok.implode()))
    narrowed = (listed and scenario.solver.scores_per_customer is not None
                and scenario.solver.scores_per_customer < inputs.n_offers)
    presumed = 0
    if not listed or narrowed:  # the candidates cannot be re-derived: the manifest's count
        presumed = int(((pins.get("released") or {}).get("not_a_candidate")) or 0)
    if rest.height <= presumed:
        return []
    sample = (rest.join(inputs.customers.select("c", "customer_id"), on="c")
              .join(inputs.offers.select("o", "offer_id"), on="o")
              .select("customer_id", "offer_id").sort("customer_id", "offer_id"))
    extra = (f", beyond the {presumed} the manifest releases as not_a_candidate (not "
             "re-derived here)" if presumed else "")
    return [Violation(
        "pin", f"{rest.height} pin(s) missing from the plan without a reason: no control, "
        f"per-pair rule, candidate rule or capacity limit (given the pins kept before them) "
        f"releases them{extra}", rest.height - presumed,
        _sample(sample, ["customer_id", "offer_id"]))]


def _pins_frame(pinned: pl.DataFrame, known: pl.DataFrame, inputs: Inputs,
                run_dir: Path | None) -> pl.DataFrame:
    """Per pinned pair: ``id``, ``c``, ``o``, ``in_plan``, ``control`` (withheld or held out),
    ``kept`` (counts as a kept pin: in the plan or a control), ``plan_channel`` (its
    ``channel_id`` in the plan), ``neg`` (minus its value, 0 when
    unknown), ``x`` (its expected cost, or an upper bound of it) and, on the scores path,
    ``listed`` and ``table_value``."""
    frame = (pinned.select(pl.col("c").cast(pl.Int32), pl.col("o").cast(pl.Int32)).unique()
             .sort("c", "o").with_row_index("id")
             .join(known.group_by("c", "o").agg(
                 # an upper bound of the cost: what reading may have rounded away added
                 plan_cost=(pl.col("cost") + pl.col("cost_slack")).max(),
                 plan_channel=(pl.col("channel_id").first().cast(pl.Utf8)
                               if "channel_id" in known.columns else pl.lit(None, pl.Utf8)))
                   .with_columns(pl.col("c").cast(pl.Int32), pl.col("o").cast(pl.Int32)),
                   on=["c", "o"], how="left", maintain_order="left")
             .join(inputs.offers.select(pl.col("o").cast(pl.Int32), "discount", "start_week",
                                        "end_week"), on="o", how="left", maintain_order="left")
             .with_columns(in_plan=pl.col("plan_cost").is_not_null()))
    controls = run_controls(run_dir, inputs) if run_dir is not None else None
    if controls is not None:
        controls = controls.filter(pl.col("c").is_not_null())
        universal = controls.filter(pl.col("reason") == UNIVERSAL).select(
            pl.col("c").cast(pl.Int32)).unique()
        per_offer = controls.filter((pl.col("reason") == PER_OFFER) & pl.col("o").is_not_null()
                                    ).select(pl.col("c").cast(pl.Int32),
                                             pl.col("o").cast(pl.Int32)).unique()
        frame = frame.with_columns(control=(
            pl.col("c").is_in(universal.get_column("c").implode())
            | pl.struct("c", "o").is_in(per_offer.select(pl.struct("c", "o")).to_series()
                                        .implode())) & ~pl.col("in_plan"))
    else:
        frame = frame.with_columns(control=pl.lit(False))
    frame = frame.with_columns(kept=pl.col("in_plan") | pl.col("control"))
    values = _listed_values(frame.select("id", "c", "o"), inputs)
    if values is None:  # affinity path: value unknown, cost at most the discount
        return frame.with_columns(neg=pl.lit(0.0), x=pl.coalesce("plan_cost", "discount")
                                  .cast(pl.Float64))
    values = values.select("id", listed=pl.col("__in").fill_null(False),
                           table_value="table_value", table_p="table_p_redeem")
    return (frame.join(values, on="id", how="left", maintain_order="left")
            .with_columns(neg=-pl.col("table_value").fill_null(0.0),
                          x=pl.coalesce("plan_cost", pl.col("table_p") * pl.col("discount"),
                                        "discount").cast(pl.Float64)))


def _forbidden(missing: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> pl.Series:
    """The ids of the pins a per-pair rule forbids this week."""
    pairs = missing.select("id", "c", "o", "start_week", "end_week")
    cats = pairs.join(_offer_categories(inputs).with_columns(pl.col("o").cast(pl.Int32)),
                      on="o", how="inner")
    parts = [pairs.filter(_outside_window(scenario.week)).get_column("id"),
             _exclude_hits(cats, inputs).get_column("id"),
             _sensitive_hits(cats, inputs, scenario).get_column("id"),
             _excluded_category_hits(cats, scenario).get_column("id"),
             _cooldown_hits(pairs, inputs, scenario).get_column("id")]
    parts += [attribute_hits(pairs, inputs, rule).get_column("id")
              for rule in scenario.rules.eligibility]
    return pl.concat([p.cast(pl.UInt32) for p in parts])


def _used_before(kept: pl.DataFrame, rest: pl.DataFrame, by: list[str], amount: str
                 ) -> pl.DataFrame:
    """``rest`` (``id``, ``neg``, ``by``) with ``used``: the summed ``amount`` of the ``kept``
    rows of its ``by`` key whose value is at least its own (ties included)."""
    # rows of equal value keep their order: the cumulative sum's last bits follow it
    cum = (kept.sort([*by, "neg"], maintain_order=True)
           .with_columns(used=pl.col(amount).cum_sum().over(by))
           .group_by([*by, "neg"]).agg(pl.col("used").max()).sort("neg"))
    query = rest.with_columns(
        at=pl.col("neg") + _TIE * pl.max_horizontal(pl.col("neg").abs(), pl.lit(1.0))
    ).sort("at")
    return (query.join_asof(cum.rename({"neg": "at_kept"}), left_on="at", right_on="at_kept",
                            by=by, strategy="backward", check_sortedness=False)
            .with_columns(pl.col("used").fill_null(0)))


def _limits(inputs: Inputs, scenario: Scenario
            ) -> list[tuple[pl.DataFrame | None, list[str], pl.DataFrame, bool]]:
    """Each capacity rule as (what maps a pin's ``o`` to its keys, or None: keyed by the pin
    itself; the key columns; the limit per key, column ``limit``; whether it limits cost)."""
    rules, offers = scenario.rules, inputs.offers
    out: list[tuple[pl.DataFrame | None, list[str], pl.DataFrame, bool]] = []
    caps = inputs.customers.select(pl.col("c").cast(pl.Int32),
                                   limit=pl.lit(rules.max_offers_per_customer, pl.Float64))
    if rules.max_offers_per_window is not None:
        recent = pl.DataFrame(schema={"c": pl.Int32, "sent": pl.Int64})
        if inputs.history is not None:  # signed: pl.len() is unsigned, 6 - 7 would wrap
            recent = (inputs.history.filter((pl.col("week") > scenario.week - rules.window_weeks)
                                            & (pl.col("week") < scenario.week))
                      .group_by(pl.col("c").cast(pl.Int32)).agg(sent=pl.len().cast(pl.Int64)))
        caps = (caps.join(recent, on="c", how="left").with_columns(limit=pl.min_horizontal(
            "limit", (rules.max_offers_per_window - pl.col("sent").fill_null(0)).clip(0)
            .cast(pl.Float64))).select("c", "limit"))
    out.append((None, ["c"], caps, False))
    cats = _offer_categories(inputs).with_columns(pl.col("o").cast(pl.Int32))
    if rules.max_offers_per_category is not None:
        out.append((cats, ["c", "category"], cats.select("category").unique().with_columns(
            limit=pl.lit(rules.max_offers_per_category, pl.Float64)), False))
    if inputs.offer_groups is not None:
        groups = inputs.offer_groups.select(pl.col("o").cast(pl.Int32), "group_id")
        out.append((groups, ["c", "group_id"], inputs.offer_groups.group_by("group_id").agg(
            limit=pl.col("max_per_customer").first().cast(pl.Float64)), False))
    own = offers.select(pl.col("o").cast(pl.Int32))
    out.append((own, ["o"], offers.select(pl.col("o").cast(pl.Int32), limit=pl.col(
        "max_customers").cast(pl.Float64)).drop_nulls(), False))
    budget = (offers.select(pl.col("o").cast(pl.Int32), limit=pl.col("budget").cast(pl.Float64)
                            * rules.budget_scale)
              .join(flight_caps(inputs, scenario).select(pl.col("o").cast(pl.Int32),
                                                         "flight_cap"), on="o", how="left")
              .select("o", limit=pl.min_horizontal("limit", "flight_cap")).drop_nulls())
    out.append((own, ["o"], budget, True))
    if inputs.funders is not None:
        funded = offers.select(pl.col("o").cast(pl.Int32), pl.col("funded_by").cast(pl.Utf8)
                               .str.strip_chars()).drop_nulls()
        out.append((funded, ["funded_by"], inputs.funders.select(
            "funded_by", limit=pl.col("budget").cast(pl.Float64)).drop_nulls(), True))
    shares, members = group_caps(inputs, scenario)
    if shares.height:
        out.append((members.with_columns(pl.col("o").cast(pl.Int32)), ["flight_id"],
                    shares.select("flight_id", limit="flight_cap"), True))
    if rules.global_budget is not None:
        out.append((own.with_columns(every=pl.lit(0)), ["every"],
                    pl.DataFrame({"every": [0], "limit": [float(rules.global_budget)]}), True))
    return out


def _at_capacity(frame: pl.DataFrame, rest: pl.DataFrame, inputs: Inputs, scenario: Scenario
                 ) -> pl.Series:
    """The ids of ``rest``'s pins that a capacity rule releases given the kept pins of at least
    their value (module docstring, 4)."""
    kept = frame.filter(pl.col("kept")).with_columns(one=pl.lit(1.0))
    rest = rest.select("id", "c", "o", "neg", "x")
    found = [pl.Series("id", [], dtype=pl.UInt32)]
    for keys, by, limits, on_cost in _limits(inputs, scenario):
        held, asked = ((kept, rest) if keys is None else
                       (kept.join(keys, on="o", how="inner", maintain_order="left_right"),
                        rest.join(keys, on="o", how="inner")))
        asked = asked.join(limits.with_columns(pl.col(by[-1]).cast(asked.schema[by[-1]])),
                           on=by[-1:] if by[0] == "c" and len(by) > 1 else by, how="inner")
        if not asked.height:
            continue
        used = _used_before(held.select("neg", "one", "x", *by), asked, by,
                            "x" if on_cost else "one")
        over = (pl.col("used") + pl.col("x") > pl.col("limit") * (1 - BUDGET_RTOL) - BUDGET_ATOL
                if on_cost else pl.col("used") + 1 > pl.col("limit"))
        found.append(used.filter(over).get_column("id").cast(pl.UInt32))
    return pl.concat(found)


def _no_channel_room(frame: pl.DataFrame, rest: pl.DataFrame, inputs: Inputs,
                     scenario: Scenario) -> pl.Series:
    """The ids of ``rest``'s pins that cannot go out on a channel beside the kept pins of at
    least their value (module docstring, 5); none without the channel tables."""
    if inputs.channels is None or inputs.customer_channels is None:
        return pl.Series("id", [], dtype=pl.UInt32)
    channels = inputs.channels.select(pl.col("channel_id").cast(pl.Utf8), "capacity",
                                      cost=pl.col("cost_per_contact").cast(pl.Float64))
    consent = (inputs.customer_channels.select(pl.col("c").cast(pl.Int32),
                                               pl.col("channel_id").cast(pl.Utf8))
               .join(channels, on="channel_id", how="inner"))
    kept = frame.filter(pl.col("kept")).select("c", "neg", "in_plan", "plan_channel",
                                               one=pl.lit(1.0))
    sent = kept.filter(pl.col("in_plan")).select("neg", "one", channel_id="plan_channel")
    withheld = kept.filter(~pl.col("in_plan")).join(consent, on="c", how="inner",
                                                    maintain_order="left_right")
    held = pl.concat([sent, withheld.select("neg", "one", "channel_id")])
    asked = rest.select("id", "c", "neg").join(consent, on="c", how="left")
    none = asked.filter(pl.col("channel_id").is_null()).get_column("id")
    asked = asked.filter(pl.col("channel_id").is_not_null())
    used = _used_before(held, asked, ["channel_id"], "one").with_columns(
        blocked=pl.col("capacity").is_not_null() & (pl.col("used") + 1 > pl.col("capacity")))
    budget = scenario.rules.contact_budget
    if budget is not None:  # a channel with room is closed too when its cost breaks the budget
        cost = (sent.join(channels, on="channel_id", how="left", maintain_order="left")
                .select("neg", x=pl.col("cost").fill_null(0.0), every=pl.lit(0)))
        dearest = withheld.group_by("c", "neg", maintain_order=True).agg(x=pl.col("cost").max())
        held = pl.concat([cost, dearest.select("neg", "x", every=pl.lit(0))])
        spent = _used_before(held, asked.select("id", "neg").unique().with_columns(
            every=pl.lit(0)), ["every"], "x").select("id", spent="used")
        used = used.join(spent, on="id", how="left").with_columns(
            blocked=pl.col("blocked") | (pl.col("spent") + pl.col("cost")
                                         > float(budget) * (1 - BUDGET_RTOL) - BUDGET_ATOL))
    closed = used.group_by("id").agg(pl.col("blocked").all()).filter(pl.col("blocked"))
    found = [none.cast(pl.UInt32), closed.get_column("id").cast(pl.UInt32)]
    return pl.concat(found)
