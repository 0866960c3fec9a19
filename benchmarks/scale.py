"""The scale method side by side with OR-Tools, and end-to-end runs at scale.

Usage:
  python benchmarks/scale.py solvers [--sizes 2000x50,20000x100,100000x200] [--repeats 3]
                                     [--time-limit 120] [--gap 1e-4] [--seed 0]
  python benchmarks/scale.py e2e --customers 1000000 --offers 500 --scores-per-customer 50
                                 [--repeats 3] [--data DIR] [--global-share 0.4]
  python benchmarks/scale.py e2e --customers 1000000 --offers 500 --transactions
  python benchmarks/scale.py e2e --customers 10000000 --offers 500 --budget-scale 0.3
                                 --global-budget 3000000 --kept 12 [--repeats 1]

``solvers`` builds all-pairs instances directly as ``AssignmentProblem`` (every customer has every
offer as a candidate; per-customer cap 5; offer budgets binding for about half the offers; a
binding global budget; no category cap) and solves each with the scale method
(``solve_lagrangian``), GLOP and PDLP (LP relaxation) and SCIP (the integer program). The OR-Tools
models are built from numpy arrays in one call (``model_builder``'s
``fill_model_from_sparse_data``); the pywraplp model of ``optimizer/solve/exact.py`` (a Python loop
over pairs) is also timed, with GLOP, where it fits the time limit, to show its build cost.

``e2e`` writes (or reuses) a synthetic input folder, writes a scenario TOML and runs ``offeropt run``
as a subprocess under ``/usr/bin/time -v`` (peak RSS), then reads the run's manifest.

``scenario`` runs a scenario file (the demo's) the same way.

Tables are printed with rich; each command writes a result file stamped with the commit and the
package versions into ``benchmarks/results/`` (``benchmarks/stamp.py``), from which
``benchmarks/report.py`` renders the README's and docs/performance.md's tables. See
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stamp import RESULTS, stamp, write_result  # noqa: E402

from optimizer.core.numerics import binding  # noqa: E402
from optimizer.model.problem import (  # noqa: E402
    AssignmentProblem,
    CandidateBlock,
    OfferData,
    Solution,
)
from optimizer.solve.lp import LPArrays, lp_arrays  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CAP = 5
CHUNK = 50_000


# --------------------------------------------------------------------------------------------
# instances
# --------------------------------------------------------------------------------------------

def _top_spend(value: np.ndarray, cost: np.ndarray, price: float, m: int) -> np.ndarray:
    """Per-offer spend when every customer takes her ``CAP`` best candidates of positive
    ``value - price * cost``."""
    reduced = value - price * cost
    k = min(CAP, m)
    top = np.argpartition(-reduced, k - 1, axis=1)[:, :k]
    take = np.take_along_axis(reduced, top, axis=1) > 0
    return np.bincount(top[take], weights=np.take_along_axis(cost, top, axis=1)[take],
                       minlength=m)


def all_pairs_problem(customers: int, offers: int, seed: int = 0, capped_share: float = 0.7,
                      global_share: float = 0.5, budget_range: tuple[float, float] = (0.3, 0.7),
                      global_slack: float = 0.85) -> tuple[AssignmentProblem, dict[str, Any]]:
    """An all-pairs instance: every customer has every offer as a candidate.

    p_redeem ~ Beta(1.5, 15); value = p * margin[offer] * weight[customer] (weight Pareto(2) + 1,
    heavy-tailed); cost = p * discount[offer]; every customer's cap is 5; no category cap.
    Budgets: with U = the unconstrained spend (each customer's 5 best offers), a global price is
    found (bisection on a sample of customers) at which the customers' best responses spend
    ``global_share * U``; a random ``capped_share`` of offers get ``budget_range`` of their spend
    at that price, and the global budget is ``global_slack * global_share * U``. So offer budgets
    bind on top of a binding global budget (the benchmark prints how many bind in the plan).
    """
    rng = np.random.default_rng(seed)
    m = offers
    discount = rng.uniform(1.0, 5.0, m)
    margin = rng.lognormal(np.log(4.0), 0.5, m)
    n_cat = 10
    categories = rng.integers(0, n_cat, (m, 1))
    blocks = []
    offer_row = np.arange(m, dtype=np.int64)
    for start in range(0, customers, CHUNK):
        n = min(CHUNK, customers - start)
        weight = rng.pareto(2.0, n) + 1.0
        p = rng.beta(1.5, 15.0, (n, m))
        value = p * margin[None, :] * weight[:, None]
        cost = p * discount[None, :]
        offer = np.broadcast_to(offer_row, (n, m)).copy()
        blocks.append(CandidateBlock(np.arange(start, start + n, dtype=np.int64), offer, value,
                                     cost, p, np.full(n, CAP, dtype=np.int64)))
    # a sample of customers sets the budgets (all of them up to 20000)
    rows = [np.flatnonzero(rng.random(b.n_customers) < min(1.0, 20_000 / customers))
            for b in blocks]
    value = np.concatenate([b.value[r] for b, r in zip(blocks, rows)])
    cost = np.concatenate([b.cost[r] for b, r in zip(blocks, rows)])
    scale = customers / value.shape[0]
    unconstrained = _top_spend(value, cost, 0.0, m) * scale
    target = global_share * unconstrained.sum()
    lo, hi = 0.0, float((value / np.maximum(cost, 1e-12)).max())
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _top_spend(value, cost, mid, m).sum() * scale > target:
            lo = mid
        else:
            hi = mid
    at_price = _top_spend(value, cost, hi, m) * scale
    capped = rng.random(m) < capped_share
    budget = np.where(capped, at_price * rng.uniform(*budget_range, m), np.inf)
    glob = float(global_slack * target)
    data = OfferData(discount=discount, budget=budget, max_customers=np.full(m, np.inf),
                     min_customers=np.zeros(m, dtype=np.int64), categories=categories,
                     category_names=[f"cat{i}" for i in range(n_cat)])
    problem = AssignmentProblem(offers=data, blocks=blocks, max_per_category=None,
                                global_budget=glob, n_customers=customers)
    info = {"customers": customers, "offers": m, "pairs": customers * m, "capped_offers":
            int(capped.sum()), "unconstrained_spend": float(unconstrained.sum()),
            "global_budget": glob}
    return problem, info


def plan_usage(problem: AssignmentProblem, solution: Solution) -> dict[str, Any]:
    """Budget use of a plan: offers whose budget binds (a positive shadow price, the one
    definition of :func:`optimizer.core.numerics.binding`) and the global budget's."""
    used = problem.usage(solution.chosen)
    finite = np.isfinite(problem.offers.budget)
    return {"binding_budgets": int(binding(solution.prices.budget).sum()),
            "capped_offers": int(finite.sum()), "spend": used.total_spend,
            "global_budget": problem.global_budget,
            "global_binds": bool(binding(np.array([solution.prices.global_budget]))[0])}


# --------------------------------------------------------------------------------------------
# OR-Tools, vectorised
# --------------------------------------------------------------------------------------------

def solve_ortools(lp: LPArrays, backend: str, integer: bool, time_limit: float,
                  gap: float) -> dict[str, Any]:
    """Build the model from ``lp`` in one call and solve it with ``backend``."""
    from ortools.linear_solver.python import model_builder as mb

    tick = time.perf_counter()
    model = mb.Model()
    n, rows = lp.value.size, lp.upper.size
    model.helper.fill_model_from_sparse_data(np.zeros(n), np.ones(n), lp.value,
                                             np.full(rows, -np.inf), lp.upper, lp.matrix)
    model.helper.set_maximize(True)
    if integer:
        set_int = model.helper.set_var_integrality
        for i in range(n):
            set_int(i, True)
    build = time.perf_counter() - tick
    solver = mb.Solver(backend)
    solver.set_time_limit_in_seconds(time_limit)
    if backend == "PDLP":
        # PDLP's relative gap is |p - d| / (|p| + |d|): half of ours at the same tolerance
        solver.set_solver_specific_parameters(
            "termination_criteria { simple_optimality_criteria { "
            f"eps_optimal_relative: {gap / 2} eps_optimal_absolute: 0 }} }}")
    elif backend == "SCIP":
        solver.set_solver_specific_parameters(f"limits/gap = {gap}")
    tick = time.perf_counter()
    status = solver.solve(model)
    solve = time.perf_counter() - tick
    helper = solver._Solver__solve_helper  # the numpy accessors model_builder wraps in pandas
    out: dict[str, Any] = {"build_s": build, "solve_s": solve, "status": status.name.lower()}
    if status not in (mb.SolveStatus.OPTIMAL, mb.SolveStatus.FEASIBLE):
        out.update(objective=None, bound=None)
        return out
    out["objective"] = float(solver.objective_value)
    if integer:
        out["bound"] = float(solver.best_objective_bound)
        out["kind"] = "plan"
    else:
        duals = np.asarray(helper.dual_values())
        # the sign convention of duals in a maximisation: either sign gives a valid bound
        out["bound"] = min(lp.dual_bound(duals), lp.dual_bound(-duals))
        out["kind"] = "LP"
    return out


def solve_exact_py(problem: AssignmentProblem, backend: str, time_limit: float) -> dict[str, Any]:
    """``optimizer.solve.exact.solve_exact`` with its build timed: total minus its solve."""
    from optimizer.solve.exact import solve_exact

    tick = time.perf_counter()
    sol = solve_exact(problem, time_limit_s=time_limit, relax=True, backend=backend)
    total = time.perf_counter() - tick
    solve = sol.trace[0]["seconds"]
    return {"build_s": total - solve, "solve_s": solve, "status": sol.status,
            "objective": sol.objective, "bound": sol.bound, "kind": "LP"}


def solve_ours(problem: AssignmentProblem, gap: float, time_limit: float) -> dict[str, Any]:
    """The product's solver as ``offeropt run`` calls it: price passes, then the core polish."""
    from optimizer.core.config import Solver
    from optimizer.solve import solve
    from optimizer.solve.lagrangian.method import LagrangianSettings
    from optimizer.solve.lagrangian.start import sample_prices

    sample_customers = LagrangianSettings().sample_customers
    tick = time.perf_counter()
    sample_prices(problem, sample_customers, 0)
    sample_s = time.perf_counter() - tick
    tick = time.perf_counter()
    sol = solve(problem, Solver(gap_tolerance=gap, max_iterations=1000, time_limit_s=time_limit))
    solve_s = time.perf_counter() - tick
    hit = next((e for e in sol.trace if e["gap"] is not None and e["gap"] <= gap), None)
    usage = plan_usage(problem, sol)
    polish = getattr(sol, "polish", None) or {}
    return {"build_s": 0.0, "solve_s": solve_s, "status": sol.status,
            "objective": sol.objective, "bound": sol.bound, "kind": "plan",
            "own_gap": sol.gap, "iterations": sol.iterations,
            "time_to_gap_s": hit["seconds"] if hit else None,
            "sample_lp_s": sample_s,
            "polish_s": polish.get("seconds"),
            **usage}


# --------------------------------------------------------------------------------------------
# solvers command
# --------------------------------------------------------------------------------------------

METHODS = ("ours", "GLOP", "PDLP", "SCIP", "GLOP exact.py")


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e5:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.4f}%"


