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
``row_order``               the rows are not by customer (the customers table's order), then rank
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
``column_types``            a Parquet table's ID column is not of the inputs' type (integers or
                            text), or a rank, count or week is not a whole number
``customers_table``         ``customers.parquet`` does not list the customers or their deciles
``score_formula``           built-in path: a score is not the objective's formula of its inputs
``manifest``                a figure of ``manifest.json`` disagrees with the run's files
``holdout_sent``            a universal control was sent an offer (:mod:`optimizer.check.controls`)
``offer_holdout_sent``      a per-offer control was sent that offer
``offer_group``             more offers of an ``offer_groups`` group than its limit
                            (:mod:`optimizer.check.campaign`)
``customer_attribute``      a ``[[rules.eligibility]]`` rule's offer to a customer not meeting it
``funder_budget``           a funder's expected spend exceeds its ``funders.budget``
``controls``                ``controls.*`` lists a customer or pair that is not held out, or is
                            missing although ``[measurement]`` holds customers out
``flight_budget``           an offer (a group flight: its offers together) spends more than its flight's share of the week
                            (:mod:`optimizer.check.flights`)
``pacing``                  the pacing table or the manifest's ``flights.curve`` differs from
                            the flights covering the week (:mod:`optimizer.check.pacing`)
``stability``               the manifest's stable-lists figures disagree with the lists
                            (:mod:`optimizer.check.stability`)
``pin``                     with ``rules.pin``: a pin missing from the plan that the manifest
                            neither releases nor withholds, or that no control, per-pair rule,
                            candidate rule or capacity limit justifies, or its pin figures
                            disagree (:mod:`optimizer.check.stability`, :mod:`optimizer.check.pins`)
``missing_output``          the run folder lacks a file the run writes (:mod:`optimizer.check.files`)
=========================== ===================================================================

The last five, and the refusal of a run made from another scenario or other inputs, are in
:mod:`optimizer.check.outputs`.

``min_customers`` is a target, not a hard rule: shortfalls are not violations.

Reading choices where docs/contract.md leaves room:

- Assignment IDs are compared as the master table's type, as validate does (text ``"12"`` matches
  integer ``12``; ``"012"`` does not). Rows with an unknown customer or offer are reported and then
  left out of the rules that need them (pair rules need both; offer caps still count them when the
  offer is known, customer caps when the customer is known).
- Budgets are on expected cost = ``p_redeem * discount``; each row counts the larger of the written
  ``expected_cost`` and the recomputed one, so an understated ``expected_cost`` cannot hide an
  overspend. Caps allow ``1e-9`` relative plus ``1e-6`` absolute slack.
- Numbers read from a CSV output (a run folder without the Parquet copy) are their printing's
  rounding: every comparison of them allows half a unit of the printed last decimal per number
  (a sum: per number summed) on top of its tolerance (:data:`optimizer.check.base.ROUNDING`);
  numbers read from Parquet are compared at the tolerances alone.
- ``max_customers`` and the per-customer caps count assignment rows (duplicates count twice, and
  are reported as ``duplicate_pair`` as well).
- The frequency window is checked for customers who get at least one offer in this run; history
  alone (weeks ``week - window_weeks + 1 .. week - 1``) above the cap is not this run's fault.
- ``offers_summary`` is required (rule ``missing_output``); each offer's figures must match the
  assignments and the offers table within ``1e-6`` relative (see :mod:`optimizer.check.outputs`); an offer
  missing from the summary reads as zero customers and zero cost.
