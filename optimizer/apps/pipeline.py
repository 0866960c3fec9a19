"""``run_scenario``: the only place that calls the steps in order.

load and validate -> customer features -> lifetime value and affinity (or the ``scores`` table)
-> eligibility -> problem -> solver -> outputs and report. Customers flow through scoring and
eligibility in chunks, so memory grows with the chunk and the kept candidates, not with
customers x offers.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from optimizer import __version__
from optimizer.apps.solve_stage import solve_week
from optimizer.core.allocator import release_freed_memory, reusing_freed_memory
from optimizer.core.config import Scenario, scenario_to_dict
from optimizer.core.errors import InfeasibleError, ScenarioError
from optimizer.core.numerics import binding
from optimizer.core.predicate import read_columns
from optimizer.io.history import (
    check_history_week,
    history_digest,
    history_lock,
    stage_history,
)
from optimizer.io.manifest import read_manifest
from optimizer.io.memory import check_memory, fit_scores_per_customer, stream_scores
from optimizer.io.runfolder import check_output, json_writer, table_writers, write_run_folder
from optimizer.io.validate import Inputs, load_inputs
from optimizer.model import pins, stability
from optimizer.model.build import Built, build_problem
from optimizer.model.flights import has_flights
from optimizer.model.holdout import withhold_controls
from optimizer.model.problem import AssignmentProblem, Prices, Solution
from optimizer.report.campaign import flights_record, pacing_frame
from optimizer.report.channels import channel_manifest
from optimizer.report.groups_funders import campaign_manifest
from optimizer.report.page import render_report
from optimizer.report.tables import assignments_frame, customers_frame, offers_summary_frame
from optimizer.scoring.affinity import AffinityModel
from optimizer.scoring.clv import with_given_clv
from optimizer.scoring.features import (
    OfferCategories,
    PurchaseLines,
    offer_categories,
    purchase_lines,
)
from optimizer.scoring.fit import fit_scoring
from optimizer.solve import polish_reach
from optimizer.solve.lagrangian.start import best_by_prices
from optimizer.solve.lagrangian.truncation import affinity_truncation, scores_truncation

log = logging.getLogger(__name__)
Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class RunResult:
    """What a run produced: its tables, manifest and where it was written."""

    scenario: Scenario
    assignments: pl.DataFrame
    offers_summary: pl.DataFrame
    manifest: dict[str, Any]
    output: Path | None
    solution: Solution = field(repr=False)
    customers: pl.DataFrame | None = field(default=None, repr=False)  # id, clv, clv_decile
    history_appended: int | None = None  # rows appended to the input history (append_history)
    controls: pl.DataFrame | None = field(default=None, repr=False)  # optimizer/model/holdout.py

    @property
    def objective(self) -> float:
        return self.solution.objective

    @property
    def bound(self) -> float:
        return self.solution.bound

    @property
    def gap(self) -> float:
        return self.solution.gap


class _Stages:
    """Times the run's stages; the stages in ``_KEEP_FREED`` run with freed memory kept for
    reuse (optimizer/core/allocator.py), handed back when they end."""

    def __init__(self, progress: Progress | None) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self._start = 0.0
        self._name = ""
        self._allocator = ExitStack()

    @property
    def started_at(self) -> float:
        return self._start

    def start(self, name: str) -> None:
        self._name, self._start = name, time.perf_counter()
        if name in _KEEP_FREED:
            self._allocator.enter_context(reusing_freed_memory())
        if self.progress:
            self.progress("stage", {"stage": name})

    def stop(self) -> None:
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + time.perf_counter() - self._start
        self._allocator.close()

    def close(self) -> None:
        """Restore the allocator if a stage ended by an exception."""
        self._allocator.close()


# Stages whose passes repeat allocations of the same sizes, where kept memory is reused.
# Loading and fitting allocate ever different sizes, and kept memory there left holes (affinity
# path at a million customers: 9.0 GB peak in fitting instead of 7.7 GB); in eligibility it
# measured neither faster nor slower.
_KEEP_FREED = frozenset({"solve", "bound_all_candidates"})


@dataclass
class Scored:
    """The features step's output: the offers' categories, the fitted affinity model (None
    when the inputs carry a ``scores`` table), each customer's lifetime value (NaN unknown)
    and the manifest's descriptions of both models."""

    cats: OfferCategories
    model: AffinityModel | None
    clv: np.ndarray
    lifetime_value: dict[str, Any]
    propensity: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def score_inputs(inputs: Inputs, scenario: Scenario, week: int, fit: bool = False,
                 lines: PurchaseLines | None = None) -> Scored:
    """The features step of a run (``run``, ``explain`` and ``backtest`` take it from here):
    the models fitted on the weeks before ``week``, or the ``scores`` table as given (``fit``:
    fit the models even then, as ``backtest`` does). ``lines``: the inputs' purchase lines
    before ``week`` when already made (:func:`optimizer.scoring.fit.fit_scoring`)."""
    cats = offer_categories(inputs)
    if inputs.has_scores and not fit:
        none = {"model": "none (scores table)"}
        return Scored(cats, None, with_given_clv(inputs, np.full(inputs.n_customers, np.nan)),
                      dict(none), dict(none))
    scoring = fit_scoring(inputs, scenario, cats, week, lines)
    return Scored(cats, scoring.model, scoring.clv, scoring.lifetime_value, scoring.propensity,
                  scoring.seconds)


