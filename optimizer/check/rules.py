"""The hard rules of ``offeropt check``, one function each, over the run's assignments joined to
the inputs (see :mod:`optimizer.check` for what each rule means).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from optimizer.check.base import (
    _SHOW,
    BUDGET_ATOL,
    BUDGET_RTOL,
    COST_ATOL,
    COST_RTOL,
    ROUNDING,
    SCORES_ATOL,
    SCORES_RTOL,
    Violation,
    _close,
    _fmt,
    _over,
    _sample,
)
from optimizer.core.config import Scenario
from optimizer.core.numerics import group_sums
from optimizer.core.schemas import normalize_category_name
from optimizer.io.validate import Inputs, checked_scores


def _offer_categories(inputs: Inputs) -> pl.DataFrame:
    """(o, category): an offer's own category plus its products' categories, normalised, unique."""
    own = inputs.offers.filter(pl.col("category").is_not_null()).select("o", "category")
    parts = [own]
    if inputs.offer_products is not None:
        parts.append(
            inputs.offer_products.select("o", "p")
            .join(inputs.products.select("p", "category"), on="p", how="inner", maintain_order="left")
            .select("o", "category")
        )
    return pl.concat(parts).unique(maintain_order=True)


def _restrictions(inputs: Inputs, rule: str) -> pl.DataFrame:
    if inputs.restrictions is None:
        return pl.DataFrame(schema={"c": pl.Int32, "category": pl.Utf8})
    return (inputs.restrictions.filter(pl.col("rule") == rule)
            .select("c", "category").unique())


def _check_ids(a: pl.DataFrame) -> list[Violation]:
    out = []
    bad = a.filter(pl.col("c").is_null())
    if bad.height:
        ids = bad.get_column("customer_id").unique(maintain_order=True).head(5).to_list()
        out.append(Violation("unknown_customer",
                             f"{bad.height} assignment(s) name customers not in 'customers' "
                             f"(e.g. {', '.join(map(repr, ids))})", bad.height, _sample(bad, _SHOW)))
    bad = a.filter(pl.col("o").is_null())
    if bad.height:
        ids = bad.get_column("offer_id").unique(maintain_order=True).head(5).to_list()
        out.append(Violation("unknown_offer",
                             f"{bad.height} assignment(s) name offers not in 'offers' "
                             f"(e.g. {', '.join(map(repr, ids))})", bad.height, _sample(bad, _SHOW)))
    return out


def _check_duplicates(known: pl.DataFrame) -> list[Violation]:
    dup = known.filter(pl.len().over("c", "o") > 1)
    if not dup.height:
        return []
    pairs = dup.select("c", "o").n_unique()
    return [Violation("duplicate_pair",
                      f"{pairs} (customer, offer) pair(s) appear more than once "
                      f"({dup.height} rows)", pairs, _sample(dup, _SHOW))]


def _check_ranks(a: pl.DataFrame) -> list[Violation]:
    rank = pl.col("rank").cast(pl.Float64)
    whole = rank.is_not_null() & rank.is_finite() & (rank == rank.floor())
    per = (a.group_by("customer_id", maintain_order=True)
           .agg(n=pl.len(), whole=whole.all(), lo=rank.min(), hi=rank.max(),
                distinct=rank.n_unique(), ranks=pl.col("rank").sort()))
    bad = per.filter(~pl.col("whole") | (pl.col("lo") != 1) | (pl.col("hi") != pl.col("n"))
                     | (pl.col("distinct") != pl.col("n")))
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("rank",
                      f"{bad.height} customer(s) have ranks that are not 1..n without gaps "
                      f"(customer {first['customer_id']!r} has {first['ranks']} for "
                      f"{first['n']} offer(s))", bad.height,
                      _sample(bad, ["customer_id", "n", "ranks"]))]


def _check_row_order(a: pl.DataFrame) -> list[Violation]:
    """The run writes a customer's rows together, customers in the customers table's order, each
    customer's in rank order (docs/contract.md, "Outputs"): a row of a known customer after one
    of a later customer, or of a lower rank than the row above it of her own, is out of order
    (a repeated rank is the ``rank`` rule's)."""
    known = a.filter(pl.col("c").is_not_null())
    bad = known.with_columns(customer_above=pl.col("customer_id").shift(1),
                             rank_above=pl.col("rank").shift(1)).filter(
        ((pl.col("c") < pl.col("c").shift(1))
         | ((pl.col("c") == pl.col("c").shift(1))
            & (pl.col("rank").cast(pl.Float64) < pl.col("rank_above").cast(pl.Float64)))
         ).fill_null(False))
    if not bad.height:
        return []
    return [Violation("row_order",
                      f"{bad.height} assignment row(s) out of order (the rows are ordered by "
                      "customer, in the customers table's order, then by rank)", bad.height,
                      _sample(bad, ["row", "customer_id", "rank", "offer_id", "customer_above",
                                    "rank_above"]))]


def _check_values(a: pl.DataFrame) -> list[Violation]:
    out = []
    p = pl.col("p_redeem")
    bad = a.filter(~(p.is_finite() & (p >= 0) & (p <= 1)).fill_null(False))
    if bad.height:
        out.append(Violation("p_redeem", f"{bad.height} assignment(s) have p_redeem empty, "
                             "not finite or outside [0, 1]", bad.height, _sample(bad, _SHOW)))
    bad = a.filter(pl.col("o").is_not_null()).with_columns(
        (pl.col("p_redeem") * pl.col("discount")).alias("p_redeem * discount")
    ).filter(~_close(pl.col("expected_cost"), pl.col("p_redeem * discount"), COST_RTOL,
                     # both read numbers may be their printing's rounding (base.ROUNDING)
                     COST_ATOL + pl.col(ROUNDING) * (1 + pl.col("discount").abs())))
    if bad.height:
        first = bad.row(0, named=True)
        out.append(Violation(
            "expected_cost",
            f"{bad.height} assignment(s) have expected_cost != p_redeem * discount (customer "
            f"{first['customer_id']!r}, offer {first['offer_id']!r}: {_fmt(first['expected_cost'])}"
            f" vs {_fmt(first['p_redeem'])} * {_fmt(first['discount'])})",
            bad.height, _sample(bad, _SHOW + ["discount", "p_redeem * discount"])))
    bad = a.filter(~pl.col("score").is_finite().fill_null(False))
    if bad.height:
        out.append(Violation("score", f"{bad.height} assignment(s) have an empty or non-finite "
                             "score", bad.height, _sample(bad, _SHOW)))
    return out


def _outside_window(week: int) -> pl.Expr:
    """True where the row's offer (``start_week``, ``end_week``) is outside its window."""
    early = pl.col("start_week").is_not_null() & (pl.col("start_week") > week)
    late = pl.col("end_week").is_not_null() & (pl.col("end_week") < week)
    return early | late


def _check_window(known: pl.DataFrame, week: int) -> list[Violation]:
    bad = known.filter(_outside_window(week))
    if not bad.height:
        return []
    offers = bad.select("o").n_unique()
    return [Violation("window",
                      f"{bad.height} assignment(s) of {offers} offer(s) outside their "
                      f"start_week..end_week window for week {week}", bad.height,
                      _sample(bad, _SHOW + ["start_week", "end_week"]))]


def _exclude_hits(pair_cats: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    """The (pair, category) rows of a category the customer excluded."""
    return pair_cats.join(_restrictions(inputs, "exclude"), on=["c", "category"], how="semi",
                          maintain_order="left")


def _check_exclude(pair_cats: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    hits = _exclude_hits(pair_cats, inputs)
    if not hits.height:
        return []
    rows = (hits.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), excluded=pl.col("category").sort()))
    return [Violation("exclude",
                      f"{rows.height} assignment(s) give a customer an offer in a category she "
                      "excluded", rows.height, _sample(rows, _SHOW + ["excluded"]))]


def _sensitive_hits(pair_cats: pl.DataFrame, inputs: Inputs, scenario: Scenario
                    ) -> pl.DataFrame:
    """The (pair, category) rows the sensitive policy forbids."""
    policy = scenario.rules.sensitive_policy
    sens = sorted({normalize_category_name(s) for s in scenario.rules.sensitive_categories})
    if policy == "allow" or not sens:
        return pair_cats.head(0)
    sens_pairs = pair_cats.filter(pl.col("category").is_in(sens))
    if policy == "exclude":
        return sens_pairs
    return sens_pairs.join(_restrictions(inputs, "opt_in"), on=["c", "category"], how="anti",
                           maintain_order="left")


def _check_sensitive(pair_cats: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    sens_pairs = _sensitive_hits(pair_cats, inputs, scenario)
    if scenario.rules.sensitive_policy == "exclude":
        what = "sensitive offers although sensitive_policy = 'exclude'"
    else:
        what = "sensitive offers without an opt_in row for every sensitive category of the offer"
    if not sens_pairs.height:
        return []
    rows = (sens_pairs.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), categories=pl.col("category").sort()))
    return [Violation("sensitive", f"{rows.height} assignment(s) give {what}", rows.height,
                      _sample(rows, _SHOW + ["categories"]))]