"""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from optimizer.check.base import (
    ROUNDING,
    CheckReport,
    Violation,
    _attach_index,
    _read_assignments,
)
from optimizer.check.campaign import campaign_violations
from optimizer.check.controls import check_controls
from optimizer.check.files import missing_outputs
from optimizer.check.flights import check_flights
from optimizer.check.pacing import check_pacing
from optimizer.check.rules import (
    _check_category_cap,
    _check_cooldown,
    _check_customer_cap,
    _check_duplicates,
    _check_exclude,
    _check_excluded_categories,
    _check_frequency,
    _check_ids,
    _check_offers,
    _check_ranks,
    _check_row_order,
    _check_scores,
    _check_sensitive,
    _check_values,
    _check_window,
    _offer_categories,
)
from optimizer.check.stability import check_stability
from optimizer.core.config import Scenario
from optimizer.core.predicate import read_columns
from optimizer.io.memory import stream_scores
from optimizer.io.validate import Inputs, load_inputs

log = logging.getLogger(__name__)


def check_run(scenario: Scenario, run_dir: Path | None = None, force: bool = False,
              complete: bool = True) -> CheckReport:
    """Verify every hard rule of docs/contract.md for the run in ``run_dir`` (default: the scenario's
    output folder), re-deriving each rule from the scenario's input tables, and every published
    file and figure of the run (:mod:`optimizer.check.outputs`). ``complete``: the folder must
    hold every file a run writes (:mod:`optimizer.check.files`, rule ``missing_output``); False
    checks the tables it holds alone (a folder of tables made by hand, as tests make them).

    Raises :class:`InputError` (table ``assignments``) when the run folder or its assignments file
    is missing or unreadable, whatever :func:`optimizer.io.validate.load_inputs` raises for bad
    inputs, and :class:`~optimizer.check.outputs.RunMismatch` when the run's manifest records
    another scenario or other inputs than the ones given and no rule is broken, unless ``force``
    (with ``force``, or when rules are broken, the differences are the report's ``notes``). Rule
    breaches are returned as :class:`Violation` s, never raised.
    """
    from optimizer.check import outputs as check_outputs  # it builds on this module's helpers

    run_dir = Path(run_dir) if run_dir is not None else Path(scenario.output)
    raw = _read_assignments(run_dir)
    manifest, violations = check_outputs.read_manifest(run_dir)
    inputs = load_inputs(scenario.data, stream_scores=stream_scores(scenario),
                         customer_columns=read_columns(
                             [r.require for r in scenario.rules.eligibility]),
                         scores_url=scenario.scores_url)
    try:
        notes, refused = check_outputs.run_differences(manifest, scenario, inputs, run_dir,
                                                       force), None
    except check_outputs.RunMismatch as mismatch:   # refused below unless a rule is broken
        notes, refused = check_outputs.mismatch_notes(mismatch), mismatch
    if complete:
        violations += missing_outputs(run_dir, manifest)
    violations += rule_violations(raw, inputs, scenario)
    violations += check_outputs.published_violations(run_dir, raw, inputs, scenario, manifest)
    violations += check_controls(run_dir, indexed_assignments(raw, inputs), inputs, scenario,
                                 manifest)
    known = indexed_assignments(raw, inputs).filter(pl.col("c").is_not_null()
                                                    & pl.col("o").is_not_null())
    violations += check_stability(manifest, known, inputs, scenario, run_dir)
    violations += check_pacing(run_dir, indexed_assignments(raw, inputs).filter(
        pl.col("o").is_not_null()), inputs, scenario, manifest)
    if refused is not None and not violations:
        raise refused
    for v in violations:
        log.info("check %s: %s", v.rule, v.message)
    return CheckReport(run_dir=run_dir, violations=violations, assignments=raw.height,
                       notes=notes)


def indexed_assignments(raw: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    """The assignments with ``row``, the master indices ``c`` and ``o`` (null where unknown),
    the offer's ``discount`` and window, ``cost`` (what budgets count) and ``cost_slack`` (how
    far reading may have moved ``cost``: its numbers' ``rounding`` times the larger of 1 and the
    discount; 0 for numbers read from Parquet)."""
    a = raw.with_row_index("row")
    a = _attach_index(a, "customer_id", inputs.customers, "c", inputs.id_is_int["customer_id"])
    a = _attach_index(a, "offer_id", inputs.offers, "o", inputs.id_is_int["offer_id"],
                      extra=("discount", "start_week", "end_week"))
    return a.with_columns(
        # budgets are on expected cost = p_redeem * discount; take the larger of the written and
        # the recomputed value so a wrong expected_cost cannot hide an overspend
        cost=pl.max_horizontal(pl.col("expected_cost").fill_nan(None),
                               (pl.col("p_redeem") * pl.col("discount")).fill_nan(None))
        .fill_null(0.0),
        cost_slack=pl.col(ROUNDING) * pl.max_horizontal(pl.lit(1.0),
                                                        pl.col("discount").abs().fill_null(0.0)),
    )


def rule_violations(raw: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Violation]:
    """Every hard rule and every per-row figure of one assignments table (``raw``, as
    :func:`assignments_table` returns it)."""
    from optimizer.check.outputs import check_rank_order

    week = scenario.week
    a = indexed_assignments(raw, inputs)
    known = a.filter(pl.col("c").is_not_null() & pl.col("o").is_not_null())
    known_offer = a.filter(pl.col("o").is_not_null())
    pair_cats = known.join(_offer_categories(inputs), on="o", how="inner",
                           maintain_order="left_right")  # an offer's categories in order
    by_customer = (a.filter(pl.col("c").is_not_null())
                   .group_by("c", maintain_order=True)
                   .agg(customer_id=pl.first("customer_id"), offers=pl.len().cast(pl.Int64)))

    violations: list[Violation] = []
    violations += _check_ids(a)
    violations += _check_duplicates(known)
    violations += _check_ranks(a)
    violations += _check_row_order(a)
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
    violations += check_flights(known_offer, inputs, scenario)
    violations += _check_scores(known, inputs)
    violations += campaign_violations(known, inputs, scenario)
    return violations


__all__ = ["CheckReport", "Violation", "check_run"]