def cmd_solvers(args: argparse.Namespace) -> None:
    stamped = stamp()  # at the start: the code that runs
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    limits = {"GLOP": args.max_pairs_glop, "PDLP": args.max_pairs_pdlp,
              "SCIP": args.max_pairs_scip, "GLOP exact.py": args.max_pairs_exact_py}
    rate_exact_py: float | None = None  # seconds of exact.py build per pair, once measured
    results: list[dict[str, Any]] = []
    for customers, offers in sizes:
        tick = time.perf_counter()
        problem, info = all_pairs_problem(customers, offers, args.seed)
        gen_s = time.perf_counter() - tick
        pairs = info["pairs"]
        print(f"\n== {customers}x{offers}: {pairs:,} pairs, instance {gen_s:.1f} s", flush=True)
        lp = None
        lp_build = 0.0
        runs: dict[str, list[dict[str, Any]]] = {}
        skipped: dict[str, str] = {}
        for method in METHODS:
            if method != "ours":
                reason = None
                if pairs > limits[method]:
                    reason = f"skipped (>limit: {pairs:,} pairs > {limits[method]:,})"
                elif (method == "GLOP exact.py" and rate_exact_py is not None
                      and rate_exact_py * pairs > 2 * args.time_limit):
                    reason = (f"skipped (>limit: build predicted "
                              f"{rate_exact_py * pairs:.0f} s)")
                if reason:
                    skipped[method] = reason
                    print(f"  {method}: {reason}", flush=True)
                    continue
            if method in ("GLOP", "PDLP", "SCIP") and lp is None:
                tick = time.perf_counter()
                lp = lp_arrays(problem)
                lp_build = time.perf_counter() - tick
            reps = args.repeats if method in ("ours", "GLOP", "PDLP") else args.slow_repeats
            runs[method] = []
            for rep in range(reps):
                if method == "ours":
                    r = solve_ours(problem, args.gap, args.time_limit)
                elif method == "GLOP exact.py":
                    r = solve_exact_py(problem, "GLOP", args.time_limit)
                    rate_exact_py = r["build_s"] / pairs
                else:
                    r = solve_ortools(lp, method, method == "SCIP", args.time_limit, args.gap)
                    r["build_s"] += lp_build  # numpy arrays -> CSR, counted in every repeat
                runs[method].append(r)
                print(f"  {method} #{rep + 1}: build {_fmt(r['build_s'])} s, solve "
                      f"{_fmt(r['solve_s'])} s, {r['status']}, objective {_fmt(r['objective'])}, "
                      f"bound {_fmt(r['bound'])}", flush=True)
        results.append(summarise(customers, offers, info, gen_s, runs, skipped, args.gap))
        del lp, problem
    print_solver_table(results, args)
    path = write_result("solvers", args.sizes, {**stamped, "args": vars(args),
                                                "machine_load": machine(), "sizes": results},
                        args.results)
    print(f"\nsaved {path}")