def _excluded_category_hits(pair_cats: pl.DataFrame, scenario: Scenario) -> pl.DataFrame:
    """The (pair, category) rows of a category in ``rules.excluded_categories``."""
    banned = sorted({normalize_category_name(c) for c in scenario.rules.excluded_categories})
    return pair_cats.filter(pl.col("category").is_in(banned)) if banned else pair_cats.head(0)


def _check_excluded_categories(pair_cats: pl.DataFrame, scenario: Scenario) -> list[Violation]:
    hits = _excluded_category_hits(pair_cats, scenario)
    if not hits.height:
        return []
    rows = (hits.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), categories=pl.col("category").sort()))
    return [Violation("excluded_category", f"{rows.height} assignment(s) give an offer in a "
                      "category of rules.excluded_categories", rows.height,
                      _sample(rows, _SHOW + ["categories"]))]


def _cooldown_hits(known: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> pl.DataFrame:
    """The rows of ``known`` (``c``, ``o``) whose pair was sent within the cooldown, with
    ``last_sent``."""
    cd = scenario.rules.cooldown_weeks
    week = scenario.week
    if inputs.history is None or cd <= 0:
        return known.head(0).with_columns(last_sent=pl.lit(None, dtype=pl.Int64))
    pair = (pl.col("c").cast(pl.Int64) * inputs.n_offers + pl.col("o").cast(pl.Int64)
            ).alias("__pair")
    # only the sends of assigned pairs are grouped: grouping every recent send by (c, o) took
    # 26 s and 6 GB at ten million customers
    recent = (inputs.history.lazy()
              .filter((pl.col("week") >= week - cd) & (pl.col("week") < week))
              .select(pair, "week")
              .join(known.lazy().select(pair), on="__pair", how="semi")
              .group_by("__pair").agg(last_sent=pl.col("week").max())
              .collect())
    return (known.with_columns(pair).join(recent, on="__pair", how="inner", maintain_order="left")
            .drop("__pair"))


def _check_cooldown(known: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    cd = scenario.rules.cooldown_weeks
    week = scenario.week
    bad = _cooldown_hits(known, inputs, scenario)
    if not bad.height:
        return []
    return [Violation("cooldown",
                      f"{bad.height} assignment(s) re-send an offer sent within the "
                      f"{cd}-week cooldown (weeks {week - cd}..{week - 1})", bad.height,
                      _sample(bad, _SHOW + ["last_sent"]))]


def _check_customer_cap(by_customer: pl.DataFrame, cap: int) -> list[Violation]:
    bad = by_customer.filter(pl.col("offers") > cap).sort("offers", descending=True,
                                                          maintain_order=True)
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("max_offers_per_customer",
                      f"{bad.height} customer(s) get more than max_offers_per_customer = {cap} "
                      f"(customer {first['customer_id']!r} gets {first['offers']})", bad.height,
                      _sample(bad, ["customer_id", "offers"]))]


def _check_category_cap(pair_cats: pl.DataFrame, cap: int | None) -> list[Violation]:
    if cap is None:
        return []
    per = (pair_cats.group_by("c", "category", maintain_order=True)
           .agg(customer_id=pl.first("customer_id"), offers=pl.len(),
                offer_ids=pl.col("offer_id")))
    bad = per.filter(pl.col("offers") > cap).sort("offers", descending=True, maintain_order=True)
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("max_offers_per_category",
                      f"{bad.height} (customer, category) pair(s) exceed max_offers_per_category = "
                      f"{cap} (customer {first['customer_id']!r} gets {first['offers']} offers in "
                      f"{first['category']})", bad.height,
                      _sample(bad, ["customer_id", "category", "offers", "offer_ids"]))]