def _lines_for_fit(inputs: Inputs, scenario: Scenario
                   ) -> tuple[PurchaseLines | None, Inputs, float]:
    """The purchase lines the run's fit reads (None on the scores path), the inputs without
    their transactions, and the seconds the lines took. No stage after the lines reads the
    transactions (1.4 GB at a million customers, 40 M lines): the caller rebinds its inputs to
    the ones returned, so they are let go before the models are fitted."""
    lines, tick = None, time.perf_counter()
    if not inputs.has_scores:
        lines = purchase_lines(inputs, scenario.rules.sensitive_categories, scenario.week)
    seconds = time.perf_counter() - tick
    return lines, replace(inputs, transactions=inputs.transactions.clear()), seconds


def _fit_from_lines(inputs: Inputs, scenario: Scenario, lines: PurchaseLines | None,
                    lines_seconds: float) -> Scored:
    """The run's models fitted from the purchase ``lines`` (the transactions already let go and
    their memory handed back)."""
    release_freed_memory()
    scored = score_inputs(inputs, scenario, scenario.week, lines=lines)
    if lines is not None:
        scored.seconds = {"purchase_lines": lines_seconds, **scored.seconds}
    return scored


def warm_start_prices(run_dir: Path, inputs: Inputs) -> Prices:
    """The dual prices saved in the manifest of the run folder ``run_dir``, matched by offer_id
    (offers the earlier run did not have start at zero)."""
    try:
        saved = read_manifest(run_dir).dual_prices
    except FileNotFoundError:
        raise ScenarioError(f"--warm-start {run_dir}: no manifest.json there; name a run folder "
                            "of offeropt run") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ScenarioError(f"--warm-start {run_dir}: cannot read the dual prices of its "
                            f"manifest.json ({type(exc).__name__}: {exc})") from None
    ids = inputs.offers.get_column("offer_id").to_list()
    budget, count = saved.for_offers(ids)
    return Prices(budget, count, saved.global_budget, np.zeros(len(ids)))


def run_scenario(scenario: Scenario, progress: Progress | None = None, write: bool = True,
                 warm_start: Prices | None = None, append_history: bool = False,
                 replace_week: bool = False, warm_start_run: Path | None = None,
                 previous_run: Path | None = None) -> RunResult:
    """Plan the scenario's week and (by default) write its run folder. See the module docstring.

    ``append_history``: after the run folder is written, append this week's assignments to the
    input folder's ``history`` table (see :mod:`optimizer.io.history`); refused before planning when
    the table already holds the planning week, unless ``replace_week`` replaces that week's rows.

    ``warm_start``: dual prices to start the solver from; ``warm_start_run``: a run folder whose
    manifest's prices to start from (``--warm-start``). The plan depends on the start when the
    solve stops short of its tolerance, so there is no implicit start: without either, the solver
    starts from zero prices, and what was used is recorded in the manifest's ``warm_start``.

    ``previous_run``: a run folder holding last week's lists, for ``rules.change_penalty``
    (default: history's rows of the week before) and the manifest's ``stability`` record.
    """
    if write:  # a folder the run may not replace, or cannot write, is refused before planning
        check_output(scenario.output, scenario.data, kind="run")
    if append_history:
        if not write:
            raise ValueError("append_history needs write=True: history records the written plan")
        check_history_week(scenario.data, scenario.week, replace_week)
    stages = _Stages(progress)
    try:
        return _run(scenario, stages, write, warm_start, append_history, replace_week,
                    warm_start_run, previous_run)
    finally:
        stages.close()


