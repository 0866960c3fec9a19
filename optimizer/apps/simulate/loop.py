"""The closed loop of one seed: the world writes its tables, each strategy plans, the world
responds, and the next week begins.

Per seed: ``demo-data`` writes the starting folder (26 weeks of purchases, six of campaigns) at
the scenario's week; its offers are made to run the whole quarter (no eligibility window, no
``min_customers`` or ``max_customers``) with every offer under a budget (:func:`quarter_offers`), so budgets bind and
strategies spend alike. Each strategy gets its own copy of the folder (its own world from then
on). Week by week: the week's common random numbers are drawn, the world without offers steps,
and each strategy plans the week from its folder (:func:`.strategies.plan_week`, the history
appended by the run), the plan's run folder is handed to ``verify`` (the CLI's ``--check``), the
strategy's world responds to the sends made (controls withheld) and its week's purchase lines
and redemptions are appended to its folder's ``transactions`` and ``redemptions``.

A week's plans depend only on each strategy's own folder, so with ``workers`` > 1 they are made
side by side in that many worker processes (a pool per seed) while the world's responses stay in
this process, in strategy order: the result is the same for any number of workers.
"""
from __future__ import annotations

import datetime as _dt
import logging
import multiprocessing
import shutil
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from optimizer.apps import synthetic as syn
from optimizer.apps.measure import program_arm
from optimizer.apps.pipeline import RunResult
from optimizer.apps.simulate import world as W
from optimizer.apps.simulate.strategies import plan_week
from optimizer.core.config import Scenario

SERIES = ("incremental_sales", "incremental_margin", "redemptions", "spend", "planned_spend",
          "sends", "customers_retained", "customer_equity", "incremental_customer_equity",
          "contact_fatigue", "treated_customers", "true_incremental_sales_per_treated")
Verify = Callable[[Scenario, Path], None]
_DAY0 = (syn.WEEK1_START - _dt.date(1970, 1, 1)).days


@dataclass
class SeedResult:
    """Per strategy and series, one value per week; plus the world without offers."""

    seed: int
    weeks: list[int]
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def quarter_offers(data: Path, budgets: np.ndarray) -> None:
    """Make the demo offers run the whole simulated quarter: no start or end week, no
    ``min_customers`` target or ``max_customers`` cap (only budgets limit an offer, so every
    strategy can spend them), and a budget on every offer (``budgets``: the generator's own draw,
    which it leaves empty for about 15% of the offers)."""
    path = data / "offers.parquet"
    offers = pl.read_parquet(path).with_columns(
        budget=pl.Series(np.asarray(budgets, float)), start_week=pl.lit(None, pl.Int64),
        end_week=pl.lit(None, pl.Int64), min_customers=pl.lit(None, pl.Int64),
        max_customers=pl.lit(None, pl.Int64))
    tmp = path.with_name(".offers.parquet.tmp")
    offers.write_parquet(tmp)
    tmp.replace(path)


def _append(path: Path, rows: pl.DataFrame) -> None:
    """Append ``rows`` to a Parquet table, written under a temporary name and renamed."""
    frame = pl.concat([pl.read_parquet(path), rows], how="vertical_relaxed")
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp, compression="zstd")
    tmp.replace(path)


def _write_week(data: Path, truth: W.Truth, week: int, out: W.WeekOutcome) -> None:
    lines = out.lines
    date = (_DAY0 + (week - 1) * 7 + lines.get_column("day")).cast(pl.Int32).cast(pl.Date)
    _append(data / "transactions.parquet", pl.DataFrame({
        "customer_id": lines.get_column("c") + 1,
        "product_id": truth.prod_id[lines.get_column("p").to_numpy()],
        "week": np.full(lines.height, week, np.int64),
        "sales_value": lines.get_column("sales_value"), "date": date,
        "quantity": np.ones(lines.height), "discount": lines.get_column("discount")}))
    red = out.redemptions
    _append(data / "redemptions.parquet", pl.DataFrame({
        "customer_id": red.get_column("c") + 1, "offer_id": red.get_column("o") + 1001,
        "week": np.full(red.height, week, np.int64)}))


@dataclass(frozen=True)
class Plan:
    """A strategy's plan of a week as the world reads it: the sends' customer and offer indexes
    (the demo's ids: 1.., and 1001..), the treated customers' indexes and the expected cost."""

    c: np.ndarray
    o: np.ndarray
    treated: np.ndarray
    planned_spend: float


def treated_customers(run: RunResult) -> np.ndarray:
    """Customer indexes of the plan's treated arm, counted as ``offeropt measure`` counts it
    (:func:`optimizer.apps.measure.program_arm`, intention to treat): every customer the plan
    reached outside the universal control, sent an offer or every planned send withheld by the
    per-offer control."""
    controls = run.controls
    if controls is None:  # a plan without control groups: its treated are its sends
        controls = pl.DataFrame(schema={"customer_id": run.assignments.schema["customer_id"],
                                        "reason": pl.Utf8})
    arm = program_arm(run.assignments, controls)
    return arm.get_column("customer_id").cast(pl.Int64).to_numpy() - 1


def plan_sends(strategy: str, planned: Scenario, seed: int, verify: Verify | None) -> Plan:
    """Plan one strategy's week (its run folder written, history appended, verified when asked)
    and return what the world reads of it (:class:`Plan`); a function of the strategy's folder
    alone, so a worker process can make it."""
    run = plan_week(strategy, planned, seed)
    if verify is not None:
        verify(planned, planned.output)
    sends = run.assignments
    return Plan(sends.get_column("customer_id").cast(pl.Int64).to_numpy() - 1,
                sends.get_column("offer_id").cast(pl.Int64).to_numpy() - 1001,
                treated_customers(run), float(sends.get_column("expected_cost").sum()))


