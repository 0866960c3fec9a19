"""``run_scenario``: the only place that calls the steps in order.

load and validate -> customer features -> lifetime value and affinity (or the ``scores`` table)
-> eligibility -> problem -> solver -> outputs and report. Customers flow through scoring and
eligibility in chunks, so memory grows with the chunk and the kept candidates, not with
customers x offers.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import polars as pl

from optimizer import __version__
from optimizer.core.allocator import reusing_freed_memory, usable_cpus
from optimizer.core.config import Scenario, scenario_to_dict
from optimizer.core.errors import InfeasibleError, ScenarioError
from optimizer.core.numerics import binding
from optimizer.io.history import check_history_week, history_lock, stage_history
from optimizer.io.memory import check_memory, fit_scores_per_customer, stream_scores
from optimizer.io.runfolder import check_output, json_writer, table_writers, write_run_folder
from optimizer.io.scores_stream import ScoresChunk, scores_chunks
from optimizer.io.validate import Inputs, history_digest, load_inputs
from optimizer.model.eligibility import EligibilityRules, compile_rules, customer_caps
from optimizer.model.holdout import withhold_controls
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    OfferData,
    Prices,
    Solution,
    block_from_pairs,
    offer_data,
)
from optimizer.report.page import render_report
from optimizer.report.tables import assignments_frame, customers_frame, offers_summary_frame
from optimizer.scoring.affinity import AffinityModel
from optimizer.scoring.clv import with_given_clv
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring
from optimizer.solve import solve
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.bounds import best_totals, virtual_totals
from optimizer.solve.lagrangian.method import admissible_prices, capacity_terms, dual_bounds
from optimizer.solve.lagrangian.start import best_by_prices

log = logging.getLogger(__name__)
Progress = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")
R = TypeVar("R")


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


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _scores_blocks(inputs: Inputs, scenario: Scenario, rules: EligibilityRules, caps: np.ndarray,
                   discount: np.ndarray, audit: bool = True, consume: bool = False
                   ) -> Iterator[CandidateBlock]:
    """Candidate blocks from the ``scores`` table, one per chunk of customers: the listed pairs
    that the rules allow, of positive value.

    Chunks are built on ``solver.threads`` threads, at most that many at a time, while the next
    chunk's rows are read; each block depends on its chunk's rows only and audits are added in
    chunk order, so the blocks and the audit are the same for any thread count. ``audit=False``
    leaves the audit as it is (a second pass over the same pairs); ``consume`` lets the table go
    chunk by chunk (:func:`~optimizer.io.scores_stream.scores_chunks`), when it is read once."""
    def chunk(part: ScoresChunk) -> tuple[CandidateBlock, dict[str, int]]:
        cc, oo, v = part.c, part.o, part.value
        # the rules see each pair as a one-slot row of its customer (a chunk may list none);
        # each chunk audits into its own counts, added to the run's in chunk order
        own = replace(rules, audit={name: 0 for name in rules.audit})
        live = (own.allowed(cc, oo[:, None])[:, 0] if cc.size
                else np.zeros(0, dtype=bool)) & (v > 0)
        kept = np.flatnonzero(live)
        block = block_from_pairs(np.arange(part.start, part.stop, dtype=np.int64),
                                 cc[kept] - part.start, oo[kept], part.p_redeem[kept], v[kept],
                                 discount, caps[part.start:part.stop])
        return block, own.audit

    bounds = _chunks(inputs.n_customers, scenario.solver.chunk_size)
    for block, chunk_audit in _in_order(chunk, scores_chunks(inputs, bounds, consume),
                                        _threads(scenario)):
        if audit:
            for name, count in chunk_audit.items():
                rules.audit[name] += count
        yield block


def _threads(scenario: Scenario) -> int:
    threads = scenario.solver.threads
    return threads if threads > 0 else usable_cpus()


def _in_order(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``threads`` threads, results in item order, at most ``threads``
    items started and not yet taken (memory stays bounded by a few chunks). ``items`` may be
    a generator: it is advanced on the calling thread, while the started items run."""
    if threads <= 1 or (isinstance(items, list) and len(items) < 2):
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# categories whose largest dropped value each customer keeps for the bound over all candidates
_DROPPED_CATEGORIES = 8


