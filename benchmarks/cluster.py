"""The scale method in this process and on a 2-worker Dask LocalCluster (issue 21).

Usage (heavy runs under the machine-wide lock):

    flock /work/wt/notes/bigbench.lock python benchmarks/cluster.py \
        --customers 1000000 --offers 2000 --candidates 100 --backend local
    flock /work/wt/notes/bigbench.lock python benchmarks/cluster.py \
        --customers 1000000 --offers 500 --candidates 50 --backend dask --workers 2

Each run builds a seeded instance with numpy (every customer has ``--candidates`` distinct offers
of ``--offers``; p_redeem ~ Beta(1.5, 15), value = p * margin[offer] * weight[customer], cost = p
* discount[offer], a cap of 5 offers; 70% of offers get a budget of 30-70% of their spend at the
global price that spends half the unconstrained spend, and a global budget of 85% of that half),
solves it with ``optimizer.solve.solve`` (no polish) on the chosen backend and writes a stamped
result (``benchmarks/stamp.py``: commit, versions, machine load; seconds, passes, gap, peak memory
of this process and of each worker, bytes per pass) to
``benchmarks/results/cluster_{instance}-{backend}_{commit}.json``.

``--scores DIR`` runs the whole pipeline (``run_scenario``, no run folder written) on the same
instance written once to ``DIR`` as an input folder whose ``scores`` table is a dataset of
``--parts`` Parquet files (customers, offers, one product and one transaction beside it): on the
``dask`` backend each worker then reads its shards' customers from the dataset and builds their
blocks itself (``solver.backend.shards_built_by = "workers"``); the record adds the stages'
seconds, the bytes sent to start the shards and the workers' kernel counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from optimizer.core.allocator import configure_polars_allocator  # noqa: E402

configure_polars_allocator()  # before polars loads, as the command line does (and its workers)

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stamp import RESULTS, stamp, write_result  # noqa: E402

from optimizer.core.config import Solver  # noqa: E402
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData  # noqa: E402
from optimizer.solve import solve  # noqa: E402
from optimizer.solve.lagrangian import refill_shards  # noqa: E402
from optimizer.solve.lagrangian.executor import LocalShards, ShardExecutor  # noqa: E402

CAP, CHUNK = 5, 50_000


def _coprime_strides(m: int) -> np.ndarray:
    return np.array([s for s in range(1, min(m, 512)) if np.gcd(s, m) == 1], dtype=np.int64)


def _spend(offer: np.ndarray, value: np.ndarray, cost: np.ndarray, price: float, m: int
           ) -> np.ndarray:
    """Per-offer spend when every customer takes her ``CAP`` best candidates of positive
    ``value - price * cost``."""
    reduced = value - price * cost
    top = np.argpartition(-reduced, CAP - 1, axis=1)[:, :CAP]
    take = np.take_along_axis(reduced, top, axis=1) > 0
    return np.bincount(np.take_along_axis(offer, top, axis=1)[take],
                       weights=np.take_along_axis(cost, top, axis=1)[take], minlength=m)


def instance(customers: int, offers: int, candidates: int, seed: int = 0) -> AssignmentProblem:
    """The seeded instance described in the module docstring."""
    rng = np.random.default_rng(seed)
    m, k = offers, candidates
    discount = rng.uniform(1.0, 5.0, m)
    margin = rng.lognormal(np.log(4.0), 0.5, m)
    categories = rng.integers(0, 10, (m, 1))
    strides = _coprime_strides(m)
    blocks = []
    for start in range(0, customers, CHUNK):
        n = min(CHUNK, customers - start)
        first = rng.integers(0, m, n)
        stride = strides[rng.integers(0, strides.size, n)]
        # distinct offers per customer (a stride coprime to m), in increasing order
        offer = np.sort((first[:, None] + np.arange(k)[None, :] * stride[:, None]) % m, axis=1)
        weight = rng.pareto(2.0, n) + 1.0
        p = rng.beta(1.5, 15.0, (n, k))
        value = p * margin[offer] * weight[:, None]
        cost = p * discount[offer]
        blocks.append(CandidateBlock(np.arange(start, start + n, dtype=np.int64),
                                     offer.astype(np.int32), value, cost, p,
                                     np.full(n, CAP, dtype=np.int64)))
    sample = blocks[0]
    scale = customers / sample.n_customers
    unconstrained = _spend(sample.offer, sample.value, sample.cost, 0.0, m) * scale
    target = 0.5 * unconstrained.sum()
    lo, hi = 0.0, float((sample.value / np.maximum(sample.cost, 1e-12)).max())
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _spend(sample.offer, sample.value, sample.cost, mid, m).sum() * scale > target:
            lo = mid
        else:
            hi = mid
    at_price = _spend(sample.offer, sample.value, sample.cost, hi, m) * scale
    capped = rng.random(m) < 0.7
    budget = np.where(capped, at_price * rng.uniform(0.3, 0.7, m), np.inf)
    data = OfferData(discount=discount, budget=budget, max_customers=np.full(m, np.inf),
                     min_customers=np.zeros(m, dtype=np.int64), categories=categories,
                     category_names=[f"cat{i}" for i in range(10)])
    return AssignmentProblem(offers=data, blocks=blocks, max_per_category=None,
                             global_budget=float(0.85 * target), n_customers=customers)


def write_inputs(problem: AssignmentProblem, folder: Path, parts: int) -> None:
    """``problem`` as an input folder of the scores path."""
    folder.mkdir(parents=True, exist_ok=True)
    offers = problem.offers
    m = offers.n_offers
    budget = [None if not np.isfinite(b) else float(b) for b in offers.budget]
    pl.DataFrame({"offer_id": np.arange(m), "discount": offers.discount, "budget": budget,
                  "category": [offers.category_names[c] for c in offers.categories[:, 0]]}
                 ).write_parquet(folder / "offers.parquet")
    pl.DataFrame({"customer_id": np.arange(problem.n_customers)}).write_parquet(
        folder / "customers.parquet")
    pl.DataFrame({"product_id": [0], "category": ["cat0"]}).write_parquet(
        folder / "products.parquet")
    pl.DataFrame({"customer_id": [0], "product_id": [0], "week": [1], "sales_value": [1.0]}
                 ).write_parquet(folder / "transactions.parquet")
    (folder / "scores").mkdir(exist_ok=True)
    per_part = -(-len(problem.blocks) // parts)
    for k in range(parts):
        frames = []
        for block in problem.blocks[k * per_part:(k + 1) * per_part]:
            keep = block.offer >= 0
            frames.append(pl.DataFrame({
                "customer_id": np.broadcast_to(block.customers[:, None], keep.shape)[keep],
                "offer_id": block.offer[keep].astype(np.int64),
                "p_redeem": block.p_redeem[keep], "value": block.value[keep]}))
        if frames:
            pl.concat(frames).write_parquet(folder / "scores" / f"part-{k:03d}.parquet")


def run_scores(args: argparse.Namespace, stamped: dict[str, Any]) -> dict[str, Any]:
    """The pipeline on the instance written as an input folder (see the module docstring)."""
    from optimizer.apps.pipeline import run_scenario
    from optimizer.core.config import scenario_from_dict

    started = time.perf_counter()
    meta = args.scores / "instance.json"
    if not meta.exists():  # written once (in a run of its own: the driver's peak is the run's)
        problem = instance(args.customers, args.offers, args.candidates, args.seed)
        write_inputs(problem, args.scores, args.parts)
        meta.write_text(json.dumps({"pairs": problem.n_pairs,
                                    "global_budget": problem.global_budget}))
        del problem
    known = json.loads(meta.read_text())
    pairs, glob = known["pairs"], known["global_budget"]
    written = time.perf_counter() - started
    solver: dict[str, Any] = {
        "backend": args.backend, "polish_pairs": 0, "gap_tolerance": args.gap,
        "max_iterations": args.max_iterations, "time_limit_s": args.time_limit,
        "shard_customers": args.shard_customers, "chunk_size": CHUNK}
    if args.backend == "dask":
        solver["workers"] = args.workers
        if args.kernel_cache:
            solver["kernel_cache"] = str(args.kernel_cache)
    if args.memory_limit_gb:
        solver["memory_limit_gb"] = args.memory_limit_gb
    scenario = scenario_from_dict({
        "name": "cluster-bench", "week": 2, "data": str(args.scores),
        "output": str(args.scores.parent / "unused-run"),
        "rules": {"max_offers_per_customer": CAP, "global_budget": float(glob)},
        "solver": solver})
    t0 = time.perf_counter()
    result = run_scenario(scenario, write=False)
    seconds = time.perf_counter() - t0
    manifest = result.manifest
    passes = [t for t in result.solution.trace if "bound" in t]
    return {
        **stamped, "mode": "scores dataset (pipeline)", "parts": args.parts,
        "shard_customers": args.shard_customers, "customers": args.customers,
        "offers": args.offers, "candidates": args.candidates, "pairs": pairs,
        "write_inputs_s": round(written, 1), "run_s": round(seconds, 1),
        "stages_s": manifest.get("stage_seconds", manifest.get("seconds")),
        "backend": manifest["solver"]["backend"], "passes": len(passes),
        "passes_s": round(float(passes[-1]["seconds"] or 0.0), 1) if passes else None,
        "status": result.solution.status, "gap": result.solution.gap,
        "objective": result.solution.objective,
        "driver_peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


class _RefillFigures(logging.Handler):
    """The figures :mod:`optimizer.solve.lagrangian.refill_shards` logs per refill."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append([record.args[0], record.args[1]])  # type: ignore[index]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, solve, measure."""
    stamped = stamp()  # taken first: it names the code that ran
    if args.scores is not None:
        return run_scores(args, stamped)
    started = time.perf_counter()
    problem = instance(args.customers, args.offers, args.candidates, args.seed)
    built = time.perf_counter() - started
    settings = Solver(backend=args.backend, workers=args.workers, polish_pairs=0,
                      gap_tolerance=args.gap, max_iterations=args.max_iterations,
                      time_limit_s=args.time_limit, shard_customers=args.shard_customers,
                      memory_limit_gb=args.memory_limit_gb, repair=args.repair)
    ShardExecutor.refill_on_shards = args.refill == "shards"  # with the repair on shards
    made: list[LocalShards] = []
    if args.measure:  # the local executor's payloads pickled and counted, as on Dask
        LocalShards.measure = True
        start_shards = LocalShards.__init__

        def kept(self: LocalShards, *a: Any) -> None:
            start_shards(self, *a)
            made.append(self)
        LocalShards.__init__ = kept  # type: ignore[method-assign]
    refills = _RefillFigures()
    logging.getLogger(refill_shards.__name__).addHandler(refills)
    logging.getLogger(refill_shards.__name__).setLevel(logging.INFO)
    t0 = time.perf_counter()
    solution = solve(problem, settings)
    seconds = time.perf_counter() - t0
    passes = [t for t in solution.trace if "bound" in t]
    return {
        **stamped, "shard_customers": args.shard_customers, "repair": args.repair,
        "refill": args.refill if args.repair == "shards" else "driver",
        # per refill on the shards: its pool, then per round (proposals, proposals sent to
        # the driver, granted, calls past the round's first)
        "refills": refills.seen,
        "local_bytes_per_pass": made[-1].report()["bytes_per_pass"] if made else None,
        "customers": args.customers, "offers": args.offers, "candidates": args.candidates,
        "pairs": problem.n_pairs, "backend": solution.backend, "build_s": round(built, 1),
        "solve_s": round(seconds, 1), "passes": len(passes),
        # the passes alone: solve_s less the start (a LocalCluster's, the shards' scatter)
        "passes_s": round(float(passes[-1]["seconds"] or 0.0), 1) if passes else None,
        "seconds_per_pass": round(seconds / max(len(passes), 1), 2),
        "status": solution.status, "gap": solution.gap, "objective": solution.objective,
        "driver_peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main() -> None:
    """Parse the options, run once, print and append the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--backend", choices=["local", "dask"], default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-customers", type=int, default=1 << 18)
    parser.add_argument("--gap", type=float, default=1e-3)
    parser.add_argument("--max-iterations", type=int, default=60)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repair", choices=["driver", "shards"], default="driver",
                        help="solver.repair: where the plans are repaired (and refilled)")
    parser.add_argument("--refill", choices=["shards", "driver"], default="shards",
                        help="with --repair shards: the refill on the shards or the driver")
    parser.add_argument("--measure", action="store_true",
                        help="count the local executor's bytes per pass (pickled payloads)")
    parser.add_argument("--scores", type=Path, default=None,
                        help="run the pipeline on the instance written here as a scores dataset")
    parser.add_argument("--parts", type=int, default=8, help="Parquet parts of the scores table")
    parser.add_argument("--kernel-cache", type=Path, default=None,
                        help="solver.kernel_cache of the dask backend")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the result goes")
    args = parser.parse_args()
    record = run(args)
    print(json.dumps(record, indent=2, default=str))
    instance = (f"c{args.customers}-o{args.offers}-k{args.candidates}-{args.backend}"
                + (f"-repair-{args.repair}" if args.repair != "driver" else "")
                + (f"-refill-{args.refill}" if args.repair == "shards" else "")
                + (f"-w{args.workers}" if args.backend == "dask" else "")
                + ("-scores" if args.scores is not None else ""))
    print(write_result("cluster", instance, record, args.results))


if __name__ == "__main__":
    main()