@dataclass(frozen=True)
class _Loaded:
    """What the load stage tells the manifest: the digest of the history the run read (so
    check can accept rows appended after it, see validate.py), the candidates kept to fit
    memory (empty: none) and the memory estimate."""

    history_read: str
    fitted: str | None
    memory: dict[str, object]


def _load(scenario: Scenario) -> tuple[Scenario, Inputs, _Loaded]:
    """The load stage: the validated inputs, and the scenario with ``solver.scores_per_customer``
    narrowed when the whole ``scores`` table would not fit in memory."""
    columns = read_columns([r.require for r in scenario.rules.eligibility])
    inputs = load_inputs(scenario.data, stream_scores=stream_scores(scenario),
                         customer_columns=columns, scores_url=scenario.scores_url)
    history_read = history_digest(inputs.history, scenario.week)
    for warning in inputs.warnings:
        log.warning("%s", warning)
    scenario, fitted = fit_scores_per_customer(inputs, scenario)
    if fitted:
        log.warning("%s (solver.scores_per_customer)", fitted)
    memory = check_memory(inputs, scenario)  # stops here, before the big arrays, if it cannot fit
    return scenario, inputs, _Loaded(history_read, fitted, memory.describe())


def _run(scenario: Scenario, stages: _Stages, write: bool, warm_start: Prices | None,
         append_history: bool, replace_week: bool, warm_start_run: Path | None,
         previous_run: Path | None = None) -> RunResult:
    stages.start("load")
    scenario, inputs, loaded = _load(scenario)
    stages.stop()
    rules_cfg = scenario.rules
    if rules_cfg.global_budget is not None and rules_cfg.global_budget < 0:
        raise InfeasibleError("global_budget is negative")

    stages.start("features")
    lines, inputs, lines_seconds = _lines_for_fit(inputs, scenario)
    scored = _fit_from_lines(inputs, scenario, lines, lines_seconds)
    del lines
    release_freed_memory()  # the fit's freed heap, handed back before eligibility and the solve
    cats, model, clv = scored.cats, scored.model, scored.clv
    stages.stop()

    stages.start("eligibility")
    built = build_problem(inputs, scenario, cats, model, select=best_by_prices,
                          previous_run=previous_run, hold_pairs_up_to=polish_reach(scenario.solver))
    inputs, rules, problem = built.inputs, built.rules, built.problem
    stages.stop()

    stages.start("solve")
    def on_iteration(entry: dict[str, float | None]) -> None:
        if stages.progress:
            stages.progress("polish" if "polish" in entry else "iteration", entry)
    started_from = "given prices" if warm_start is not None else None
    if warm_start_run is not None:
        warm_start, started_from = warm_start_prices(warm_start_run, inputs), str(warm_start_run)
    if warm_start is None:  # the prices that chose the kept pairs, if any: a good start
        warm_start = built.start_prices
    # the solver zeroes prices on constraints this scenario lacks (start.admissible_prices)
    built, solution, priced = solve_week(built, scenario, model, warm_start, on_iteration,
                                         stages.started_at)
    problem = built.problem
    stages.stop()

    inputs, truncation = _bound_all_candidates(scenario, built, inputs, model, solution, stages,
                                               priced)

    if built.previous is not None:
        stability.settle(problem, solution, built.previous, rules_cfg.change_penalty, built.caps,
                         truncation)
    stages.start("write")
    # the controls' sends are withheld from the plan as solved, their budget left unspent
    # (optimizer/model/holdout.py); the manifest's objective and gap count the sends made
    held = withhold_controls(inputs, problem, solution, scenario.measurement, scenario.week)
    solution = held.solution
    assignments = assignments_frame(inputs, problem, solution)
    summary = offers_summary_frame(inputs, problem, assignments, solution)
    manifest = _manifest(scenario, inputs, problem, solution, summary, rules.audit, built.cap_audit,
                         scored.lifetime_value, stages.seconds)
    manifest["customers_reached"] = assignments.get_column("customer_id").n_unique()
    manifest.update(campaign_manifest(problem, solution,
                                      inputs.offers.get_column("offer_id").to_list()))
    manifest.update(channel_manifest(problem, solution))
    manifest["history_before_week_sha256"] = loaded.history_read
    manifest["propensity"] = scored.propensity
    manifest["candidates"] = truncation
    if inputs.has_scores:
        truncation["scores_read"] = "in batches" if inputs.scores_batches is not None else "whole"
    if loaded.fitted:  # recorded even when the rules left no customer more pairs than were kept
        truncation["kept_to_fit_memory"] = loaded.fitted
    manifest["memory"] = loaded.memory
    manifest["warm_start"] = started_from
    manifest["measurement"] = held.info
    pacing = _campaign_records(manifest, scenario, built, inputs, solution, summary)
    customers = customers_frame(inputs, clv) if not np.isnan(clv).all() else None
    result = RunResult(scenario, assignments, summary, manifest,
                       scenario.output if write else None, solution, customers,
                       controls=held.controls)
    if write:
        # runs with flights write each send's expected cost into history (the flights' spend)
        _write_folder(result, stages, append_history, replace_week, pacing,
                      with_cost=has_flights(inputs.offers, inputs.flights))
    stages.stop()
    manifest["seconds"] = dict(stages.seconds)
    return result