def _check_frequency(by_customer: pl.DataFrame, inputs: Inputs,
                     scenario: Scenario) -> list[Violation]:
    cap = scenario.rules.max_offers_per_window
    if cap is None:
        return []
    week, w = scenario.week, scenario.rules.window_weeks
    first_week = week - w + 1
    if inputs.history is not None:
        past = (inputs.history.filter((pl.col("week") >= first_week) & (pl.col("week") < week))
                .group_by("c").agg(history=pl.len().cast(pl.Int64)))
    else:
        past = pl.DataFrame(schema={"c": pl.Int32, "history": pl.Int64})
    totals = (by_customer.join(past, on="c", how="left", maintain_order="left")
              .with_columns(pl.col("history").fill_null(0))
              .with_columns(total=pl.col("offers") + pl.col("history")))
    bad = totals.filter(pl.col("total") > cap).sort("total", descending=True, maintain_order=True)
    if not bad.height:
        return []
    first = bad.row(0, named=True)
    return [Violation("frequency_window",
                      f"{bad.height} customer(s) exceed max_offers_per_window = {cap} over weeks "
                      f"{first_week}..{week} (customer {first['customer_id']!r}: {first['offers']} "
                      f"now + {first['history']} in history)", bad.height,
                      _sample(bad, ["customer_id", "offers", "history", "total"]))]


