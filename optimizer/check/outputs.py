"""The run's own files and figures, for ``offeropt check`` (see :mod:`optimizer.check`).

:mod:`optimizer.check` re-derives the hard rules from one assignments table; this module checks
everything else the run published, and that the run was made from the scenario and inputs given:

- **Same scenario, same inputs** (:func:`run_differences`): ``manifest.json`` (read with a plain
  JSON reader) records the resolved scenario and each input table's SHA-256. A setting that
  differs (after ``--set``) or an input whose SHA-256 differs makes check refuse with
  :class:`RunMismatch` (exit 2) naming them, since every rule would be read against the wrong
  numbers, unless the check finds violations: those are listed (exit 1, the contract's "exits 1
  on any violation") with the differences as notes (:func:`mismatch_notes`); ``force`` checks
  anyway. Not compared: ``data`` and ``output`` (the inputs are compared by content; a run folder
  may be moved), ``extends``, ``name``, the ``solver`` knobs (they decide which plan is made, not
  which rules hold) but ``solver.scores_per_customer``, and that one too when the run set it
  itself to fit memory. A ``history`` that only gained rows of the planning week or
  later (``--append-history``) is the same history: the manifest's
  ``history_before_week_sha256`` (:func:`optimizer.io.history.history_digest`) is compared instead.
- **Copies agree** (rule ``published_files``): ``assignments.parquet`` and ``assignments.csv``
  (and the two copies of ``offers_summary``, ``controls`` and ``pacing``) hold the same columns
  and the same rows in the same order; a CSV number agrees when it is the Parquet value at the
  precision the CSV prints (within half a unit of its last digit). When the assignments' copies
  disagree, every rule is checked on the CSV too and reported with its file name.
- **Ranks follow scores** (rule ``rank_order``): rank 1 is the customer's best score; equal
  scores are ranked by the offer's row in ``offers`` (the writer's tie-break).
- **offers_summary** (rule ``summary``): ``customers``, ``expected_redemptions``,
  ``expected_cost`` aggregate the assignments; ``budget`` is the offer's budget times
  ``budget_scale``, or its flight's share of the week when smaller; ``budget_used = expected_cost / budget``; ``min_customers``,
  ``max_customers`` are the offer's; ``shortfall = max(min_customers - customers, 0)``.
- **customers.parquet** (rule ``customers_table``): one row per customer, in the customers
  table's order; ``clv_decile`` is the decile of ``clv`` (ties by input order, empty with ``clv``).
- **Scores on the built-in path** (rule ``score_formula``): ``score = p_redeem * max(margin_weight
  * margin + redemption_value - discount_weight * discount, 0) * clv_factor``, with the clv factor
  from ``customers.parquet``'s ``clv`` (the objective's formula, docs/contract.md). ``p_redeem`` and
  ``clv`` themselves come from fitted models and are not re-derived here.
- **manifest.json figures** (rule ``manifest``, :mod:`optimizer.check.figures`): ``objective``
  is the sum of ``score``; ``upper_bound`` is at least the objective; ``gap = max(0, (bound -
  objective) / bound)`` (0 when the bound is not positive); ``customers_reached``, ``customers``, ``offers``,
  ``expected_redemptions`` (the sum of ``p_redeem``) and ``min_customers_shortfalls`` match the
  assignments and the inputs; ``offers_with_binding_budget`` counts the ``offers_summary`` rows
  whose ``shadow_price`` is above ``BINDING_PRICE`` (optimizer/core/numerics.py);
  ``inputs.<table>.rows`` of every input of the recorded SHA-256 and, when every input is,
  ``dropped_rows`` match the tables read; the campaign
  entries (``funders``, ``offer_groups``, ``group_flights``, ``channels``, ``contact_budget``)
  match the assignments and the inputs in every count, sum and share
  (:mod:`optimizer.check.campaign_figures`; their prices are the solver's).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.check.base import (
    ROUNDING,
    SUMMARY_ATOL,
    SUMMARY_RTOL,
    Violation,
    _attach_index,
    _close,
    _fmt,
    _id_column,
    _numbers,
    _sample,
    assignments_table,
    read_precision,
)
from optimizer.check.copies import (
    _exact_where_rounded,
    _in_file,
    _read,
    check_column_types,
    compare_copies,
)
from optimizer.check.figures import check_manifest
from optimizer.check.flights import flight_caps
from optimizer.check.verify import indexed_assignments, rule_violations
from optimizer.core.config import Scenario
from optimizer.core.errors import InputError, ScenarioError
from optimizer.core.numerics import group_sums, power
from optimizer.io import manifest as manifest_file
from optimizer.io import run_match
from optimizer.io.validate import Inputs

SCORE_RTOL, SCORE_ATOL = 1e-9, 1e-12       # score == the objective's formula


class RunMismatch(ScenarioError):
    """The run folder was made with another scenario or other inputs than the ones given;
    ``differences`` names them, one line each."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