@dataclass
class _Dropped:
    """What each customer of a block left out of her kept candidates (see
    :func:`optimizer.solve.lagrangian.bounds.virtual_totals`)."""

    top_value: np.ndarray
    top_category: np.ndarray
    residual: np.ndarray


def _affinity_blocks(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                     rules: EligibilityRules, caps: np.ndarray, offers: OfferData,
                     per_category: int | None
                     ) -> tuple[list[CandidateBlock], list[_Dropped]]:
    """Candidate blocks scored by the built-in affinity model, best few per customer kept, and
    per block what its customers dropped (for the bound over all candidates).

    Chunks are scored on ``solver.threads`` threads by the compiled kernel
    (:meth:`AffinityModel.select`), at most that many at a time; each chunk's block depends on
    its customers only, so the blocks are the same for any thread count."""
    keep = scenario.affinity.candidates_per_customer
    primary = offers.categories[:, 0]
    top = (min(_DROPPED_CATEGORIES, offers.n_categories)
           if per_category is not None and scenario.affinity.bound_all_candidates else 0)
    n_offers = inputs.n_offers
    model.kernel_arrays(np.zeros(0, dtype=np.int64))  # shared arrays built before the threads

    def chunk(bounds: tuple[int, int]) -> tuple[CandidateBlock, _Dropped, dict[str, int]]:
        start, stop = bounds
        customers = np.arange(start, stop, dtype=np.int64)
        offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64), (stop - start, n_offers))
        # the chunk's own audit (rules.allowed adds to it), added to the run's in chunk order
        own = replace(rules, audit={name: 0 for name in rules.audit})
        allowed = own.allowed(customers, offer)
        kept = model.select(customers, allowed, keep, primary, top)
        del allowed
        block = block_from_pairs(customers, kept.row, kept.offer, kept.p_redeem, kept.value,
                                 offers.discount, caps[start:stop])
        return block, _Dropped(kept.top_value, kept.top_category.astype(np.int32),
                               kept.residual), own.audit
    blocks, dropped = [], []
    for block, drop, audit in _in_order(chunk, _chunks(inputs.n_customers,
                                                       scenario.solver.chunk_size),
                                        _threads(scenario)):
        blocks.append(block)
        dropped.append(drop)
        for name, count in audit.items():
            rules.audit[name] += count
    return blocks, dropped


# customers re-scored over every offer at a time in the bound over all candidates
_RESCORE_ROWS = 10_000


def _truncation(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                rules: EligibilityRules, caps: np.ndarray, problem: AssignmentProblem,
                solution: Solution, dropped: list[_Dropped]) -> dict[str, Any]:
    """What keeping only each customer's best few candidates may have cost.

    The final prices bound every eligible pair too (weak duality holds for any non-negative
    prices): the sum over customers of each one's relaxed best response over ALL her eligible
    candidates, plus prices x capacities, bounds the best plan over all candidates
    (as :func:`~optimizer.solve.lagrangian.method.dual_bound` computes it). Each customer's term is
    first bounded from her kept candidates and what she dropped
    (:func:`optimizer.solve.lagrangian.bounds.virtual_totals`: an upper bound, equal to her best response over
    the kept ones when it takes none of the dropped); only the customers for whom a dropped
    candidate could count are re-scored over every eligible offer, and get their exact term.
    The bound is therefore the one a full re-scoring gives (up to rounding), at the cost of
    re-scoring those customers only.
    """
    prices = admissible_prices(problem, solution.prices)
    offers = problem.offers
    primary = offers.categories[:, 0]
    per_category = problem.max_per_category
    bonus = np.zeros(offers.n_offers)
    n_offers = inputs.n_offers

    def customer_terms(item: tuple[CandidateBlock, _Dropped]) -> tuple[np.ndarray, int]:
        block, drop = item
        reduced = kernels.reduced_values(block.value, block.cost, block.offer, prices.budget,
                                         prices.count, prices.global_budget, bonus)
        totals, virtual = virtual_totals(
            reduced, block.offer, block.cap, primary, per_category, drop.top_value,
            drop.top_category, drop.residual, (prices.budget, prices.count, prices.global_budget),
            model.redemption_worth_, offers.discount, model.clv_factor_[block.customers])
        del reduced
        positions = np.flatnonzero(virtual)
        for lo in range(0, positions.size, _RESCORE_ROWS):
            at = positions[lo:lo + _RESCORE_ROWS]
            customers = block.customers[at]
            offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64),
                                    (customers.size, n_offers))
            # rules.reasons, not rules.allowed: the audit already counted these pairs
            eligible = ~np.any(list(rules.reasons(customers, offer).values()), axis=0)
            totals[at] = best_totals(model.kernel_arrays(customers), customers, eligible,
                                     primary, per_category, block.cap[at], prices.budget,
                                     prices.count, prices.global_budget, offers.discount)
        return totals, int(positions.size)
    terms = list(_in_order(customer_terms, list(zip(problem.blocks, dropped)),
                           _threads(scenario)))
    customers = float(np.concatenate([t for t, _ in terms]).sum()) if terms else 0.0
    bound = customers + capacity_terms(problem, prices)
    gap = max(0.0, (bound - solution.objective) / bound) if bound > 0 else 0.0
    return {"candidates_per_customer": scenario.affinity.candidates_per_customer,
            "pairs": problem.n_pairs, "bound_all_candidates": bound,
            "gap_all_candidates": gap,
            # how much the dropped candidates could add, as far as the final prices can tell
            "bound_increase": max(0.0, bound - solution.bound),
            "customers_rescored": sum(n for _, n in terms)}


