"""``build_problem``: from the scored inputs and the scenario to the assignment problem.

It owns what the solver is given: the rules compiled for the week, each customer's cap, the
candidate blocks (customers in chunks, scored by the affinity model's compiled kernel or read
from the ``scores`` table), which pairs are kept when only each customer's best few may enter
the solve, and the prices that chose them (the solver's natural start). The run, ``explain``
and the bound over all candidates build the same blocks through it, so what ``explain`` shows
is what ``run`` solved.

Choosing the kept pairs of a ``scores`` table needs the prices of a sample LP, which the solve
stage computes: the caller passes that step in as ``select`` (the pipeline passes
:func:`optimizer.solve.lagrangian.start.best_by_prices`), so the model stage names no solver.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import polars as pl

from optimizer.core.config import Rules, Scenario
from optimizer.core.parallel import chunks, in_order, thread_count
from optimizer.io.memory import (
    pairs_read_again,
    shards_report_layout,
    worker_scores,
    workers_hold_pairs,
)
from optimizer.io.scores_stream import (
    ScoresChunk,
    checked_customer_ids,
    checked_rows,
    require_unique_pairs,
    scores_chunks,
    scores_of_customers,
)
from optimizer.io.validate import Inputs
from optimizer.model import stability
from optimizer.model.affinity_blocks import Dropped, affinity_blocks, with_pins
from optimizer.model.channels import channel_caps, channel_data
from optimizer.model.eligibility import EligibilityRules, compile_rules, customer_caps
from optimizer.model.flights import FlightPlan, has_flights, paced_budget, plan_flights
from optimizer.model.funders import funder_data, with_group_flights
from optimizer.model.groups import group_data
from optimizer.model.layout import held_blocks, p_redeem_let_go, pending
from optimizer.model.pins import PinPlan, in_flight, plan_pins
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    OfferData,
    Prices,
    block_from_pairs,
    offer_data,
)
from optimizer.scoring.affinity import AffinityModel
from optimizer.scoring.features import OfferCategories


class KeptSelection(Protocol):
    """Narrows every allowed listed pair to each customer's ``keep`` best, filling ``found``
    with the prices that chose them (``"prices"``), their description and the pairs dropped
    (the signature of :func:`optimizer.solve.lagrangian.start.best_by_prices`)."""

    def __call__(self, blocks: Iterable[CandidateBlock], keep: int, offers: OfferData,
                 max_per_category: int | None, global_budget: float, n_customers: int,
                 seed: int, found: dict[str, object] | None = None
                 ) -> Iterator[CandidateBlock]: ...


@dataclass
class Built:
    """The problem and what built it.

    ``inputs``: the inputs with what the rules absorbed freed (history, redemptions, and the
    ``scores`` table once the blocks hold every pair); ``dropped``: per block, what the affinity
    path's customers left out; ``selection``: how the kept pairs of a ``scores`` table were
    chosen (``best_by_prices``' ``found``); ``truncated``: whether any customer lost a listed
    pair to that choice (the run is then bounded again over every pair); ``flights``: the
    flights' pacing of this week (:mod:`optimizer.model.flights`), when offers carry flights;
    ``previous``: last week's lists (:mod:`optimizer.model.stability`), when a change penalty or
    a previous run asks for them; ``pins``: the week's pinned pairs (:mod:`optimizer.model.pins`)
    with ``rules.pin``; ``source``: what lets Dask workers build their own shards'
    blocks from the ``scores`` table (:func:`worker_inputs`), when ``solver.backend = "dask"``
    and they can (else ``source_note`` says why not); ``made``: on the affinity path with
    ``affinity.pricing_rounds``, the blocks as built, before the change penalty's bonus and
    the pins touched the problem's (shallow copies of them), into which :func:`with_candidates`
    merges the pairs a round prices in; ``candidate_keys``: the pairs
    :func:`with_candidates` added; ``p_redeem_read_again``: a local run's blocks hold no
    ``p_redeem`` (:func:`~optimizer.model.layout.p_redeem_let_go`), its plan's chosen pairs
    read theirs again from ``source`` (:func:`~optimizer.model.chosen.read_plan_again`)."""

    problem: AssignmentProblem
    inputs: Inputs
    rules: EligibilityRules
    caps: np.ndarray
    cap_audit: dict[str, int]
    dropped: list[Dropped] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    flights: FlightPlan | None = None
    previous: stability.Previous | None = None
    pins: PinPlan | None = None
    source: WorkerInputs | None = None
    source_note: str = ""
    made: list[CandidateBlock] = field(default_factory=list)
    candidate_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    p_redeem_read_again: bool = False

    @property
    def start_prices(self) -> Prices | None:
        """The prices that chose the kept pairs (a good start for the solver), if any."""
        prices = self.selection.get("prices") if self.truncated else None
        return prices if isinstance(prices, Prices) else None


def build_problem(inputs: Inputs, scenario: Scenario, cats: OfferCategories,
                  model: AffinityModel | None, select: KeptSelection | None = None,
                  rows: tuple[int, int] | None = None, previous_run: Path | None = None,
                  hold_pairs_up_to: int | None = None) -> Built:
    """The assignment problem of the scenario's week (see the module docstring).

    ``model``: the fitted affinity model, or None when the inputs carry a ``scores`` table;
    ``select``: how to keep each customer's best ``solver.scores_per_customer`` listed pairs
    (required when that knob truncates); ``rows``: build only customers ``start .. stop - 1``
    (``explain``), whose blocks are the ones the whole run builds for them; ``previous_run``: a
    run folder holding last week's lists (default: history's rows of the week before, read
    only when ``rules.change_penalty`` or ``rules.pin`` is set); ``hold_pairs_up_to``: where the
    Dask workers can hold every pair (:func:`~optimizer.io.memory.workers_hold_pairs`), the
    driver keeps the blocks' layout only once they hold more pairs than this, and a local run
    the blocks without their ``p_redeem`` (``None``: it keeps every block whole)."""
    rules_cfg = scenario.rules
    offers = offer_data(inputs.offers, cats.table, cats.names, rules_cfg.budget_scale)
    flights = None
    if has_flights(inputs.offers, inputs.flights):  # a flight's share of this week becomes the
        # offer's budget (its own flight) or a budget shared by its offers (a group flight)
        flights = plan_flights(inputs.offers, inputs.history, inputs.spend, inputs.forecast,
                               scenario.week, rules_cfg.pacing, inputs.flights)
        offers = replace(offers, budget=paced_budget(offers.budget, flights))
    rules, caps, cap_audit = compile_eligibility(inputs, rules_cfg, scenario.week, cats)
    channels = channel_data(inputs.channels, inputs.customer_channels, inputs.n_customers,
                            rules_cfg.contact_budget)
    caps = channel_caps(channels, caps, cap_audit)  # no consented channel: nothing this week
    previous = None
    if previous_run is not None:
        previous = stability.from_run(previous_run, inputs.customers, inputs.offers)
    elif rules_cfg.change_penalty > 0 or rules_cfg.pin:
        previous = stability.from_history(inputs.history, scenario.week, inputs.n_offers)
    # the rules hold what they need of the send history now (1.3 GB at ten million customers)
    inputs = replace(inputs, history=None, redemptions=None)
    global_budget = (rules_cfg.global_budget if rules_cfg.global_budget is not None
                     else float("inf"))
    built = Built(AssignmentProblem(offers=offers, blocks=[],
                                    max_per_category=rules_cfg.max_offers_per_category,
                                    global_budget=global_budget, n_customers=inputs.n_customers,
                                    groups=group_data(inputs.offer_groups, offers.n_offers),
                                    funders=with_group_flights(
                                        funder_data(inputs.funders, inputs.offers), flights,
                                        offers.n_offers),
                                    channels=channels),
                  inputs, rules, caps, cap_audit, flights=flights, previous=previous)
    _add_blocks(built, inputs, scenario, model, select, rows, hold_pairs_up_to)
    _finish(built, scenario, model, rows)
    return built


def with_candidates(built: Built, scenario: Scenario, model: AffinityModel,
                    extra: np.ndarray) -> Built:
    """``built`` (the affinity path's) again with the pairs ``extra`` (sorted keys
    ``c * n_offers + o``, holding every pair ``built`` added) among the candidates beside each
    customer's best few, kept as the pins are when the rules allow them and their value is
    positive; the change penalty's bonus and the pins are made again as :func:`build_problem`
    makes them.

    A chunk's block is its best few per customer, which the pairs do not change, with its pinned
    and added pairs merged in (:func:`with_pins`, a kernel scoring each pair alone): so only
    the pairs ``built`` lacks are scored, each into its chunk's block as built (``built.made``),
    and the blocks, dropped values and bytes are the ones scoring every chunk again makes
    (without ``built.made``, every chunk is). The rules' checks count into an audit of their
    own (the run's already counted every pair)."""
    inputs, rules_cfg = built.inputs, scenario.rules
    offers, caps = built.problem.offers, built.caps
    # the change penalty's bonus is taken off the kept problem's blocks after the solve: the
    # new problem keeps its own record of the values it replaced
    previous = None if built.previous is None else replace(built.previous, _originals=[])
    again = replace(built, problem=replace(built.problem, blocks=[]), pins=None, source=None,
                    source_note="", candidate_keys=extra, previous=previous)
    bounds = _bounds(inputs, scenario, None)
    if len(built.made) != len(bounds):  # no blocks as built: every chunk scored again
        pinned = _pinned_keys(built, inputs, scenario)
        keys = extra if pinned is None else np.union1d(pinned, extra)
        own = replace(built.rules, audit=dict.fromkeys(built.rules.audit, 0))
        again.made, again.dropped = affinity_blocks(
            model, inputs, scenario, own, caps, offers, rules_cfg.max_offers_per_category,
            bounds, keys)
    else:
        fresh = np.setdiff1d(extra, built.candidate_keys)
        n = max(inputs.n_offers, 1)
        edges = np.searchsorted(fresh, np.array(bounds, dtype=np.int64).reshape(-1, 2) * n)
        primary = offers.categories[:, 0]

        def merged(at: int) -> CandidateBlock:
            block, (start, stop) = built.made[at], bounds[at]
            keys = fresh[edges[at, 0]:edges[at, 1]]
            if not keys.size:
                return block
            row, slot = np.nonzero(block.offer >= 0)
            kept = SimpleNamespace(row=row, offer=block.offer[row, slot],
                                   p_redeem=block.p_redeem[row, slot],
                                   value=block.value[row, slot])
            customers = block.customers
            # the rules over the rows the new pairs fall in only (the others' are not read)
            rows = np.unique(keys // n - start)
            allowed = np.zeros((customers.size, inputs.n_offers), dtype=bool)
            allowed[rows] = replace(built.rules, audit=dict.fromkeys(built.rules.audit, 0)
                                    ).allowed(customers[rows], np.broadcast_to(
                                        np.arange(inputs.n_offers, dtype=np.int64),
                                        (rows.size, inputs.n_offers)))
            pairs = with_pins(model, kept, customers, allowed, keys, inputs.n_offers, primary)
            return block_from_pairs(customers, *pairs, offers.discount, caps[start:stop])
        model.kernel_arrays(np.zeros(0, dtype=np.int64))  # shared arrays built before threads
        again.made = list(in_order(merged, list(range(len(bounds))),
                                   thread_count(scenario.solver.threads)))
    again.problem.blocks = [replace(block) for block in again.made]
    _finish(again, scenario, model, None, again=True)
    return again


def _finish(built: Built, scenario: Scenario, model: AffinityModel | None,
            rows: tuple[int, int] | None, again: bool = False) -> None:
    """What follows the blocks: the change penalty's bonus, the pins and the workers' inputs
    (``again``: the blocks are built a second time, the pins' warnings already said)."""
    rules_cfg, previous, inputs = scenario.rules, built.previous, built.inputs
    if previous is not None and rules_cfg.change_penalty > 0:
        stability.add_bonus(built.problem, previous, rules_cfg.change_penalty)
    if previous is not None and rules_cfg.pin and rows is None:
        flight = in_flight(inputs.offers, scenario.week, inputs.flights)
        built.pins = plan_pins(built.problem, previous, flight, built.rules, warn=not again)
    if (scenario.solver.backend == "dask" or built.p_redeem_read_again) and rows is None:
        built.source, built.source_note = worker_inputs(built, scenario, model)


@dataclass(frozen=True)
class ScoresSource:
    """What every Dask worker is sent once to build its shards' candidate blocks itself: where
    the ``scores`` table is (a Parquet file or dataset folder the workers can read, or an fsspec
    URL of one), the offers' IDs and index, the scenario, the compiled rules, the offers'
    discounts and whether the driver, reading the table, found stored text customer IDs with
    surrounding spaces (``trim_ids``: the workers then trim them too, and read every row group,
    whose statistics bound the untrimmed text; else they skip row groups as the statistics
    allow)."""

    path: str
    offers: pl.DataFrame
    scenario: Scenario
    rules: EligibilityRules
    discount: np.ndarray
    trim_ids: bool = False


@dataclass(frozen=True)
class WorkerInputs:
    """The driver's side of worker-built shards: the shared :class:`ScoresSource` and the
    per-customer tables of which each shard is sent its stretch (:meth:`rows`).

    ``scores_pass``: what the driver read of the table's rows for the build: ``"blocks"``
    (every row, through the build), ``"customer_ids"`` (a streamed table's ``customer_id``
    column only: :func:`~optimizer.io.scores_stream.checked_customer_ids`) or ``"none"`` (a
    table read whole, checked by the load); ``audit``: where the driver read no row, the run's
    audit, into which the shards' own audits are added when they report their layout;
    ``recheck``: for a streamed table so left to the shards, every row checked as the local run
    checks it (:func:`~optimizer.io.scores_stream.checked_rows`), run when a worker finds bad
    rows, so the run stops with the local run's error; ``table_rows``: the table's rows, which
    the shards' reports must add up to (a worker reading another table stops the run)."""

    source: ScoresSource
    customers: pl.DataFrame
    caps: np.ndarray
    scores_pass: str = "blocks"
    audit: dict[str, int] | None = None
    recheck: Callable[[], None] | None = None
    table_rows: int = 0

    def shared(self) -> ScoresSource:
        """What every worker is sent once: the source without the rules' pair keys, which are
        O(customers) (the send history's cooldowns above all): each shard is sent its own."""
        rules = self.source.rules
        return replace(self.source, rules=rules.with_pair_keys(
            (rules.excluded_keys[:0], rules.opted_in_keys[:0], rules.cooldown_keys[:0])))

    def rows(self, lo: int, hi: int
             ) -> tuple[pl.DataFrame, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Customers ``[lo, hi)``: their IDs with ``c``, their caps and the rules' pair keys."""
        return (self.customers.slice(lo, hi - lo), self.caps[lo:hi],
                self.source.rules.pair_keys(lo, hi))


def worker_inputs(built: Built, scenario: Scenario, model: AffinityModel | None
                  ) -> tuple[WorkerInputs | None, str]:
    """What lets workers build their own shards' blocks (the same :func:`scores_blocks` over
    their customers' rows), or None and why not: only the ``scores`` path as a Parquet file or
    dataset, every listed pair kept (no ``scores_per_customer`` choice, which needs every
    customer's pairs), no change penalty (a bonus added to the blocks after they are built) and no
    pins (taken out of the built blocks)."""
    if model is not None:
        return None, "the affinity path scores candidates on the driver"
    path = worker_scores(scenario)
    if path is None:
        return None, "the scores table is a CSV file (workers read Parquet)"
    if built.truncated:
        return None, "solver.scores_per_customer chose the kept pairs over every customer"
    if built.previous is not None and scenario.rules.change_penalty > 0:
        return None, "rules.change_penalty adds a bonus to the built blocks"
    if built.pins is not None:
        return None, "rules.pin takes the pinned pairs out of the built blocks"
    inputs, offers, layout = built.inputs, built.problem.offers, built.problem.layout
    source = ScoresSource(str(path), inputs.offers.select("offer_id", "o"), scenario,
                          replace(built.rules, audit={name: 0 for name in built.rules.audit}),
                          offers.discount, trim_ids=inputs.scores_ids_trimmed)
    if layout is None or layout.complete:
        return WorkerInputs(source, inputs.customers.select("customer_id", "c"), built.caps), ""
    streamed = inputs.scores_batches is not None
    recheck = partial(checked_rows, inputs, layout.bounds) if streamed else None
    return WorkerInputs(source, inputs.customers.select("customer_id", "c"), built.caps,
                        "customer_ids" if streamed else "none", built.rules.audit, recheck,
                        inputs.row_counts.get("scores", 0)), ""


def source_blocks(source: ScoresSource, customers: pl.DataFrame, caps: np.ndarray,
                  bounds: list[tuple[int, int]]
                  ) -> tuple[list[CandidateBlock], dict[str, int], int]:
    """The candidate blocks of ``bounds`` (consecutive chunks of the stretch of customers
    ``customers``, whose caps are ``caps``) built from their own rows of the ``scores`` table:
    the blocks the driver builds for the same chunks (:func:`scores_blocks`), read on a worker;
    the rules' audit of their pairs and the rows read. The rows are checked as a batch is, and a pair listed
    twice is refused as the streamed table's chunks refuse it (the worker holds every row of
    its customers)."""
    frame = scores_of_customers(source.path, customers, source.offers, source.trim_ids)
    # rows already in (customer, offer) order (a table written sorted) are not sorted again:
    # a copy of the shard's rows less at the build's peak
    key = pl.col("c").cast(pl.Int64) * source.offers.height + pl.col("o")
    in_order = bool(frame.select((key.diff().fill_null(1) > 0).all()).item())
    if not in_order:  # sorted here, where a pair listed twice shows
        frame = frame.sort("c", "o")
        if frame.select((key.diff() == 0).any()).item():
            require_unique_pairs(customers, source.offers,
                                 {name: frame.get_column(name).to_numpy()
                                  for name in frame.columns},
                                 frame.select(key).to_series().to_numpy())
        in_order = True
    empty = pl.DataFrame()
    inputs = Inputs(customers=customers, products=empty, offers=source.offers,
                    transactions=empty, offer_products=None, restrictions=None, history=None,
                    redemptions=None, scores=frame, scores_sorted=in_order)
    first, read = (bounds[0][0] if bounds else 0), frame.height
    rules = replace(source.rules, audit=dict.fromkeys(source.rules.audit, 0))
    return list(scores_blocks(inputs, source.scenario, rules, caps, source.discount,
                              bounds=bounds, consume=True, caps_from=first)), rules.audit, read


def _add_blocks(built: Built, inputs: Inputs, scenario: Scenario, model: AffinityModel | None,
                select: KeptSelection | None, rows: tuple[int, int] | None,
                hold_up_to: int | None = None) -> None:
    """The candidate blocks of ``built.problem``: scored by the affinity model, or read from the
    ``scores`` table and narrowed to each customer's best few by ``select``."""
    rules_cfg, rules, caps = scenario.rules, built.rules, built.caps
    offers, global_budget = built.problem.offers, built.problem.global_budget
    bounds = _bounds(inputs, scenario, rows)
    if model is not None:
        built.problem.blocks, built.dropped = affinity_blocks(
            model, inputs, scenario, rules, caps, offers, rules_cfg.max_offers_per_category,
            bounds, _pinned_keys(built, inputs, scenario))
        if scenario.affinity.pricing_rounds and rows is None:  # kept for the rounds' rebuilds
            built.made = built.problem.blocks
            built.problem.blocks = [replace(block) for block in built.made]
        return
    keep = scenario.solver.scores_per_customer
    narrowed = keep is not None and keep < inputs.n_offers and rows is None
    if (hold_up_to is not None and rows is None and workers_hold_pairs(inputs, scenario)
            and shards_report_layout(inputs, hold_up_to)):
        # the shards check, audit and build every row and report the layout: the driver reads
        # a streamed table's customer IDs only, the checks the workers cannot make
        if inputs.scores_batches is not None:
            checked_customer_ids(inputs, bounds)
        built.problem.layout = pending(bounds, caps)
        if inputs.scores is not None:
            built.inputs = replace(inputs, scores=inputs.scores.clear())
        return
    # the table is read once (and let go chunk by chunk) unless the kept pairs are bounded again
    # over every pair after the solve
    every = scores_blocks(inputs, scenario, rules, caps, offers.discount, bounds=bounds,
                          consume=rows is None and not narrowed)
    if narrowed and keep is not None:
        if select is None:
            raise ValueError("solver.scores_per_customer keeps fewer pairs than listed: "
                             "build_problem needs select")
        every = select(every, keep, offers, rules_cfg.max_offers_per_category, global_budget,
                       inputs.n_customers, scenario.solver.seed, built.selection)
    problem = built.problem
    if hold_up_to is not None and rows is None and workers_hold_pairs(inputs, scenario):
        problem.blocks, problem.layout = held_blocks(every, hold_up_to)
    elif (hold_up_to is not None and rows is None
          and pairs_read_again(inputs, scenario) == "driver"):
        # a local run: past the polish's reach its plan's p_redeem is read again
        problem.blocks, built.p_redeem_read_again = p_redeem_let_go(every, hold_up_to)
    else:
        problem.blocks = list(every)
    # no customer had more pairs than kept: the plain run, neither started from the
    # selection's prices nor bounded again
    built.truncated = bool(built.selection.get("dropped"))
    if inputs.scores is not None and not built.truncated:
        # the blocks now hold every pair: free the table (GBs at millions of customers)
        built.inputs = replace(inputs, scores=inputs.scores.clear())


def _pinned_keys(built: Built, inputs: Inputs, scenario: Scenario) -> np.ndarray | None:
    """With ``rules.pin``: the sorted keys ``c * n_offers + o`` of last week's pairs whose offer
    runs this week, which the affinity path keeps among the candidates whatever their rank."""
    if not scenario.rules.pin or built.previous is None:
        return None
    keys = built.previous.keys
    flight = in_flight(inputs.offers, scenario.week, inputs.flights)
    return keys[flight[keys % max(inputs.n_offers, 1)]] if keys.size else keys


def compile_eligibility(inputs: Inputs, rules: Rules, week: int, cats: OfferCategories
                        ) -> tuple[EligibilityRules, np.ndarray, dict[str, int]]:
    """The eligibility step: the rules compiled for ``week``, each customer's cap and the caps'
    audit (``backtest`` takes them at its cutoff week)."""
    compiled = compile_rules(inputs, rules, week, cats)
    caps, cap_audit = customer_caps(inputs, rules, week)
    return compiled, caps, cap_audit


def _bounds(inputs: Inputs, scenario: Scenario, rows: tuple[int, int] | None
            ) -> list[tuple[int, int]]:
    every = chunks(inputs.n_customers, scenario.solver.chunk_size)
    if rows is None:
        return every
    return [(max(a, rows[0]), min(b, rows[1])) for a, b in every
            if max(a, rows[0]) < min(b, rows[1])]


def scores_blocks(inputs: Inputs, scenario: Scenario, rules: EligibilityRules, caps: np.ndarray,
                  discount: np.ndarray, audit: bool = True,
                  bounds: list[tuple[int, int]] | None = None, consume: bool = False,
                  caps_from: int = 0) -> Iterator[CandidateBlock]:
    """Candidate blocks from the ``scores`` table, one per chunk of customers: the listed pairs
    that the rules allow, of positive value.

    Chunks are built on ``solver.threads`` threads, at most that many at a time, while the next
    chunk's rows are read; each block depends on its chunk's rows only and audits are added in
    chunk order, so the blocks and the audit are the same for any thread count. ``audit=False``
    leaves the audit as it is (a second pass over the same pairs); ``consume`` lets the table go
    chunk by chunk (:func:`~optimizer.io.scores_stream.scores_chunks`), when it is read once;
    ``caps_from``: the customer whose cap is ``caps[0]`` (a worker holds its shard's caps)."""
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
                                 discount, caps[part.start - caps_from:part.stop - caps_from])
        return block, own.audit

    if bounds is None:
        bounds = chunks(inputs.n_customers, scenario.solver.chunk_size)
    for block, chunk_audit in in_order(chunk, scores_chunks(inputs, bounds, consume),
                                       thread_count(scenario.solver.threads)):
        if audit:
            for name, count in chunk_audit.items():
                rules.audit[name] += count
        yield block


__all__ = ["Built", "KeptSelection", "ScoresSource", "WorkerInputs", "build_problem",
           "compile_eligibility", "scores_blocks", "source_blocks", "with_candidates",
           "worker_inputs"]