def sanitise(method: str, r: dict[str, Any]) -> dict[str, Any]:
    """Keep only certified bounds and real plans.

    SCIP stopped before its first plan reports objective 0 and bound 1e20; ``solve_exact`` stopped
    by its time limit with ``relax=True`` reports the LP's current primal value as the bound,
    which bounds nothing.
    """
    r = dict(r)
    bound = r.get("bound")
    if bound is not None and (not np.isfinite(bound) or abs(bound) >= 1e19):
        r["bound"] = None
        if method == "SCIP":
            r["objective"], r["status"] = None, "no plan"
    if method == "GLOP exact.py" and r["status"] != "optimal":
        r["bound"] = None
        r["status"] += " (no bound)"
    return r


def summarise(customers: int, offers: int, info: dict[str, Any], gen_s: float,
              runs: dict[str, list[dict[str, Any]]], skipped: dict[str, str],
              gap: float) -> dict[str, Any]:
    rows = []
    for method in METHODS:
        if method in skipped:
            rows.append({"method": method, "skipped": skipped[method]})
            continue
        rs = runs.get(method)
        if not rs:
            continue
        rs = [sanitise(method, r) for r in rs]
        last = rs[-1]
        row = {"method": method, "repeats": len(rs), "kind": last.get("kind"),
               "build_s": _median([r["build_s"] for r in rs]),
               "solve_s": _median([r["solve_s"] for r in rs]),
               "status": last["status"], "objective": last["objective"], "bound": last["bound"],
               "runs": rs}
        if method == "ours":
            row["time_to_gap_s"] = _median([r["time_to_gap_s"] for r in rs])
            row["sample_lp_s"] = _median([r["sample_lp_s"] for r in rs])
            for key in ("own_gap", "iterations", "binding_budgets", "capped_offers",
                        "global_binds", "spend", "global_budget"):
                row[key] = last[key]
        rows.append(row)
    # the tightest certified bound: ours, SCIP's, and the LP bounds from weak duality
    bounds = [r["bound"] for r in rows if r.get("bound") is not None]
    best_bound = min(bounds) if bounds else None
    for r in rows:
        if best_bound and r.get("objective") is not None:
            if r["kind"] == "plan":
                r["gap_vs_best_bound"] = (best_bound - r["objective"]) / best_bound
            elif r.get("bound") is not None:  # an LP value is no plan: its bound's excess
                r["bound_excess"] = (r["bound"] - best_bound) / best_bound
    for r in rows:
        if r.get("kind") == "LP" and r.get("bound") is not None and r.get("objective") is not None:
            r["certified_gap"] = max(0.0, (r["bound"] - r["objective"]) / r["bound"])
        else:
            r.pop("certified_gap", None)
    ours = next((r for r in rows if r["method"] == "ours" and "skipped" not in r), None)
    for r in rows:
        if r["method"] == "PDLP" and "skipped" not in r and ours:
            t_ours = ours["time_to_gap_s"] or ours["solve_s"]
            r["speedup_solve"] = r["solve_s"] / t_ours
            r["speedup_total"] = (r["solve_s"] + r["build_s"]) / t_ours
            r["pdlp_reached_gap"] = r["status"] == "optimal"
    return {"size": f"{customers}x{offers}", **info, "instance_s": gen_s, "gap_tolerance": gap,
            "best_bound": best_bound, "rows": rows}