def _scores_truncation(inputs: Inputs, scenario: Scenario, rules: EligibilityRules,
                       caps: np.ndarray, problem: AssignmentProblem, solution: Solution,
                       selection_prices: Prices | None) -> dict[str, Any]:
    """What keeping only each customer's best ``solver.scores_per_customer`` listed pairs
    (:mod:`optimizer.solve.lagrangian.start`) may have cost: prices bound the plan over every listed pair the
    rules allow (weak duality, :func:`~optimizer.solve.lagrangian.method.dual_bounds`), here the least
    at the final prices, the selection's and points between; the pairs built again chunk by
    chunk."""
    every = _scores_blocks(inputs, scenario, rules, caps, problem.offers.discount, audit=False)
    pairs = [0]

    def counted(blocks: Iterator[CandidateBlock]) -> Iterator[CandidateBlock]:
        for block in blocks:
            pairs[0] += block.n_pairs
            yield block
    # any prices bound the plan over every pair: the final ones, the selection's (an LP of a
    # sample with every pair), and points between them, since the dual function is convex in
    # the prices (1 M customers, 12 kept: 644,196 at the midpoint, 645,408 and 645,670 at the
    # ends; each point costs one best response per chunk, the table is read once)
    tried = [solution.prices]
    if selection_prices is not None:
        tried += [solution.prices.towards(selection_prices, share)
                  for share in (0.25, 0.5, 0.75, 1.0)]
    bound = min(dual_bounds(problem, tried, counted(every)))
    gap = max(0.0, (bound - solution.objective) / bound) if bound > 0 else 0.0
    return {"candidates_per_customer": scenario.solver.scores_per_customer,
            "pairs": problem.n_pairs, "pairs_all_candidates": pairs[0],
            "bound_all_candidates": bound, "gap_all_candidates": gap,
            "bound_increase": max(0.0, bound - solution.bound)}


def warm_start_prices(run_dir: Path, inputs: Inputs) -> Prices:
    """The dual prices saved in the manifest of the run folder ``run_dir``, matched by offer_id
    (offers the earlier run did not have start at zero)."""
    manifest = Path(run_dir) / "manifest.json"
    try:
        saved = json.loads(manifest.read_text())["dual_prices"]
        by_id = {str(k): v for k, v in zip(saved["offer_id"], zip(saved["budget"], saved["count"]))}
        global_price = float(saved.get("global_budget", 0.0))
    except FileNotFoundError:
        raise ScenarioError(f"--warm-start {run_dir}: no manifest.json there; name a run folder "
                            "of offeropt run") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ScenarioError(f"--warm-start {run_dir}: cannot read the dual prices of its "
                            f"manifest.json ({type(exc).__name__}: {exc})") from None
    ids = inputs.offers.get_column("offer_id").to_list()
    budget = np.array([by_id.get(str(i), (0.0, 0.0))[0] for i in ids], dtype=float)
    count = np.array([by_id.get(str(i), (0.0, 0.0))[1] for i in ids], dtype=float)
    return Prices(budget, count, global_price, np.zeros(len(ids)))


