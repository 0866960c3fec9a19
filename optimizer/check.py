"""The independent verifier behind ``offeropt check SCENARIO [RUN_DIR]``.

It re-reads the scenario's inputs (through :mod:`optimizer.io.validate`) and a run's output folder, and
re-derives every hard rule of docs/contract.md ("How each rule reads") from the raw tables with polars
joins and group-bys. By design it shares nothing with the solve path but the foundation (``load``,
``validate``, ``schemas``, ``config``, ``errors``): a bug in eligibility or in a solver cannot hide
itself here.

Rule ids reported (``Violation.rule``):

=========================== ===================================================================
``unknown_customer``        an assignment names a customer that is not in ``customers``
``unknown_offer``           an assignment names an offer that is not in ``offers``
``duplicate_pair``          a (customer, offer) pair appears more than once
``rank``                    a customer's ranks are not exactly 1..n (or a rank is not a whole number)
``p_redeem``                ``p_redeem`` is empty, not finite, or outside [0, 1]
``expected_cost``           ``expected_cost`` differs from ``p_redeem * discount``
``score``                   ``score`` is empty or not finite
``window``                  the offer is outside its ``start_week .. end_week`` window
``exclude``                 the customer has an ``exclude`` row for one of the offer's categories
``sensitive``               the sensitive policy forbids the pair
``cooldown``                the pair was sent within ``cooldown_weeks`` before the planning week
``excluded_category``       the offer has a category in ``rules.excluded_categories``
``max_offers_per_customer`` a customer gets more offers than the cap
``max_offers_per_category`` a customer gets more offers in one category than the cap
``frequency_window``        this run plus history in the rolling window exceeds the cap
``budget``                  an offer's expected spend exceeds ``budget * budget_scale``
``max_customers``           an offer reaches more customers than its ``max_customers``
``global_budget``           the total expected spend exceeds ``global_budget``
``scores_pair``             with a ``scores`` table: an assigned pair is not listed there
``scores_values``           with a ``scores`` table: ``p_redeem`` or ``score`` differ from the table
``summary``                 ``offers_summary`` disagrees with the assignments or the offers
``rank_order``              a customer's ranks do not follow her scores (rank 1 = best score)
``published_files``         the CSV and Parquet copies of a table disagree
``customers_table``         ``customers.parquet`` does not list the customers or their deciles
``score_formula``           built-in path: a score is not the objective's formula of its inputs
``manifest``                a figure of ``manifest.json`` disagrees with the run's files
``holdout_sent``            a universal control was sent an offer (:mod:`optimizer.check_controls`)
``offer_holdout_sent``      a per-offer control was sent that offer
``offer_group``             more offers of an ``offer_groups`` group than its limit
                            (:mod:`optimizer.check_campaign`)
``customer_attribute``      a ``[[rules.eligibility]]`` rule's offer to a customer not meeting it
``funder_budget``           a funder's expected spend exceeds its ``funders.budget``
``controls``                ``controls.*`` lists a customer or pair that is not held out, or is
                            missing although ``[measurement]`` holds customers out
=========================== ===================================================================

The last five, and the refusal of a run made from another scenario or other inputs, are in
:mod:`optimizer.check_outputs`.

``min_customers`` is a target, not a hard rule: shortfalls are not violations.

Reading choices where docs/contract.md leaves room:

- Assignment IDs are compared as the master table's type, as validate does (text ``"12"`` matches
  integer ``12``; ``"012"`` does not). Rows with an unknown customer or offer are reported and then
  left out of the rules that need them (pair rules need both; offer caps still count them when the
  offer is known, customer caps when the customer is known).
- Budgets are on expected cost = ``p_redeem * discount``; each row counts the larger of the written
  ``expected_cost`` and the recomputed one, so an understated ``expected_cost`` cannot hide an
  overspend. Caps allow ``1e-9`` relative plus ``1e-6`` absolute slack.
- ``max_customers`` and the per-customer caps count assignment rows (duplicates count twice, and
  are reported as ``duplicate_pair`` as well).
- The frequency window is checked for customers who get at least one offer in this run; history
  alone (weeks ``week - window_weeks + 1 .. week - 1``) above the cap is not this run's fault.
- ``offers_summary`` is optional; when present, each offer's figures must match the assignments
  and the offers table within ``1e-6`` relative (see :mod:`optimizer.check_outputs`); an offer
  missing from the summary reads as zero customers and zero cost.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.check_controls import check_controls
from optimizer.core.config import Scenario
from optimizer.core.errors import InputError, OptimizerError
from optimizer.core.predicate import read_columns
from optimizer.core.schemas import ASSIGNMENT_COLUMNS, normalize_category_name
from optimizer.io.load import unify_id_type
from optimizer.io.memory import stream_scores
from optimizer.io.validate import Inputs, checked_scores, load_inputs

log = logging.getLogger(__name__)

SAMPLE_ROWS = 5
# Tolerances (see the module docstring of each check).
COST_RTOL, COST_ATOL = 1e-9, 1e-9          # expected_cost == p_redeem * discount
BUDGET_RTOL, BUDGET_ATOL = 1e-9, 1e-6      # spend <= cap
SCORES_RTOL, SCORES_ATOL = 1e-12, 1e-12    # outputs == scores table
SUMMARY_RTOL, SUMMARY_ATOL = 1e-6, 1e-9    # offers_summary == aggregated assignments

_NUMERIC = ("rank", "p_redeem", "expected_cost", "score")
_SHOW = ["customer_id", "rank", "offer_id", "p_redeem", "expected_cost", "score"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: its id, a sentence with numbers, how many rows/customers/offers break it,
    and up to five offending rows."""

    rule: str
    message: str
    count: int
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_run`. ``notes``: what the check could not compare (a run
    folder without a manifest) or compared and let pass (``force``), for the terminal."""

    run_dir: Path
    violations: list[Violation]
    assignments: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> set[str]:
        """The ids of the rules broken (empty when the run is fine)."""
        return {v.rule for v in self.violations}

    def describe(self) -> str:
        """A plain-text listing for the terminal."""
        head = f"{self.run_dir}: {self.assignments} assignment{'s' if self.assignments != 1 else ''}"
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        if self.ok:
            return head + " checked; every hard rule holds" + notes
        lines = [head + f" checked; {len(self.violations)} rule violation"
                 + ("s" if len(self.violations) != 1 else "")]
        for v in self.violations:
            lines.append(f"  [{v.rule}] {v.message} ({v.count})")
            lines.extend(f"      {row}" for row in v.sample)
        return "\n".join(lines) + notes


# --------------------------------------------------------------------------------------------------
# reading the run folder


def _read_run_table(run_dir: Path, name: str) -> tuple[pl.DataFrame, Path] | None:
    """Read ``NAME.parquet`` (preferred) or ``NAME.csv`` (as text) from the run folder."""
    for path in (run_dir / f"{name}.parquet", run_dir / f"{name}.csv"):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                return pl.read_parquet(path, glob=False), path
            return pl.read_csv(path, infer_schema=False, raise_if_empty=False, glob=False), path
        except (pl.exceptions.PolarsError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(name, None, f"cannot read {path}: {first}") from None
    return None


def _id_column(frame: pl.DataFrame, column: str, table: str) -> pl.Series:
    series = frame.get_column(column)
    if series.dtype.is_integer():
        return series.cast(pl.Int64)
    if series.dtype in (pl.Utf8, pl.Null):
        return series.cast(pl.Utf8)
    raise InputError(table, column, f"IDs must be integers or text, not {series.dtype}",
                     sample=frame.head(3).rows(named=True))


def _numbers(series: pl.Series, keep_int: bool = False) -> pl.Series:
    """A numeric column as Float64 (Int64 kept with ``keep_int``); text that is not a number
    becomes null (and is then flagged)."""
    if keep_int and series.dtype.is_integer():
        return series.cast(pl.Int64)
    if series.dtype == pl.Utf8:
        series = series.str.strip_chars().replace("", None)
    out = series.cast(pl.Float64, strict=False)
    if keep_int:
        values = out.drop_nulls()
        if values.is_finite().all() and (values == values.floor()).all():
            return out.cast(pl.Int64)
    return out


def _read_assignments(run_dir: Path) -> pl.DataFrame:
    if not run_dir.is_dir():
        raise OptimizerError(f"run folder not found: {run_dir} (run the scenario first, or "
                             "name the folder that offeropt run wrote)")
    found = _read_run_table(run_dir, "assignments")
    if found is None:
        raise InputError("assignments", None,
                         f"no assignments.parquet or assignments.csv in {run_dir}")
    return assignments_table(*found)


def assignments_table(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """An assignments file as read (Parquet typed, CSV as text) in the checks' types."""
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError("assignments", missing[0],
                         f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"missing from {path.name} (it has: {', '.join(frame.columns) or 'none'})")
    return pl.DataFrame([
        _id_column(frame, "customer_id", "assignments"),
        _id_column(frame, "offer_id", "assignments"),
        *(_numbers(frame.get_column(c), keep_int=c == "rank").alias(c) for c in _NUMERIC),
    ]).select(_SHOW)


def _attach_index(frame: pl.DataFrame, id_col: str, master: pl.DataFrame, index: str,
                  is_int: bool, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """Add the master's dense index (null where unknown), comparing IDs as the master's type."""
    key = unify_id_type(frame.get_column(id_col), is_int).alias("__key")
    lookup = master.select(pl.col(id_col).alias("__key"), pl.col(index), *extra)
    return (frame.with_columns(key)
            .join(lookup, on="__key", how="left", maintain_order="left")
            .drop("__key"))


# --------------------------------------------------------------------------------------------------
# helpers


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.10g}"
    return str(x)


def _sample(rows: pl.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    return rows.select([c for c in columns if c in rows.columns]).head(SAMPLE_ROWS).rows(named=True)


def _close(a: pl.Expr, b: pl.Expr, rtol: float, atol: float) -> pl.Expr:
    """``|a - b| <= rtol * max(|a|, |b|) + atol``; null or NaN on either side is not close."""
    ok = (a - b).abs() <= pl.max_horizontal(a.abs(), b.abs()) * rtol + atol
    return ok.fill_null(False)


def _over(spent: pl.Expr, cap: pl.Expr) -> pl.Expr:
    return spent > cap * (1 + BUDGET_RTOL) + BUDGET_ATOL


def _offer_categories(inputs: Inputs) -> pl.DataFrame:
    """(o, category): an offer's own category plus its products' categories, normalised, unique."""
    own = inputs.offers.filter(pl.col("category").is_not_null()).select("o", "category")
    parts = [own]
    if inputs.offer_products is not None:
        parts.append(
            inputs.offer_products.select("o", "p")
            .join(inputs.products.select("p", "category"), on="p", how="inner")
            .select("o", "category")
        )
    return pl.concat(parts).unique(maintain_order=True)


def _restrictions(inputs: Inputs, rule: str) -> pl.DataFrame:
    if inputs.restrictions is None:
        return pl.DataFrame(schema={"c": pl.Int32, "category": pl.Utf8})
    return (inputs.restrictions.filter(pl.col("rule") == rule)
            .select("c", "category").unique())


# --------------------------------------------------------------------------------------------------
# the checks; each returns a list of violations


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


def _check_values(a: pl.DataFrame) -> list[Violation]:
    out = []
    p = pl.col("p_redeem")
    bad = a.filter(~(p.is_finite() & (p >= 0) & (p <= 1)).fill_null(False))
    if bad.height:
        out.append(Violation("p_redeem", f"{bad.height} assignment(s) have p_redeem empty, "
                             "not finite or outside [0, 1]", bad.height, _sample(bad, _SHOW)))
    bad = a.filter(pl.col("o").is_not_null()).with_columns(
        (pl.col("p_redeem") * pl.col("discount")).alias("p_redeem * discount")
    ).filter(~_close(pl.col("expected_cost"), pl.col("p_redeem * discount"), COST_RTOL, COST_ATOL))
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


def _check_window(known: pl.DataFrame, week: int) -> list[Violation]:
    early = pl.col("start_week").is_not_null() & (pl.col("start_week") > week)
    late = pl.col("end_week").is_not_null() & (pl.col("end_week") < week)
    bad = known.filter(early | late)
    if not bad.height:
        return []
    offers = bad.select("o").n_unique()
    return [Violation("window",
                      f"{bad.height} assignment(s) of {offers} offer(s) outside their "
                      f"start_week..end_week window for week {week}", bad.height,
                      _sample(bad, _SHOW + ["start_week", "end_week"]))]


def _check_exclude(pair_cats: pl.DataFrame, inputs: Inputs) -> list[Violation]:
    excl = _restrictions(inputs, "exclude")
    hits = pair_cats.join(excl, on=["c", "category"], how="semi")
    if not hits.height:
        return []
    rows = (hits.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), excluded=pl.col("category").sort()))
    return [Violation("exclude",
                      f"{rows.height} assignment(s) give a customer an offer in a category she "
                      "excluded", rows.height, _sample(rows, _SHOW + ["excluded"]))]


def _check_sensitive(pair_cats: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    policy = scenario.rules.sensitive_policy
    sens = sorted({normalize_category_name(s) for s in scenario.rules.sensitive_categories})
    if policy == "allow" or not sens:
        return []
    sens_pairs = pair_cats.filter(pl.col("category").is_in(sens))
    if policy == "exclude":
        what = "sensitive offers although sensitive_policy = 'exclude'"
    else:
        sens_pairs = sens_pairs.join(_restrictions(inputs, "opt_in"), on=["c", "category"],
                                     how="anti")
        what = "sensitive offers without an opt_in row for every sensitive category of the offer"
    if not sens_pairs.height:
        return []
    rows = (sens_pairs.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), categories=pl.col("category").sort()))
    return [Violation("sensitive", f"{rows.height} assignment(s) give {what}", rows.height,
                      _sample(rows, _SHOW + ["categories"]))]


def _check_excluded_categories(pair_cats: pl.DataFrame, scenario: Scenario) -> list[Violation]:
    banned = sorted({normalize_category_name(c) for c in scenario.rules.excluded_categories})
    hits = pair_cats.filter(pl.col("category").is_in(banned)) if banned else pair_cats.head(0)
    if not hits.height:
        return []
    rows = (hits.group_by("row", maintain_order=True)
            .agg(pl.first(*_SHOW), categories=pl.col("category").sort()))
    return [Violation("excluded_category", f"{rows.height} assignment(s) give an offer in a "
                      "category of rules.excluded_categories", rows.height,
                      _sample(rows, _SHOW + ["categories"]))]


def _check_cooldown(known: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    cd = scenario.rules.cooldown_weeks
    week = scenario.week
    if inputs.history is None or cd <= 0:
        return []
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
    bad = (known.with_columns(pair).join(recent, on="__pair", how="inner", maintain_order="left")
           .drop("__pair"))
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
           .agg(offer_id=pl.first("offer_id"), customers=pl.len().cast(pl.Int64),
                spent=pl.col("cost").sum())
           .join(inputs.offers.select("o", "budget", "max_customers"), on="o", how="left",
                 maintain_order="left")
           .with_columns(cap=pl.col("budget") * scale))
    bad = (per.filter(pl.col("cap").is_not_null() & _over(pl.col("spent"), pl.col("cap")))
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
        if total > gb * (1 + BUDGET_RTOL) + BUDGET_ATOL:
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
        ~_close(pl.col("p_redeem"), pl.col("table_p_redeem"), SCORES_RTOL, SCORES_ATOL)
        | ~_close(pl.col("score"), pl.col("table_value"), SCORES_RTOL, SCORES_ATOL))
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


# --------------------------------------------------------------------------------------------------


def check_run(scenario: Scenario, run_dir: Path | None = None, force: bool = False
              ) -> CheckReport:
    """Verify every hard rule of docs/contract.md for the run in ``run_dir`` (default: the scenario's
    output folder), re-deriving each rule from the scenario's input tables, and every published
    file and figure of the run (:mod:`optimizer.check_outputs`).

    Raises :class:`InputError` (table ``assignments``) when the run folder or its assignments file
    is missing or unreadable, whatever :func:`optimizer.io.validate.load_inputs` raises for bad
    inputs, and :class:`~optimizer.check_outputs.RunMismatch` when the run's manifest records
    another scenario or other inputs than the ones given, unless ``force`` (then the differences
    are the report's ``notes``). Rule breaches are returned as :class:`Violation` s, never raised.
    """
    from optimizer import check_outputs  # it builds on this module's helpers

    run_dir = Path(run_dir) if run_dir is not None else Path(scenario.output)
    raw = _read_assignments(run_dir)
    manifest, violations = check_outputs.read_manifest(run_dir)
    inputs = load_inputs(scenario.data, stream_scores=stream_scores(scenario),
                         customer_columns=read_columns(
                             [r.require for r in scenario.rules.eligibility]))
    notes = check_outputs.run_differences(manifest, scenario, inputs, run_dir, force)
    violations += rule_violations(raw, inputs, scenario)
    violations += check_outputs.published_violations(run_dir, raw, inputs, scenario, manifest)
    violations += check_controls(run_dir, indexed_assignments(raw, inputs), inputs, scenario)
    for v in violations:
        log.info("check %s: %s", v.rule, v.message)
    return CheckReport(run_dir=run_dir, violations=violations, assignments=raw.height,
                       notes=notes)


def indexed_assignments(raw: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    """The assignments with ``row``, the master indices ``c`` and ``o`` (null where unknown),
    the offer's ``discount`` and window, and ``cost`` (what budgets count)."""
    a = raw.with_row_index("row")
    a = _attach_index(a, "customer_id", inputs.customers, "c", inputs.id_is_int["customer_id"])
    a = _attach_index(a, "offer_id", inputs.offers, "o", inputs.id_is_int["offer_id"],
                      extra=("discount", "start_week", "end_week"))
    return a.with_columns(
        # budgets are on expected cost = p_redeem * discount; take the larger of the written and
        # the recomputed value so a wrong expected_cost cannot hide an overspend
        cost=pl.max_horizontal(pl.col("expected_cost").fill_nan(None),
                               (pl.col("p_redeem") * pl.col("discount")).fill_nan(None))
        .fill_null(0.0)
    )


def rule_violations(raw: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    """Every hard rule and every per-row figure of one assignments table (``raw``, as
    :func:`assignments_table` returns it)."""
    from optimizer.check_campaign import campaign_violations  # it builds on this module
    from optimizer.check_outputs import check_rank_order

    week = scenario.week
    a = indexed_assignments(raw, inputs)
    known = a.filter(pl.col("c").is_not_null() & pl.col("o").is_not_null())
    known_offer = a.filter(pl.col("o").is_not_null())
    pair_cats = known.join(_offer_categories(inputs), on="o", how="inner", maintain_order="left")
    by_customer = (a.filter(pl.col("c").is_not_null())
                   .group_by("c", maintain_order=True)
                   .agg(customer_id=pl.first("customer_id"), offers=pl.len().cast(pl.Int64)))

    violations: list[Violation] = []
    violations += _check_ids(a)
    violations += _check_duplicates(known)
    violations += _check_ranks(a)
    violations += check_rank_order(a)
    violations += _check_values(a)
    violations += _check_window(known, week)
    violations += _check_exclude(pair_cats, inputs)
    violations += _check_sensitive(pair_cats, inputs, scenario)
    violations += _check_excluded_categories(pair_cats, scenario)
    violations += _check_cooldown(known, inputs, scenario)
    violations += _check_customer_cap(by_customer, scenario.rules.max_offers_per_customer)
    violations += _check_category_cap(pair_cats, scenario.rules.max_offers_per_category)
    violations += _check_frequency(by_customer, inputs, scenario)
    violations += _check_offers(known_offer, inputs, scenario)
    violations += _check_scores(known, inputs)
    violations += campaign_violations(known, inputs, scenario)
    return violations


__all__ = ["CheckReport", "Violation", "check_run"]
