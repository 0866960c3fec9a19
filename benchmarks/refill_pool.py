"""The refill pool's bytes, on the shards or on the driver (issue 21: a Dask worker's peak).

Usage (heavy runs under the machine-wide lock):

    flock /work/wt/notes/bigbench.lock python benchmarks/refill_pool.py \
        --customers 1000000 --offers 500 --candidates 50 --refill shards

Builds the seeded instance of ``benchmarks/cluster.py`` (``--category-cap``: with a cap of offers
per category, whose pool entries carry category keys), solves it in this process (no polish)
with the repair and the refill on shards of ``--shard-customers`` (``--refill shards``: each
shard's :class:`~optimizer.solve.lagrangian.refill_shards.ShardPool`, as a Dask worker holds it)
or on the driver (``--refill driver``: :func:`~optimizer.solve.lagrangian.repair.refill`'s pool),
and records every pool built: its entries, owners (customers with a free slot), the bytes its
arrays hold and their bytes per entry, and the numpy bytes its build and each round's proposals
allocate at their peak (``tracemalloc``: the compiled kernels' own arrays are not counted). The
plan's objective and an md5 of its chosen pairs say whether two commits gave the same plan. Writes
a stamped result (``benchmarks/stamp.py``) to
``benchmarks/results/refill_pool_{instance}_{commit}.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import instance  # noqa: E402
from stamp import RESULTS, stamp, write_result  # noqa: E402

from optimizer.core.config import Solver  # noqa: E402
from optimizer.solve import solve  # noqa: E402
from optimizer.solve.lagrangian import refill_shards, repair  # noqa: E402
from optimizer.solve.lagrangian.executor import ShardExecutor  # noqa: E402


def _nbytes(pool: Any) -> int:
    """Bytes the pool's arrays hold (a shard's last proposals left out: they are per round)."""
    return sum(v.nbytes for f in dataclasses.fields(pool) if f.name != "proposed"
               and isinstance(v := getattr(pool, f.name), np.ndarray))


def _traced(fn: Callable, peaks: list[int]) -> Callable:
    """``fn``, the numpy bytes each call allocates at its peak appended to ``peaks``."""
    def call(*args: Any, **kwargs: Any) -> Any:
        tracemalloc.start()
        try:
            return fn(*args, **kwargs)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    return call


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, solve with the pool builders watched, measure."""
    stamped = stamp()  # taken first: it names the code that ran
    problem = instance(args.customers, args.offers, args.candidates, args.seed)
    if args.category_cap is not None:
        problem = dataclasses.replace(problem, max_per_category=args.category_cap)
    pools: list[dict[str, Any]] = []
    build_peaks: list[int] = []
    round_peaks: list[int] = []

    def watched(module: Any, name: str, owners: Callable[[Any], int]) -> None:
        build = _traced(getattr(module, name), build_peaks)

        def kept(*a: Any, **kw: Any) -> Any:
            pool = build(*a, **kw)
            if pool is not None:
                entries = int(pool.offer.shape[0])
                held = _nbytes(pool)
                pools.append({"entries": entries, "owners": owners(pool), "bytes": held,
                              "bytes_per_entry": round(held / max(entries, 1), 2),
                              "build_numpy_peak": build_peaks[-1]})
            return pool
        setattr(module, name, kept)

    if args.refill == "shards":
        watched(refill_shards, "shard_pool", lambda p: int(p.slots.shape[0]))
        refill_shards.propose = _traced(refill_shards.propose, round_peaks)
    else:
        watched(repair, "_pool", lambda p: int(p.slots_left.shape[0]))
    ShardExecutor.refill_on_shards = args.refill == "shards"
    settings = Solver(backend="local", polish_pairs=0, gap_tolerance=args.gap,
                      max_iterations=args.max_iterations, time_limit_s=args.time_limit,
                      shard_customers=args.shard_customers,
                      repair="shards" if args.refill == "shards" else "driver")
    t0 = time.perf_counter()
    solution = solve(problem, settings)
    seconds = time.perf_counter() - t0
    plan = hashlib.md5()
    for mask in solution.chosen:
        plan.update(np.packbits(mask).tobytes())
    held = [p for p in pools if p["entries"]]
    return {
        **stamped, "refill": args.refill, "shard_customers": args.shard_customers,
        "customers": args.customers, "offers": args.offers, "candidates": args.candidates,
        "category_cap": args.category_cap, "pools": len(pools),
        "largest_pool_bytes": max((p["bytes"] for p in held), default=0),
        "bytes_per_entry": sorted({p["bytes_per_entry"] for p in held}),
        # the first call left out: it may compile (or load) the kernels, whose Python objects
        # are traced too
        "build_numpy_peak_max": max(build_peaks[1:], default=0),
        "round_numpy_peak_max": max(round_peaks[1:], default=0),
        "last_pools": held[-4:], "solve_s": round(seconds, 1),
        "objective": solution.objective, "plan_md5": plan.hexdigest(),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main() -> None:
    """Parse the options, run once, print and write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--category-cap", type=int, default=None)
    parser.add_argument("--refill", choices=["shards", "driver"], default="shards")
    parser.add_argument("--shard-customers", type=int, default=1 << 20)
    parser.add_argument("--gap", type=float, default=1e-3)
    parser.add_argument("--max-iterations", type=int, default=60)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the result goes")
    args = parser.parse_args()
    record = run(args)
    print(json.dumps(record, indent=2, default=str))
    name = (f"c{args.customers}-o{args.offers}-k{args.candidates}-{args.refill}"
            + (f"-cat{args.category_cap}" if args.category_cap is not None else ""))
    print(write_result("refill_pool", name, record, args.results))


if __name__ == "__main__":
    main()