def run_scenario(scenario: Scenario, progress: Progress | None = None, write: bool = True,
                 warm_start: Prices | None = None, append_history: bool = False,
                 replace_week: bool = False, warm_start_run: Path | None = None) -> RunResult:
    """Plan the scenario's week and (by default) write its run folder. See the module docstring.

    ``append_history``: after the run folder is written, append this week's assignments to the
    input folder's ``history`` table (see :mod:`optimizer.io.history`); refused before planning when
    the table already holds the planning week, unless ``replace_week`` replaces that week's rows.

    ``warm_start``: dual prices to start the solver from; ``warm_start_run``: a run folder whose
    manifest's prices to start from (``--warm-start``). The plan depends on the start when the
    solve stops short of its tolerance, so there is no implicit start: without either, the solver
    starts from zero prices, and what was used is recorded in the manifest's ``warm_start``.
    """
    if write:  # a folder the run may not replace, or cannot write, is refused before planning
        check_output(scenario.output, scenario.data)
    if append_history:
        if not write:
            raise ValueError("append_history needs write=True: history records the written plan")
        check_history_week(scenario.data, scenario.week, replace_week)
    stages = _Stages(progress)
    try:
        return _run(scenario, stages, write, warm_start, append_history, replace_week,
                    warm_start_run)
    finally:
        stages.close()