def print_solver_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title=f"Solvers, all-pairs instances, gap tolerance {args.gap:g} "
                        f"(medians of {args.repeats}; SCIP and exact.py: {args.slow_repeats})",
                  box=box.ASCII)
    for col in ("size", "pairs", "method", "build s", "solve s", "status", "objective",
                "bound", "gap vs best bound", "speed-up vs PDLP"):
        table.add_column(col, justify="left" if col in ("size", "method", "status") else "right")
    for res in results:
        first = True
        for r in res["rows"]:
            size = res["size"] if first else ""
            pairs = f"{res['pairs']:,}" if first else ""
            first = False
            if "skipped" in r:
                table.add_row(size, pairs, r["method"], "", "", r["skipped"], "", "", "", "")
                continue
            method = r["method"] + (" (LP)" if r["kind"] == "LP" else "")
            solve = _fmt(r["solve_s"])
            if r["method"] == "ours" and r.get("time_to_gap_s") is not None:
                solve = f"{_fmt(r['time_to_gap_s'])}"
            speed = ""
            if "speedup_solve" in r:
                more = "" if r["pdlp_reached_gap"] else ">"
                speed = f"{more}{r['speedup_solve']:.1f}x ({more}{r['speedup_total']:.1f}x w/ build)"
            table.add_row(size, pairs, method, _fmt(r["build_s"]), solve, r["status"],
                          _fmt(r["objective"]), _fmt(r["bound"]),
                          _pct(r.get("gap_vs_best_bound")) if r["kind"] == "plan"
                          else (f"bound +{_pct(r['bound_excess'])}" if "bound_excess" in r
                                else "-"), speed)
        table.add_section()
    console.print(table)
    for res in results:
        ours = next((r for r in res["rows"] if r["method"] == "ours"), None)
        if ours and "skipped" not in ours:
            console.print(
                f"{res['size']}: ours {ours['iterations']} passes, own certified gap "
                f"{_pct(ours['own_gap'])}, of its time {_fmt(ours['sample_lp_s'])} s is the "
                f"starting sample LP (PDLP); plan: {ours['binding_budgets']}/"
                f"{ours['capped_offers']} capped offers bind ({res['offers']} offers), global "
                f"budget {'binds' if ours['global_binds'] else 'slack'} "
                f"(spend {_fmt(ours['spend'])} / {_fmt(ours['global_budget'])})")
        for r in res["rows"]:
            if r.get("certified_gap") is not None:
                console.print(f"{res['size']}: {r['method']} LP certified gap (weak-duality bound "
                              f"from its duals vs its primal value) {_pct(r['certified_gap'])}")