def _campaign_records(manifest: dict[str, Any], scenario: Scenario, built: Built,
                      inputs: Inputs, solution: Solution, summary: pl.DataFrame
                      ) -> pl.DataFrame | None:
    """The manifest's ``stability`` (lists changed against last week) and ``flights`` records;
    the ``pacing`` table when a flight covers this week."""
    rules_cfg, problem = scenario.rules, built.problem
    if built.previous is not None:
        manifest["stability"] = stability.record(
            built.previous, *problem.chosen_pairs(solution.chosen), rules_cfg.change_penalty,
            solution.objective, solution.bound)
        if built.pins is not None:
            manifest["stability"]["pins"] = pins.record(built.pins, solution.chosen)
    plan = built.flights
    if plan is None or not plan.weeks.height:
        return None
    pacing = pacing_frame(inputs, plan, summary, scenario.week)
    manifest["flights"] = flights_record(plan, pacing, rules_cfg.pacing)
    return pacing


def _bound_all_candidates(scenario: Scenario, built: Built, inputs: Inputs,
                          model: AffinityModel | None, solution: Solution, stages: _Stages,
                          priced: list[dict[str, Any]] | None = None
                          ) -> tuple[Inputs, dict[str, Any]]:
    """The manifest's ``candidates``: what keeping each customer's best few candidates may have
    cost (:mod:`optimizer.solve.lagrangian.truncation`), when any were left out, and the pricing
    rounds ``priced`` (:mod:`optimizer.apps.solve_stage`); the inputs with the ``scores`` table
    freed once it is read again."""
    problem, rules = built.problem, built.rules
    truncation: dict[str, Any] = {"candidates_per_customer": "all", "pairs": problem.n_pairs}
    if model is None and built.truncated:
        stages.start("bound_all_candidates")
        truncation = scores_truncation(inputs, scenario, rules, built.caps, problem, solution,
                                       built.start_prices)
        truncation["selection"] = built.selection["description"]
        if inputs.scores is not None:
            inputs = replace(inputs, scores=inputs.scores.clear())
        stages.stop()
    if (model is not None and scenario.affinity.bound_all_candidates
            and scenario.affinity.candidates_per_customer < inputs.n_offers):
        stages.start("bound_all_candidates")
        truncation = affinity_truncation(model, inputs, scenario, rules, built.caps, problem,
                                         solution, built.dropped)
        stages.stop()
    if priced is not None:
        truncation["pricing_rounds"] = priced
    return inputs, truncation