def _run(scenario: Scenario, stages: _Stages, write: bool, warm_start: Prices | None,
         append_history: bool, replace_week: bool, warm_start_run: Path | None) -> RunResult:
    stages.start("load")
    inputs = load_inputs(scenario.data, stream_scores=stream_scores(scenario))
    # what the run reads of history, so check can accept rows appended after it (validate.py)
    history_read = history_digest(inputs.history, scenario.week)
    for warning in inputs.warnings:
        log.warning("%s", warning)
    scenario, fitted = fit_scores_per_customer(inputs, scenario)
    if fitted:
        log.warning("%s (solver.scores_per_customer)", fitted)
    memory = check_memory(inputs, scenario)  # stops here, before the big arrays, if it cannot fit
    stages.stop()
    rules_cfg = scenario.rules
    if rules_cfg.global_budget is not None and rules_cfg.global_budget < 0:
        raise InfeasibleError("global_budget is negative")

    stages.start("features")
    cats = offer_categories(inputs)
    offers = offer_data(inputs.offers, cats.table, cats.names, rules_cfg.budget_scale)
    clv_info: dict[str, Any] = {"model": "none (scores table)"}
    model = None
    clv = with_given_clv(inputs, np.full(inputs.n_customers, np.nan))  # NaN = unknown
    propensity_info: dict[str, Any] = {"model": "none (scores table)"}
    if not inputs.has_scores:
        scoring = fit_scoring(inputs, scenario, cats, scenario.week)
        model, clv = scoring.model, scoring.clv
        clv_info, propensity_info = scoring.lifetime_value, scoring.propensity
    stages.stop()

    stages.start("eligibility")
    rules = compile_rules(inputs, rules_cfg, scenario.week, cats)
    caps, cap_audit = customer_caps(inputs, rules_cfg, scenario.week)
    # the rules hold what they need of the send history now (1.3 GB at ten million customers)
    inputs = replace(inputs, history=None, redemptions=None)
    dropped: list[_Dropped] = []
    keep = scenario.solver.scores_per_customer
    truncated = keep is not None and keep < inputs.n_offers
    global_budget = (rules_cfg.global_budget if rules_cfg.global_budget is not None
                     else float("inf"))
    selection: dict[str, Any] = {}
    if model is None:
        # read once unless the kept pairs are bounded again over every pair after the solve
        every = _scores_blocks(inputs, scenario, rules, caps, offers.discount,
                               consume=not truncated)
        if keep is not None and truncated:
            every = best_by_prices(every, keep, offers, rules_cfg.max_offers_per_category,
                                   global_budget, inputs.n_customers, scenario.solver.seed,
                                   selection)
        blocks = list(every)
        # no customer had more pairs than kept: the plain run, neither started from the
        # selection's prices nor bounded again
        truncated = truncated and bool(selection.get("dropped"))
        if inputs.scores is not None and not truncated:
            # the blocks now hold every pair: free the table (GBs at millions of customers)
            inputs = replace(inputs, scores=inputs.scores.clear())
    else:
        blocks, dropped = _affinity_blocks(model, inputs, scenario, rules, caps, offers,
                                           rules_cfg.max_offers_per_category)
    stages.stop()

    problem = AssignmentProblem(
        offers=offers, blocks=blocks, max_per_category=rules_cfg.max_offers_per_category,
        global_budget=global_budget, n_customers=inputs.n_customers)

    stages.start("solve")
    def on_iteration(entry: dict[str, float | None]) -> None:
        if stages.progress:
            stages.progress("polish" if "polish" in entry else "iteration", entry)
    started_from = "given prices" if warm_start is not None else None
    if warm_start_run is not None:
        warm_start, started_from = warm_start_prices(warm_start_run, inputs), str(warm_start_run)
    if warm_start is None and truncated:  # the prices that chose the kept pairs: a good start
        warm_start = selection.get("prices")
    # the solver zeroes prices on constraints this scenario lacks
    # (solve/lagrangian/method.admissible_prices)
    solution = solve(problem, scenario.solver, warm_start=warm_start,
                     progress=on_iteration)
    stages.stop()

    truncation: dict[str, Any] = {"candidates_per_customer": "all", "pairs": problem.n_pairs}
    if model is None and truncated:
        stages.start("bound_all_candidates")
        truncation = _scores_truncation(inputs, scenario, rules, caps, problem, solution,
                                        selection.get("prices"))
        truncation["selection"] = selection["description"]
        if inputs.scores is not None:
            inputs = replace(inputs, scores=inputs.scores.clear())
        stages.stop()
    if (model is not None and scenario.affinity.bound_all_candidates
            and scenario.affinity.candidates_per_customer < inputs.n_offers):
        stages.start("bound_all_candidates")
        truncation = _truncation(model, inputs, scenario, rules, caps, problem, solution,
                                 dropped)
        stages.stop()

    stages.start("write")
    # the controls' sends are withheld from the plan as solved, their budget left unspent
    # (optimizer/model/holdout.py); the manifest's objective and gap count the sends made
    held = withhold_controls(inputs, problem, solution, scenario.measurement, scenario.week)
    solution = held.solution
    assignments = assignments_frame(inputs, problem, solution)
    summary = offers_summary_frame(inputs, problem, assignments, solution)
    manifest = _manifest(scenario, inputs, problem, solution, summary, rules.audit, cap_audit,
                         clv_info, stages.seconds)
    manifest["customers_reached"] = assignments.get_column("customer_id").n_unique()
    manifest["history_before_week_sha256"] = history_read
    manifest["propensity"] = propensity_info
    manifest["candidates"] = truncation
    if inputs.has_scores:
        truncation["scores_read"] = "in batches" if inputs.scores_batches is not None else "whole"
    if fitted:  # recorded even when the rules left no customer more pairs than were kept
        truncation["kept_to_fit_memory"] = fitted
    manifest["memory"] = memory.describe()
    manifest["warm_start"] = started_from
    manifest["measurement"] = held.info
    customers = customers_frame(inputs, clv) if not np.isnan(clv).all() else None
    result = RunResult(scenario, assignments, summary, manifest,
                       scenario.output if write else None, solution, customers,
                       controls=held.controls)
    if write:
        writers = {**table_writers("assignments", assignments),
                   **table_writers("offers_summary", summary),
                   **table_writers("controls", held.controls)}
        if customers is not None:
            writers["customers.parquet"] = lambda path: customers.write_parquet(path)
        # the report's charts (matplotlib, about 1.5 s) render while the tables are written
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
                                           replace_week)
                    history.callback(staged.discard)
                write_run_folder(scenario.output, writers,
                                 then=staged.commit if staged is not None else None)
            if staged is not None:
                result.history_appended = staged.rows
    stages.stop()
    manifest["seconds"] = dict(stages.seconds)
    return result


# the packages whose arithmetic decides a plan: a different version may give a different plan
_DECIDING_PACKAGES = ("numpy", "numba", "ortools", "polars", "pyarrow", "scipy")


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
                   "polish": getattr(solution, "polish", None)},
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