def cmd_table(args: argparse.Namespace) -> None:
    saved = json.loads(args.json.read_text())
    results = []
    for res in saved["sizes"]:
        runs = {r["method"]: r["runs"] for r in res["rows"] if "runs" in r}
        skipped = {r["method"]: r["skipped"] for r in res["rows"] if "skipped" in r}
        info = {k: res[k] for k in ("customers", "offers", "pairs", "capped_offers",
                                    "unconstrained_spend", "global_budget")}
        results.append(summarise(res["customers"], res["offers"], info, res["instance_s"], runs,
                                 skipped, res["gap_tolerance"]))
    print_solver_table(results, argparse.Namespace(**saved["args"]))


# --------------------------------------------------------------------------------------------
# e2e command
# --------------------------------------------------------------------------------------------

SENSITIVE = ["FAMILY PLANNING", "DIETARY AID PRODUCTS", "INFANT FORMULA"]


def ensure_data(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The input folder: ``--data`` as given, else a cached folder under benchmarks/out/data."""
    if args.data is not None:
        return args.data.resolve(), None
    from optimizer.apps.synthetic import write_demo_data

    kind = "tx" if args.transactions else f"scores-k{args.scores_per_customer}"
    folder = OUT / "data" / f"{kind}-c{args.customers}-o{args.offers}-s{args.seed}"
    if folder.exists():
        return folder, None
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tick = time.perf_counter()
    write_demo_data(partial, args.customers, args.offers, args.seed,
                    scores_per_customer=None if args.transactions else args.scores_per_customer)
    seconds = time.perf_counter() - tick
    partial.rename(folder)
    return folder, seconds


def _beside(data: Path, suffix: str) -> tuple[Path, Path | None]:
    """The folder ``<data>-<suffix>`` beside ``data`` and, when it is not there yet, a fresh
    ``.partial`` folder linking ``data``'s tables, to be renamed to it once its own tables are
    written (``None``: the folder exists)."""
    folder = data.with_name(f"{data.name}-{suffix}")
    if folder.exists():
        return folder, None
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for path in data.iterdir():
        (partial / path.name).symlink_to(path.resolve())
    return folder, partial


def with_channels(data: Path, n: int, seed: int) -> Path:
    """``data`` with ``n`` channels (issue 24): a folder beside it linking its tables, plus a
    ``channels`` table (the cheaper a channel, the tighter its capacity: the first capped at one
    contact per customer, the dearest uncapped) and seeded random consent in ``customer_channels`` (a few
    customers consent to none)."""
    import numpy as np
    import polars as pl

    folder, partial = _beside(data, f"ch{n}")
    if partial is None:
        return folder
    ids = _table(data, "customers").get_column("customer_id")
    rng = np.random.default_rng(seed)
    share = np.linspace(0.8, 0.4, n)
    consent = rng.random((ids.len(), n)) < share[None, :]
    rows, cols = np.nonzero(consent)
    names = [f"ch{k}" for k in range(n)]
    pl.DataFrame({"customer_id": ids.gather(rows),
                  "channel_id": pl.Series(names).gather(cols)}).write_parquet(
        partial / "customer_channels.parquet")
    capacity = [int(ids.len() * (1.0 - 0.4 * k)) for k in range(n - 1)] + [None]
    pl.DataFrame({"channel_id": names, "capacity": pl.Series(capacity, dtype=pl.Int64),
                  "cost_per_contact": [0.01 * (1 + k) for k in range(n)]}).write_csv(
        partial / "channels.csv")
    partial.rename(folder)
    return folder


def with_groups(data: Path, n: int, seed: int) -> Path:
    """``data`` with ``n`` exclusive offer families (issue 24): a folder beside it linking its
    tables, plus an ``offer_groups`` table of ``n`` disjoint groups of 5 seeded random offers,
    at most one offer of a family per customer."""
    import numpy as np
    import polars as pl

    folder, partial = _beside(data, f"gr{n}")
    if partial is None:
        return folder
    ids = _table(data, "offers").get_column("offer_id")
    size = 5
    if n * size > ids.len():
        raise SystemExit(f"--groups {n}: {n} groups of {size} need {n * size} offers, "
                         f"the data has {ids.len()}")
    members = np.random.default_rng(seed + 1).permutation(ids.len())[:n * size]
    pl.DataFrame({"group_id": [f"family{g}" for g in range(n) for _ in range(size)],
                  "offer_id": ids.gather(members).cast(pl.Utf8),
                  "max_per_customer": [1] * (n * size)}).write_csv(partial / "offer_groups.csv")
    partial.rename(folder)
    return folder


def _table(folder: Path, name: str):
    import polars as pl

    for ext, read in (("parquet", pl.read_parquet), ("csv", pl.read_csv)):
        path = folder / f"{name}.{ext}"
        if path.exists():
            return read(path)
    raise FileNotFoundError(folder / name)


def unconstrained_spend_from_scores(folder: Path, cap: int) -> float:
    """Expected spend if every customer got her ``cap`` best-valued scored offers (no budgets, no
    eligibility rules)."""
    import polars as pl

    offers = _table(folder, "offers").select(pl.col("offer_id").cast(pl.Utf8),
                                             pl.col("discount").cast(pl.Float64))
    scores = pl.scan_parquet(folder / "scores.parquet") if (folder / "scores.parquet").exists() \
        else pl.scan_csv(folder / "scores.csv")
    top = (scores.select(pl.col("customer_id"), pl.col("offer_id").cast(pl.Utf8),
                         pl.col("p_redeem").cast(pl.Float64), pl.col("value").cast(pl.Float64))
           .filter(pl.col("value") > 0)
           # a total order and kept orders: the same rows summed in the same order every run
           # (a group's or a join's own order moved the budget's last bit, and the plan)
           .sort(["value", "customer_id", "offer_id"], descending=[True, False, False])
           .group_by("customer_id", maintain_order=True).head(cap)
           .join(offers.lazy(), on="offer_id", how="left", maintain_order="left")
           .select(pl.col("p_redeem") * pl.col("discount"))
           .collect())
    # summed exactly: polars' own sum of chunks laid out by its threads moved the last bit
    return math.fsum(top.to_series().drop_nulls().to_numpy())


def write_scenario(path: Path, data: Path, output: Path, global_budget: float | None,
                   args: argparse.Namespace, budget_scale: float = 1.0) -> None:
    gb = "" if global_budget is None else f"global_budget = {global_budget!r}\n"
    cat = ("" if args.category_cap is None
           else f"max_offers_per_category = {args.category_cap}\n")
    path.write_text(
        f'name = "bench-e2e"\nweek = {args.week}\ndata = "{data}"\noutput = "{output}"\n\n'
        "[rules]\nmax_offers_per_customer = 5\n" + cat +
        "cooldown_weeks = 4\nmax_offers_per_window = 8\nwindow_weeks = 4\n" + gb +
        f"budget_scale = {budget_scale!r}\nsensitive_categories = {json.dumps(SENSITIVE)}\n"
        'sensitive_policy = "opt_in"\n\n'
        f"[solver]\ngap_tolerance = {args.gap!r}\ntime_limit_s = {args.solver_time_limit!r}\n"
        "seed = 0\n"
        + (f"scores_per_customer = {args.kept}\n" if getattr(args, "kept", None) else "")
        + (f"memory_limit_gb = {args.memory_limit_gb!r}\n"
           if getattr(args, "memory_limit_gb", None) else "")
        + (f'backend = "dask"\nworkers = {args.workers}\n'
           if getattr(args, "backend", "local") == "dask" else "")
        + (f'repair = "{args.repair}"\n' if getattr(args, "repair", None) else "")
        + (f"\n[affinity]\npricing_rounds = {args.pricing_rounds}\n"
           if getattr(args, "pricing_rounds", 0) else ""))


def run_offeropt(scenario: Path, output: Path) -> dict[str, Any]:
    """``offeropt run`` in a subprocess under /usr/bin/time -v; the manifest and peak RSS."""
    shutil.rmtree(output, ignore_errors=True)  # each repeat writes a fresh folder
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "optimizer", "run", str(scenario),
           "--quiet"]
    tick = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"offeropt run failed (exit {proc.returncode}):\n{tail}")
    manifest = json.loads((output / "manifest.json").read_text())
    summary = _table(output, "offers_summary")
    spend = float(summary.get_column("expected_cost").sum())
    gb = manifest["scenario"]["rules"].get("global_budget")
    return {
        "wall_s": wall, "peak_rss_gb": int(rss.group(1)) / 1024 ** 2 if rss else None,
        "seconds": manifest["seconds"], "objective": manifest["objective"],
        "bound": manifest["upper_bound"], "gap": manifest["gap"],
        "status": manifest["solver"]["status"], "iterations": manifest["solver"]["iterations"],
        "solver_trace_s": manifest["solver"]["trace"][-1]["seconds"] if manifest["solver"]["trace"] else None,
        "binding_budgets": manifest["offers_with_binding_budget"],
        "capped_offers": int(summary.get_column("budget").is_not_null().sum()),
        "offers": manifest["offers"], "customers": manifest["customers"],
        "candidate_pairs": manifest["candidate_pairs"],
        "customers_reached": manifest.get("customers_reached"),
        "candidates": manifest.get("candidates", {}),
        "backend": manifest["solver"].get("backend"),
        "spend": spend, "global_budget": gb,
        "global_binds": gb is not None and spend >= 0.999 * gb,
    }


def e2e_instance(args: argparse.Namespace) -> str:
    """The result file's instance key: what the arguments make of the run."""
    key = (f"tx-c{args.customers}-o{args.offers}" if args.transactions
           else f"scores-c{args.customers}-o{args.offers}-k{args.scores_per_customer}")
    if args.budget_scale != 1.0:
        key += f"-bs{args.budget_scale:g}"
    key += (f"-gb{args.global_budget:.0f}" if args.global_budget is not None
            else f"-share{args.global_share:g}")
    for name, flag in (("category_cap", "cat"), ("kept", "kept"),
                       ("memory_limit_gb", "mem")):
        if getattr(args, name, None) is not None:
            key += f"-{flag}{getattr(args, name):g}"
    if args.gap != 0.0005:
        key += f"-gap{args.gap:g}"
    if getattr(args, "channels", 0):
        key += f"-ch{args.channels}"
    if getattr(args, "groups", 0):
        key += f"-gr{args.groups}"
    if getattr(args, "backend", "local") == "dask":
        key += f"-dask{args.workers}"
    if getattr(args, "repair", None) == "shards":
        key += "-rshards"
    if getattr(args, "pricing_rounds", 0):
        key += f"-pr{args.pricing_rounds}"
    return key


def cmd_e2e(args: argparse.Namespace) -> None:
    stamped = stamp()  # at the start: the code that runs
    data, gen_s = ensure_data(args)
    if args.channels:
        data = with_channels(data, args.channels, args.seed)
    if args.groups:
        data = with_groups(data, args.groups, args.seed)
    kind = "transactions" if args.transactions else f"scores x{args.scores_per_customer}"
    tag = f"{'tx' if args.transactions else 'scores'}-c{args.customers}-o{args.offers}"
    tag += f"-ch{args.channels}" if args.channels else ""
    tag += f"-gr{args.groups}" if args.groups else ""
    work = OUT / "e2e" / tag
    work.mkdir(parents=True, exist_ok=True)
    print(f"data {data}" + (f" (written in {gen_s:.1f} s)" if gen_s else " (reused)"), flush=True)
    calibration = None
    if args.global_budget is not None:
        global_budget, basis = args.global_budget, "given"
    elif not args.transactions:
        tick = time.perf_counter()
        unconstrained = unconstrained_spend_from_scores(data, 5)
        global_budget = args.global_share * unconstrained
        basis = (f"{args.global_share:g} x {unconstrained:,.0f} (each customer's 5 best scored "
                 f"offers, no budgets or rules; {time.perf_counter() - tick:.1f} s)")
    else:
        # no scores to read: one run without the global budget and with offer budgets x1e6
        scen = work / "calibration.toml"
        write_scenario(scen, data, work / "run-calibration", None, args, budget_scale=1e6)
        print("calibration run (no global budget, offer budgets x1e6) ...", flush=True)
        calibration = run_offeropt(scen, work / "run-calibration")
        global_budget = args.global_share * calibration["spend"]
        basis = (f"{args.global_share:g} x {calibration['spend']:,.0f} (spend of a calibration "
                 f"run without budgets, {calibration['wall_s']:.0f} s)")
    print(f"global budget {global_budget:,.0f} = {basis}", flush=True)
    scenario = work / "scenario.toml"
    write_scenario(scenario, data, work / "run", global_budget, args,
                   budget_scale=args.budget_scale)
    runs = []
    for rep in range(args.repeats):
        print(f"run #{rep + 1} ...", flush=True)
        r = run_offeropt(scenario, work / "run")
        runs.append(r)
        print(f"  wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB, "
              f"stages {json.dumps({k: round(v, 1) for k, v in r['seconds'].items()})}, "
              f"gap {_pct(r['gap'])} {r['status']}", flush=True)
    result = {"args": vars(args), "machine_load": machine(), "data": str(data),
              "data_written_s": gen_s,
              "kind": kind, "global_budget": global_budget, "global_budget_basis": basis,
              "calibration": calibration, "runs": runs}
    print_e2e_table(result, args)
    path = write_result("e2e", e2e_instance(args), {**stamped, **result}, args.results)
    print(f"\nsaved {path}")


def cmd_scenario(args: argparse.Namespace) -> None:
    """``offeropt run SCENARIO`` under /usr/bin/time -v, ``--repeats`` times (each into an
    emptied output folder: the scenario's own ``output`` is deleted first), one result file."""
    from optimizer.core.config import load_scenario

    stamped = stamp()
    scenario = load_scenario(args.scenario)
    if not scenario.data.exists():
        raise SystemExit(f"{args.scenario}: its data folder {scenario.data} does not exist "
                         "(the demo's: offeropt demo-data data/demo --customers 20000 "
                         "--offers 200 --seed 0)")
    runs = []
    for rep in range(args.repeats):
        print(f"run #{rep + 1} ...", flush=True)
        r = run_offeropt(args.scenario.resolve(), scenario.output)
        runs.append(r)
        print(f"  wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB, "
              f"gap {_pct(r['gap'])} {r['status']}, objective {r['objective']}", flush=True)
    result = {"args": vars(args), "machine_load": machine(), "data": str(scenario.data),
              "kind": f"scenario {scenario.name}", "runs": runs}
    path = write_result("scenario", scenario.name, {**stamped, **result}, args.results)
    print(f"\nsaved {path}")


def print_e2e_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    runs = result["runs"]
    last = runs[-1]
    order = ["load", "features", "eligibility", "solve", "write"]
    stages = [s for s in order if s in last["seconds"]] + [s for s in last["seconds"]
                                                          if s not in order]
    med = lambda key: _median([r[key] for r in runs])  # noqa: E731
    table = Table(title=f"End to end: offeropt run, {args.customers:,} customers x {args.offers} "
                        f"offers, {result['kind']} (medians of {len(runs)})", box=box.ASCII)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("candidate pairs", f"{last['candidate_pairs']:,}")
    for stage in stages:
        table.add_row(f"{stage} s", _fmt(_median([r["seconds"].get(stage) for r in runs]), 1))
    table.add_row("total wall s (subprocess)", _fmt(med("wall_s"), 1))
    table.add_row("peak RSS GB", _fmt(med("peak_rss_gb")))
    backend = last.get("backend")
    if isinstance(backend, dict) and backend.get("worker_peak_gb"):
        table.add_row("dask workers' peak GB", ", ".join(_fmt(g) for g in backend["worker_peak_gb"]))
    table.add_row("objective", _fmt(last["objective"]))
    table.add_row("upper bound", _fmt(last["bound"]))
    table.add_row("gap", _pct(last["gap"]))
    table.add_row("status / passes", f"{last['status']} / {last['iterations']}")
    table.add_row("binding offer budgets / capped / offers",
                  f"{last['binding_budgets']} / {last['capped_offers']} / {last['offers']}")
    table.add_row("global budget binds",
                  f"{'yes' if last['global_binds'] else 'no'} (spend {_fmt(last['spend'])} of "
                  f"{_fmt(last['global_budget'])})")
    table.add_row("customers reached", f"{last['customers_reached']:,}")
    kept = last.get("candidates", {})
    if "scores_read" in kept:
        table.add_row("scores table read", kept["scores_read"])
    if "bound_all_candidates" in kept:
        listed = kept.get("pairs_all_candidates")
        table.add_row("pairs kept per customer / kept / allowed",
                      f"{kept['candidates_per_customer']} / {kept['pairs']:,} / "
                      + (f"{listed:,}" if listed is not None else "-"))
        table.add_row("bound over every allowed pair", _fmt(kept["bound_all_candidates"]))
        table.add_row("gap over every allowed pair", _pct(kept["gap_all_candidates"]))
    Console(width=160).print(table)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "loadavg": load, "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("solvers", help="ours vs GLOP, PDLP and SCIP on all-pairs instances")
    s.add_argument("--sizes", default="2000x50,20000x100,100000x200")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--slow-repeats", type=int, default=1,
                   help="repeats of SCIP and of the exact.py build (slow; default 1)")
    s.add_argument("--time-limit", type=float, default=120.0)
    s.add_argument("--gap", type=float, default=1e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-pairs-glop", type=int, default=5_000_000)
    s.add_argument("--max-pairs-pdlp", type=int, default=30_000_000)
    s.add_argument("--max-pairs-scip", type=int, default=2_500_000)
    s.add_argument("--max-pairs-exact-py", type=int, default=2_500_000)
    s.add_argument("--results", type=Path, default=RESULTS)
    s.set_defaults(func=cmd_solvers)
    t = sub.add_parser("table", help="print the solvers table again from a saved JSON")
    t.add_argument("json", type=Path)
    t.set_defaults(func=cmd_table)
    e = sub.add_parser("e2e", help="offeropt run end to end in a subprocess")
    e.add_argument("--customers", type=int, default=1_000_000)
    e.add_argument("--offers", type=int, default=500)
    e.add_argument("--scores-per-customer", type=int, default=50)
    e.add_argument("--kept", type=int, default=None,
                   help="solver.scores_per_customer: each customer's best N listed pairs enter "
                        "the solve (all by default); the gap over every pair is reported too")
    e.add_argument("--memory-limit-gb", type=float, default=None,
                   help="solver.memory_limit_gb (default: the memory available); without "
                        "--kept, a scores table that does not fit keeps as many pairs as fit")
    e.add_argument("--transactions", action="store_true",
                   help="no scores table: the affinity path from transactions")
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--data", type=Path, default=None, help="reuse this input folder")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--week", type=int, default=40)
    e.add_argument("--global-share", type=float, default=0.4)
    e.add_argument("--global-budget", type=float, default=None)
    e.add_argument("--budget-scale", type=float, default=1.0,
                   help="the scenario's rules.budget_scale (tighter budgets bind on more offers)")
    e.add_argument("--category-cap", type=int, default=None)
    e.add_argument("--gap", type=float, default=0.0005)
    e.add_argument("--solver-time-limit", type=float, default=600.0)
    e.add_argument("--channels", type=int, default=0,
                   help="add this many channels with random consent to the data (issue 24)")
    e.add_argument("--groups", type=int, default=0,
                   help="add this many exclusive offer families of 5 offers, one per customer "
                        "(offer_groups, issue 24)")
    e.add_argument("--pricing-rounds", type=int, default=0,
                   help="affinity.pricing_rounds of the scenario (the affinity path)")
    e.add_argument("--backend", choices=("local", "dask"), default="local",
                   help="solver.backend: dask runs the passes on a LocalCluster (issue 21)")
    e.add_argument("--workers", type=int, default=2,
                   help="solver.workers of the dask backend's LocalCluster")
    e.add_argument("--repair", choices=("driver", "shards"), default=None,
                   help="solver.repair; with --backend dask and a scores table, shards leaves "
                        "every pair to the workers (the driver holds none, issue 21)")
    e.add_argument("--results", type=Path, default=RESULTS,
                   help="folder of the stamped result file (default benchmarks/results)")
    e.set_defaults(func=cmd_e2e)
    r = sub.add_parser("scenario", help="offeropt run of a scenario file (the demo's)")
    r.add_argument("scenario", type=Path)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--results", type=Path, default=RESULTS)
    r.set_defaults(func=cmd_scenario)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