def _log_like_parent(level: int, fmt: str | None) -> None:
    """A worker's logging as its parent's (a spawned process starts unconfigured)."""
    if fmt is None:
        logging.basicConfig(level=level)
    else:
        logging.basicConfig(level=level, format=fmt)


def _pool(workers: int, jobs: int) -> ProcessPoolExecutor | nullcontext:
    """A pool of worker processes (spawned: the parent's polars and numba threads must not be
    forked) when more than one worker and one job, else nothing."""
    if workers <= 1 or jobs <= 1:
        return nullcontext()
    root = logging.getLogger()
    fmt = next((h.formatter._fmt for h in root.handlers if h.formatter is not None), None)
    return ProcessPoolExecutor(min(workers, jobs), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_log_like_parent, initargs=(root.level, fmt))


def _plan_all(pool: Executor | None, plans: dict[str, Scenario], seed: int,
              verify: Verify | None) -> dict[str, Plan]:
    """Every strategy's plan of the week: in the pool side by side, else one after another."""
    if pool is None:
        return {s: plan_sends(s, planned, seed, verify) for s, planned in plans.items()}
    futures = {s: pool.submit(plan_sends, s, planned, seed, verify)
               for s, planned in plans.items()}
    return {s: f.result() for s, f in futures.items()}


def _by_customer(out: W.WeekOutcome, n: int) -> np.ndarray:
    return np.bincount(out.lines.get_column("c").to_numpy(), minlength=n,
                       weights=out.lines.get_column("sales_value").to_numpy())


def _record(rows: dict[str, list[float]], out: W.WeekOutcome, base: W.WeekOutcome,
            plan: Plan | None) -> None:
    """One week's figures (``plan``: none for the world without offers); the true incremental
    sales per treated customer (the plan's treated arm, :func:`treated_customers`) is what
    ``offeropt measure`` estimates from the controls."""
    n = out.n_customers
    treated = np.zeros(n, bool)
    sends, planned = (plan.c.size, plan.planned_spend) if plan is not None else (0, 0.0)
    if plan is not None:
        treated[plan.treated] = True
    gain = _by_customer(out, n) - _by_customer(base, n)
    values = {
        "treated_customers": float(treated.sum()),
        "true_incremental_sales_per_treated": float(gain[treated].mean()) if treated.any() else 0.0,
        "incremental_sales": out.sales - base.sales,
        "incremental_margin": W.MARGIN_RATE * (out.sales - base.sales) - out.cost,
        "redemptions": float(out.redemptions_count), "spend": out.cost, "planned_spend": planned,
        "sends": float(sends), "customers_retained": float(out.retained),
        "customer_equity": out.equity, "incremental_customer_equity": out.equity - base.equity,
        "contact_fatigue": out.fatigue}
    for key, value in values.items():
        rows.setdefault(key, []).append(float(value))


def run_seed(scenario: Scenario, seed: int, customers: int, offers: int, weeks: int,
             strategies: tuple[str, ...], work: Path, verify: Verify | None = None,
             progress: Callable[[str], None] | None = None, workers: int = 1) -> SeedResult:
    """Simulate ``weeks`` weeks of one seed's world under every strategy in ``work``, planning
    the strategies of a week in ``workers`` processes (module docstring)."""
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    template = work / "start"
    syn.write_demo_data(template, customers, offers, seed, planning_week=scenario.week)
    truth, generated = W.build_truth(seed, customers, offers, planning_week=scenario.week)
    quarter_offers(template, generated.budget)
    folders = {s: work / s for s in strategies}
    for s, folder in folders.items():
        shutil.copytree(template, folder / "data")
    shutil.rmtree(template)
    states = {s: W.State.start(customers) for s in strategies}
    base_state = W.State.start(customers)
    result = SeedResult(seed, [scenario.week + t for t in range(weeks)])
    result.seconds = {"world": time.perf_counter() - started, "plan": 0.0, "respond": 0.0}
    with _pool(workers, len(strategies)) as pool:
        for week in result.weeks:
            u, w, rng = W.week_draws(truth, week)
            v = W.send_draws(rng, truth, offers)
            none = np.zeros(0, np.int64)
            base = W.step(truth, base_state, week, none, none, (u, w, v))
            _record(result.baseline, base, base, None)
            t0 = time.perf_counter()
            plans = _plan_all(pool, {s: scenario.model_copy(update={
                "name": f"{scenario.name}-{s}-seed{seed}", "week": week,
                "data": folders[s] / "data", "output": folders[s] / "runs" / f"week{week}"})
                for s in strategies}, seed, verify)
            t1 = time.perf_counter()
            for s in strategies:  # the responses in strategy order, whoever planned first
                plan = plans[s]
                out = W.step(truth, states[s], week, plan.c, plan.o, (u, w, v))
                _write_week(folders[s] / "data", truth, week, out)
                _record(result.series.setdefault(s, {}), out, base, plan)
                say(f"seed {seed} week {week} {s}: {plan.c.size:,} sends, incremental margin "
                    f"{result.series[s]['incremental_margin'][-1]:,.0f}")
            result.seconds["plan"] += t1 - t0
            result.seconds["respond"] += time.perf_counter() - t1
    result.seconds["total"] = time.perf_counter() - started
    return result