def _check_offers(known_offer: pl.DataFrame, inputs: Inputs,
                  scenario: Scenario) -> list[Violation]:
    out = []
    scale = scenario.rules.budget_scale
    per = (known_offer.group_by("o", maintain_order=True)
           .agg(offer_id=pl.first("offer_id"), customers=pl.len().cast(pl.Int64))
           .join(group_sums(known_offer, ["o"], {"spent": pl.col("cost"),
                                                 "slack": pl.col("cost_slack")}),
                 on="o", how="left", maintain_order="left")
           .join(inputs.offers.select("o", "budget", "max_customers"), on="o", how="left",
                 maintain_order="left")
           .with_columns(cap=pl.col("budget") * scale))
    bad = (per.filter(pl.col("cap").is_not_null()
                      & _over(pl.col("spent"), pl.col("cap"), pl.col("slack")))
           .with_columns(over=pl.col("spent") - pl.col("cap"))
           .sort("over", descending=True, maintain_order=True))
    if bad.height:
        f = bad.row(0, named=True)
        out.append(Violation(
            "budget",
            f"{bad.height} offer(s) exceed their budget (offer {f['offer_id']!r} spends "
            f"{_fmt(f['spent'])} of budget {_fmt(f['budget'])} * budget_scale {_fmt(scale)} = "
            f"{_fmt(f['cap'])})", bad.height,
            _sample(bad, ["offer_id", "spent", "budget", "cap"])))
    bad = per.filter(pl.col("max_customers").is_not_null()
                     & (pl.col("customers") > pl.col("max_customers")))
    if bad.height:
        f = bad.row(0, named=True)
        out.append(Violation(
            "max_customers",
            f"{bad.height} offer(s) exceed max_customers (offer {f['offer_id']!r} goes to "
            f"{f['customers']} customers, max_customers {f['max_customers']})", bad.height,
            _sample(bad, ["offer_id", "customers", "max_customers"])))
    gb = scenario.rules.global_budget
    if gb is not None:
        total = float(known_offer.get_column("cost").sum() or 0.0)
        slack = float(known_offer.get_column("cost_slack").sum() or 0.0)
        if total > gb * (1 + BUDGET_RTOL) + BUDGET_ATOL + slack:
            out.append(Violation(
                "global_budget",
                f"the total expected cost {_fmt(total)} exceeds global_budget {_fmt(gb)}", 1,
                [{"expected_cost": total, "global_budget": gb}]))
    return out