def _write_folder(result: RunResult, stages: _Stages, append_history: bool,
                  replace_week: bool, pacing: pl.DataFrame | None = None,
                  with_cost: bool = False) -> None:
    """Write the run folder of ``result`` (whole or not at all), with its report, and append
    this week's assignments to the input history in the same step when asked."""
    scenario, manifest, customers = result.scenario, result.manifest, result.customers
    assignments = result.assignments
    writers = {**table_writers("assignments", assignments),
               **table_writers("offers_summary", result.offers_summary),
               **(table_writers("controls", result.controls)
                  if result.controls is not None else {})}
    if pacing is not None:  # the flights' planned and spent by week (optimizer/model/flights.py)
        writers.update(table_writers("pacing", pacing))
    if customers is not None:
        writers["customers.parquet"] = lambda path: customers.write_parquet(path)
    # the report's charts (matplotlib) render while the tables are written
    # (polars writes without the GIL); the page is the same either way
    with ThreadPoolExecutor(1) as pool:
        report = pool.submit(render_report, result)
        writers["report.html"] = lambda path: path.write_text(report.result(), "utf-8")

        def write_manifest(path: Path) -> None:
            # written last, so its timings include the writing of every other file
            manifest["seconds"] = {**stages.seconds,
                                   "write": time.perf_counter() - stages.started_at}
            json_writer(manifest)(path)
        writers["manifest.json"] = write_manifest
        with ExitStack() as history:
            staged = None
            if append_history:
                # the table is read, checked and staged under its lock, and replaced in the
                # same step as the run folder (a Ctrl-C or a failure before it changes
                # neither); a concurrent run's append waits, then sees this one's rows
                history.enter_context(history_lock(scenario.data))
                staged = stage_history(scenario.data, assignments, scenario.week,
                                       replace_week,
                                       with_cost=with_cost)
                history.callback(staged.discard)
            write_run_folder(scenario.output, writers,
                             then=staged.commit if staged is not None else None, kind="run")
        if staged is not None:
            result.history_appended = staged.rows


# the packages whose arithmetic decides a plan: a different version may give a different plan
# (llvmlite is numba's code generator: numba accepts a range of it, and its version decides the
# compiled kernels' instructions)
_DECIDING_PACKAGES = ("numpy", "numba", "llvmlite", "ortools", "polars", "pyarrow", "scipy")


def deciding_versions() -> dict[str, str]:
    """Python's and the plan-deciding packages' installed versions, for the manifest."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in _DECIDING_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _manifest(scenario: Scenario, inputs: Inputs, problem: AssignmentProblem, solution: Solution,
              summary: pl.DataFrame, audit: dict[str, int], cap_audit: dict[str, int],
              clv_info: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    shortfalls = summary.filter(pl.col("shortfall") > 0).select(
        "offer_id", "min_customers", "customers", "shortfall").to_dicts()
    prices = solution.prices
    binding_budgets = int(binding(summary.get_column("shadow_price").to_numpy()).sum())
    return {
        "package_version": __version__,
        "versions": deciding_versions(),
        "scenario": scenario_to_dict(scenario),
        "inputs": {name: {"rows": inputs.row_counts[name], "sha256": inputs.sha256[name]}
                   for name in sorted(inputs.row_counts)},
        "dropped_rows": inputs.dropped,
        "input_warnings": list(inputs.warnings),
        "objective": solution.objective,
        # what customers take up, next to the (possibly value-weighted) objective (issue 25)
        "expected_redemptions": float(summary.get_column("expected_redemptions").sum()),
        "upper_bound": solution.bound,
        "gap": solution.gap,
        "solver": {"method": solution.method, "status": solution.status,
                   "iterations": solution.iterations, "trace": solution.trace,
                   "polish": getattr(solution, "polish", None),
                   "backend": solution.backend},
        "eligibility_audit": {"pairs": audit, "caps": cap_audit},
        "candidate_pairs": problem.n_pairs,
        "customers": inputs.n_customers,
        "offers": inputs.n_offers,
        "offers_with_binding_budget": binding_budgets,
        "min_customers_shortfalls": shortfalls,
        "lifetime_value": clv_info,
        "dual_prices": {
            "offer_id": inputs.offers.get_column("offer_id").to_list(),
            "budget": prices.budget.tolist(), "count": prices.count.tolist(),
            "global_budget": prices.global_budget,
        },
        "seconds": dict(seconds),
    }