# --------------------------------------------------------------------------------------------------
# the run's manifest, scenario and inputs


def read_manifest(run_dir: Path) -> tuple[dict[str, Any] | None, list[Violation]]:
    """``manifest.json`` as a dict (``None`` when absent or unreadable, with a violation then)."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        return None, []
    try:
        return manifest_file.read_manifest(run_dir).data, []
    except manifest_file.ManifestError as exc:
        return None, [Violation("manifest", str(exc), 1)]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, [Violation("manifest", f"manifest.json cannot be read as JSON ({exc})", 1)]


def run_differences(manifest: dict[str, Any] | None, scenario: Scenario, inputs: Inputs,
                    run_dir: Path, force: bool) -> list[str]:
    """Compare the run's recorded scenario and inputs with these (module docstring,
    :func:`optimizer.io.run_match.run_differences`). Raises :class:`RunMismatch` listing the
    differences, or with ``force`` returns them as notes."""
    if manifest is None:
        return [f"{run_dir} has no readable manifest.json: the scenario and inputs it was made "
                "from were not compared with these"]
    differences = run_match.run_differences(manifest, scenario, inputs)
    if not differences:
        return []
    if force:
        return ["checked anyway (--force) although the run was made differently:",
                *(f"  {d}" for d in differences)]
    raise RunMismatch(
        f"{run_dir} was made with another scenario or other inputs than the ones given, so its "
        "rules would be checked against the wrong numbers:\n"
        + "\n".join(f"  {d}" for d in differences)
        + "\nGive check the run's own --set overrides (manifest.json, 'scenario', holds what the "
          "run used) and inputs, or pass --force to check against these anyway", differences)


def mismatch_notes(mismatch: RunMismatch) -> list[str]:
    """The notes beside the violations found in a run made with another scenario or other
    inputs (the differences may explain them)."""
    return ["the run was made with another scenario or other inputs than these (the violations "
            "may come from that; give check the run's own --set and inputs, or --force):",
            *(f"  {d}" for d in mismatch.differences)]


# --------------------------------------------------------------------------------------------------
# what each file says


def check_rank_order(a: pl.DataFrame) -> list[Violation]:
    """Ranks follow scores: a customer's next rank never has a higher score, and equal scores
    follow the offers' order (the writer's tie-break). ``a`` as :func:`indexed_assignments`.
    Scores read at a printed precision (``rounding``) are out of order only when they differ by
    more than both roundings; within that their order, and so the tie-break, is unknown."""
    ranked = a.filter(pl.col("rank").is_not_null()).sort(["customer_id", "rank"],
                                                         maintain_order=True)
    before_score = pl.col("score").shift(1).over("customer_id")
    before_o = pl.col("o").shift(1).over("customer_id")
    blur = pl.col(ROUNDING) + pl.col(ROUNDING).shift(1).over("customer_id")
    bad = ranked.with_columns(score_one_rank_up=before_score).filter(
        ((pl.col("score") > before_score + blur)
         | ((blur == 0) & (pl.col("score") == before_score) & (pl.col("o") < before_o))
         ).fill_null(False))
    if not bad.height:
        return []
    customers = bad.select("customer_id").n_unique()
    first = bad.row(0, named=True)
    return [Violation("rank_order",
                      f"{customers} customer(s) have ranks out of score order (rank 1 = best "
                      f"score; customer {first['customer_id']!r}: rank {first['rank']} has score "
                      f"{_fmt(first['score'])} after {_fmt(first['score_one_rank_up'])})",
                      customers, _sample(bad, ["customer_id", "rank", "offer_id", "score",
                                               "score_one_rank_up"]))]


def _summary_frame(frame: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    ids = _id_column(frame, "offer_id", "offers_summary")
    numeric = ("customers", "expected_redemptions", "expected_cost", "budget", "budget_used",
               "min_customers", "max_customers", "shortfall")
    cols = [ids, *(_numbers(frame.get_column(c)).alias(c) for c in numeric if c in frame.columns)]
    return _attach_index(pl.DataFrame(cols), "offer_id", inputs.offers, "o",
                         inputs.id_is_int["offer_id"])


def _absent_offers(summary: pl.DataFrame, inputs: Inputs, name: str) -> list[Violation]:
    """Every offer has its row (the run writes one per offer, in the offers' order): a row
    missing where the offer got no assignment agreed with every sum, yet it hides the offer's
    budget and its ``min_customers`` shortfall from the planner."""
    absent = inputs.offers.join(summary.select("o"), on="o", how="anti", maintain_order="left")
    if not absent.height:
        return []
    shown: list[str] = [c for c in ("offer_id", "budget", "min_customers") if c in absent.columns]
    return [Violation("summary", f"{absent.height} offer(s) of 'offers' have no row in {name} "
                      f"(e.g. offer {absent.get_column('offer_id')[0]!r}): it lists every offer",
                      absent.height, _sample(absent, shown))]


def check_summary(frame: pl.DataFrame, path: Path, known_offer: pl.DataFrame, inputs: Inputs,
                  scenario: Scenario) -> list[Violation]:
    """One ``offers_summary`` file (read from ``path``) against the assignments and the offers
    table, each figure within its tolerance and what reading rounded away: half a unit of the
    summary's printed last decimal (a CSV) and of each assignment summed (``rounding``)."""
    name = Path(path).name
    missing = [c for c in ("offer_id", "customers", "expected_cost") if c not in frame.columns]
    if missing:
        return [Violation("summary", f"{name} lacks column(s) {', '.join(missing)}", 1, [])]
    try:
        summary = _summary_frame(frame, inputs)
    except InputError as exc:
        return [Violation("summary", f"{name}: {exc.problem}", 1, exc.sample)]
    out = []
    shown = [c for c in summary.columns if c != "o"]
    unknown = summary.filter(pl.col("o").is_null())
    if unknown.height:
        out.append(Violation("summary", f"{unknown.height} row(s) of {name} name offers not "
                             "in 'offers'", unknown.height, _sample(unknown, shown)))
    summary = summary.filter(pl.col("o").is_not_null())
    out += _absent_offers(summary, inputs, name)
    dup = summary.filter(pl.len().over("o") > 1)
    if dup.height:
        out.append(Violation("summary", f"{dup.select('o').n_unique()} offer(s) appear more than "
                             f"once in {name}", dup.select("o").n_unique(), _sample(dup, shown)))
        summary = summary.unique("o", keep="first", maintain_order=True)
    actual = (known_offer.group_by("o", maintain_order=True)
              .agg(offer_id_run=pl.first("offer_id"), run_customers=pl.len().cast(pl.Float64))
              .join(group_sums(known_offer, ["o"], {
                  "run_expected_redemptions": pl.col("p_redeem"),
                  "run_expected_cost": pl.col("expected_cost"), "rounded": pl.col(ROUNDING)}),
                    on="o", how="left", maintain_order="left"))
    both = summary.join(actual, on="o", how="full", coalesce=True, maintain_order="left_right")
    offers = inputs.offers.select(
        "o", run_budget=pl.col("budget").cast(pl.Float64) * scenario.rules.budget_scale,
        run_min_customers=pl.col("min_customers").cast(pl.Float64).fill_null(0.0),
        run_max_customers=pl.col("max_customers").cast(pl.Float64))
    # a flight's share of the week caps the budget the summary shows (optimizer/check/flights.py)
    offers = offers.join(flight_caps(inputs, scenario).select("o", "flight_cap"), on="o",
                         how="left", maintain_order="left").with_columns(
        run_budget=pl.min_horizontal("run_budget", "flight_cap")).drop("flight_cap")
    both = both.with_columns(
        pl.col("offer_id").fill_null(pl.col("offer_id_run")),
        pl.col("run_customers", "run_expected_redemptions", "run_expected_cost",
               "rounded").fill_null(0.0),
    ).join(offers, on="o", how="left", maintain_order="left").with_columns(
        run_budget_used=pl.when(pl.col("run_budget") > 0)
        .then(pl.col("run_expected_cost") / pl.col("run_budget")),
        run_shortfall=(pl.col("run_min_customers") - pl.col("run_customers")).clip(0.0))
    compare = [c for c in ("customers", "expected_redemptions", "expected_cost", "budget",
                           "budget_used", "min_customers", "max_customers", "shortfall")
               if c in summary.columns]
    # what reading rounded away: the summary's own printing, and the assignments' summed
    # (budget_used divides their summed cost by the budget)
    printed = read_precision(Path(path))
    summed = {"expected_redemptions": pl.col("rounded"), "expected_cost": pl.col("rounded"),
              "budget_used": pl.col("rounded") / pl.col("run_budget").abs()}
    agrees = {c: (pl.col(c).is_null() & pl.col(f"run_{c}").is_null()) | _close(
        pl.col(c), pl.col(f"run_{c}"), SUMMARY_RTOL,
        SUMMARY_ATOL + printed + summed.get(c, pl.lit(0.0))) for c in compare}
    both = both.with_columns(**{f"__ok_{c}": ok for c, ok in agrees.items()})
    bad = both.filter(~pl.all_horizontal(f"__ok_{c}" for c in compare))
    if bad.height:
        f = bad.row(0, named=True)
        wrong = [c for c in compare if not f[f"__ok_{c}"]]
        detail = ", ".join(f"{c} {_fmt(f[c])} vs {_fmt(f['run_' + c])}" for c in wrong)
        out.append(Violation(
            "summary",
            f"{bad.height} offer(s) in {name} disagree with the assignments and offers (offer "
            f"{f['offer_id']!r}: {detail}; a missing row reads as empty)", bad.height,
            _sample(bad, ["offer_id"] + [x for c in compare for x in (c, f"run_{c}")])))
    return out


def check_customers_table(run_dir: Path, inputs: Inputs
                          ) -> tuple[list[Violation], np.ndarray | None]:
    """``customers.parquet`` (when written): one row per customer in the customers table's order,
    ``clv_decile`` the decile of ``clv``. Returns the violations and the ``clv`` column (by
    customer index) when the table is sound, for the score check."""
    path = Path(run_dir) / "customers.parquet"
    if not path.is_file():
        return [], None
    try:
        frame = _read(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return [Violation("customers_table", f"cannot read {path.name}: {exc}", 1)], None
    missing = [c for c in ("customer_id", "clv", "clv_decile") if c not in frame.columns]
    if missing:
        return [Violation("customers_table", f"{path.name} lacks column(s) "
                          f"{', '.join(missing)}", 1)], None
    master = inputs.customers.get_column("customer_id")
    try:
        ids = _id_column(frame, "customer_id", "customers")
    except InputError as exc:
        return [Violation("customers_table", f"{path.name}: {exc.problem}", 1, exc.sample)], None
    same = ids.len() == master.len() and bool(
        ids.cast(pl.Utf8).eq_missing(master.cast(pl.Utf8)).all())
    if not same:
        return [Violation("customers_table", f"{path.name} does not list the {master.len()} "
                          f"customers of 'customers' in their order (it has {ids.len()} rows)",
                          1)], None
    clv = _numbers(frame.get_column("clv")).to_numpy()
    decile = _numbers(frame.get_column("clv_decile")).to_numpy()
    out = []
    known = ~np.isnan(clv)
    if not np.isfinite(clv[known]).all():
        out.append(Violation("customers_table", f"{path.name} has clv values that are not "
                             "finite", int((~np.isfinite(clv[known])).sum())))
    order = np.flatnonzero(known)[np.argsort(clv[known], kind="stable")]
    expected = np.full(clv.size, np.nan)
    expected[order] = np.arange(order.size) * 10 // max(order.size, 1) + 1
    wrong = np.flatnonzero(~((expected == decile) | (np.isnan(expected) & np.isnan(decile))))
    if wrong.size:
        out.append(Violation(
            "customers_table", f"{wrong.size} customer(s) in {path.name} have a clv_decile that "
            "is not the decile of their clv (1 = lowest tenth, ties by input order)", wrong.size,
            [{"customer_id": ids[int(k)], "clv": clv[k], "clv_decile": decile[k],
              "decile of clv": expected[k]} for k in wrong[:5]]))
    return out, (clv if not out else None)


def check_score_formula(a: pl.DataFrame, inputs: Inputs, scenario: Scenario,
                        clv: np.ndarray | None) -> list[Violation]:
    """Built-in path: each score is the objective's formula of its ``p_redeem``, the offer's
    margin and discount and the customer's published ``clv`` (module docstring)."""
    if inputs.has_scores or clv is None or np.isnan(clv).any() or not clv.size:
        return []
    obj = scenario.objective
    mean = float(clv.mean())
    # power: the clv factor's own pow (optimizer/scoring/clv.py), the same bits on every CPU
    factor = (np.ones_like(clv) if mean <= 0
              else np.clip(power(clv / mean, obj.clv_weight), obj.clv_floor, obj.clv_cap))
    offers = inputs.offers.sort("o")
    margin = offers.get_column("margin").cast(pl.Float64).fill_null(0.0).to_numpy()
    discount = offers.get_column("discount").cast(pl.Float64).fill_null(0.0).to_numpy()
    worth = np.maximum(obj.margin_weight * margin + obj.redemption_value
                       - obj.discount_weight * discount, 0.0)
    known = a.filter(pl.col("c").is_not_null() & pl.col("o").is_not_null())
    c = known.get_column("c").cast(pl.Int64).to_numpy()
    o = known.get_column("o").cast(pl.Int64).to_numpy()
    p = known.get_column("p_redeem").cast(pl.Float64).to_numpy()
    expected = p * worth[o] * factor[c]
    score = known.get_column("score").cast(pl.Float64).to_numpy()
    # score and p_redeem as read may be their printing's rounding (``rounding``)
    blur = known.get_column(ROUNDING).to_numpy() * (1 + np.abs(worth[o] * factor[c]))
    with np.errstate(invalid="ignore"):
        ok = np.abs(score - expected) <= SCORE_RTOL * np.maximum(
            np.abs(score), np.abs(expected)) + SCORE_ATOL + blur
    wrong = np.flatnonzero(~ok)
    if not wrong.size:
        return []
    rows = known[wrong[:5].tolist()].with_columns(
        pl.Series("p_redeem x worth x clv_factor", expected[wrong[:5]]))
    first = rows.row(0, named=True)
    return [Violation(
        "score_formula",
        f"{wrong.size} assignment(s) have a score that is not p_redeem x max(margin_weight x "
        "margin + redemption_value - discount_weight x discount, 0) x clv_factor (customer "
        f"{first['customer_id']!r}, offer {first['offer_id']!r}: {_fmt(first['score'])} vs "
        f"{_fmt(first['p_redeem x worth x clv_factor'])})", int(wrong.size),
        _sample(rows, ["customer_id", "rank", "offer_id", "p_redeem", "score",
                       "p_redeem x worth x clv_factor"]))]


def published_violations(run_dir: Path, raw: pl.DataFrame, inputs: Inputs, scenario: Scenario,
                         manifest: dict[str, Any] | None) -> list[Violation]:
    """Everything the run published beyond the rules of its assignments (module docstring).
    ``raw`` is the assignments table :mod:`optimizer.check` read (the Parquet copy, if any)."""
    run_dir = Path(run_dir)
    out: list[Violation] = []
    agree, found = compare_copies(run_dir, "assignments")
    out += found + check_column_types(run_dir, inputs.id_is_int)
    csv_path = run_dir / "assignments.csv"
    if not agree and (run_dir / "assignments.parquet").is_file() and csv_path.is_file():
        try:
            csv = _exact_where_rounded(assignments_table(_read(csv_path), csv_path), raw)
            out += _in_file(rule_violations(csv, inputs, scenario), csv_path.name)
        except (InputError, pl.exceptions.PolarsError, OSError) as exc:
            out.append(Violation("published_files", f"{csv_path.name}: {exc}", 1))
    a = indexed_assignments(raw, inputs)
    known_offer = a.filter(pl.col("o").is_not_null())
    agree, found = compare_copies(run_dir, "offers_summary")
    out += found
    files = [p for p in (run_dir / "offers_summary.parquet", run_dir / "offers_summary.csv")
             if p.is_file()]
    summary: tuple[pl.DataFrame, Path] | None = None
    for path in files if not agree else files[:1]:
        try:
            frame = _read(path)
            summary = summary or (frame, path)
            out += check_summary(frame, path, known_offer, inputs, scenario)
        except (pl.exceptions.PolarsError, OSError) as exc:
            out.append(Violation("summary", f"cannot read {path.name}: {exc}", 1))
    for name in ("controls", "pacing"):  # judged on one copy elsewhere; the other must agree
        out += compare_copies(run_dir, name)[1]
    found, clv = check_customers_table(run_dir, inputs)
    out += found
    out += check_score_formula(a, inputs, scenario, clv)
    if manifest is not None:
        out += check_manifest(manifest, a, inputs, summary, scenario)
    return out


__all__ = ["RunMismatch", "check_customers_table", "check_manifest", "check_rank_order",
           "check_score_formula", "check_summary", "compare_copies", "published_violations",
           "read_manifest", "run_differences"]