def _listed_values(known: pl.DataFrame, inputs: Inputs) -> pl.DataFrame | None:
    """``known`` with the scores table's ``table_p_redeem``, ``table_value`` and ``__in`` (null
    where the pair is not listed); ``None`` without a scores table."""
    if inputs.scores is not None:
        # lazily: an eager select would first copy the whole (row-group chunked) scores table
        table = inputs.scores.lazy().select("c", "o", pl.col("p_redeem").alias("table_p_redeem"),
                                            pl.col("value").alias("table_value"),
                                            pl.lit(True).alias("__in"))
        return known.lazy().join(table, on=["c", "o"], how="left",
                                 maintain_order="left").collect()
    if inputs.scores_batches is None:
        return None
    # a table too large for memory, batch by batch: each assigned pair looked up by its key
    n_offers = max(inputs.n_offers, 1)
    keys = (known.get_column("c").cast(pl.Int64) * n_offers
            + known.get_column("o").cast(pl.Int64)).to_numpy()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    p_redeem, value = np.full(keys.size, np.nan), np.full(keys.size, np.nan)
    listed = np.zeros(keys.size, dtype=bool)
    for frame in inputs.scores_batches:
        rows = checked_scores(frame, inputs.customers, inputs.offers)
        batch = (rows.get_column("c").cast(pl.Int64) * n_offers
                 + rows.get_column("o").cast(pl.Int64)).to_numpy()
        lo = np.searchsorted(ordered, batch, "left")
        hi = np.searchsorted(ordered, batch, "right")
        hit = np.flatnonzero(hi > lo)
        # every assignment of a listed pair (a pair assigned twice is found twice)
        runs = (hi - lo)[hit]
        at = order[np.repeat(lo[hit], runs) + np.arange(runs.sum())
                   - np.repeat(np.cumsum(runs) - runs, runs)]
        source = np.repeat(hit, runs)
        listed[at] = True
        p_redeem[at] = rows.get_column("p_redeem").to_numpy()[source]
        value[at] = rows.get_column("value").to_numpy()[source]
    return known.with_columns(pl.Series("table_p_redeem", p_redeem),
                              pl.Series("table_value", value),
                              pl.when(pl.Series(listed)).then(True).alias("__in"))


def _check_scores(known: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    joined = _listed_values(known, inputs)
    if joined is None:
        return []
    out = []
    missing = joined.filter(pl.col("__in").is_null())
    if missing.height:
        out.append(Violation("scores_pair",
                             f"{missing.height} assigned pair(s) are not listed in 'scores' "
                             "(with a scores table only its pairs are eligible)", missing.height,
                             _sample(missing, _SHOW)))
    listed = joined.filter(pl.col("__in").is_not_null())
    bad = listed.filter(
        ~_close(pl.col("p_redeem"), pl.col("table_p_redeem"), SCORES_RTOL,
                SCORES_ATOL + pl.col(ROUNDING))
        | ~_close(pl.col("score"), pl.col("table_value"), SCORES_RTOL,
                  SCORES_ATOL + pl.col(ROUNDING)))
    if bad.height:
        f = bad.row(0, named=True)
        out.append(Violation(
            "scores_values",
            f"{bad.height} assignment(s) have p_redeem or score different from the scores table "
            f"(customer {f['customer_id']!r}, offer {f['offer_id']!r}: p_redeem "
            f"{_fmt(f['p_redeem'])} vs {_fmt(f['table_p_redeem'])}, score {_fmt(f['score'])} vs "
            f"value {_fmt(f['table_value'])})", bad.height,
            _sample(bad, _SHOW + ["table_p_redeem", "table_value"])))
    return out
