"""``offeropt simulate`` at the issue's size, one seed per process, with a stamped result file.

Runs ``offeropt simulate SCENARIO --customers 20000 --offers 200 --weeks 12 --strategies
customer_first,offer_first,popular,random --seeds 1 --first-seed S`` for each seed (a process
each, so each seed's wall time and peak memory are its own), under the machine-wide lock of
heavy runs when ``--lock`` names it (taken before the seed's clock starts), and writes a stamped result file in ``benchmarks/results/``
after every seed (commit, versions, machine, per seed: seconds, peak memory, each strategy's
incremental margin and spend, and whether customer_first beat offer_first), so an interrupted
benchmark keeps the seeds it finished. The file is named ``simulate_<N>x<M>x<W>_<commit>.json``.

    python benchmarks/simulate.py --seeds 5 --lock /work/wt/notes/bigbench.lock
    python benchmarks/simulate.py --table benchmarks/results/simulate_20000x200x12_<commit>.json

``--table FILE`` prints a result file as the README's Markdown table (means over its seeds).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from completejourney import stamp  # noqa: E402  (the same stamp as the other result files)

ROOT = Path(__file__).resolve().parent.parent


def run_one(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One seed in its own process: wall seconds, peak memory (GB) and its simulate.json."""
    out = args.out / f"seed{seed}"
    cmd = [sys.executable, "-m", "optimizer", "simulate", str(Path(args.scenario).resolve()),
           "--customers", str(args.customers), "--offers", str(args.offers),
           "--weeks", str(args.weeks), "--strategies", args.strategies, "--seeds", "1",
           "--first-seed", str(seed), "--workers", str(args.workers), "--out", str(out),
           "--quiet"]
    with open(args.lock, "a") if args.lock else open(os.devnull) as lock:
        if args.lock:  # the wait for the lock is not the seed's time
            fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=args.code)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"seed {seed}: offeropt simulate failed ({status})")
    result = json.loads((out / "simulate.json").read_text())
    strategies = result["strategies"]
    row = {"seed": seed, "seconds": round(seconds, 1),
           "peak_memory_gb": round(usage.ru_maxrss / 1024 ** 2, 2),
           "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
           "strategies": {s: {k: e[k][0] for k in ("incremental_margin", "incremental_sales",
                                                    "spend", "planned_spend", "redemptions",
                                                    "customers_retained", "customer_equity")}
                          for s, e in strategies.items()}}
    if "customer_first" in strategies and "offer_first" in strategies:
        row["customer_first_beats_offer_first"] = (
            strategies["customer_first"]["incremental_margin"][0]
            > strategies["offer_first"]["incremental_margin"][0])
    return row


def markdown_table(result: dict[str, Any]) -> str:
    """The README's table: per strategy the mean over seeds of each figure, and the wins."""
    rows = result["seeds"]
    names = list(rows[0]["strategies"])
    figures = ("incremental_margin", "incremental_sales", "planned_spend", "spend",
               "redemptions", "customers_retained", "customer_equity")
    lines = ["| strategy | " + " | ".join(f.replace("_", " ") for f in figures) + " |",
             "|---|" + "---:|" * len(figures)]
    for name in names:
        means = [sum(r["strategies"][name][f] for r in rows) / len(rows) for f in figures]
        lines.append(f"| {name} | " + " | ".join(f"{m:,.0f}" for m in means) + " |")
    setup = result["setup"]
    margins = ", ".join(f"{r['strategies']['customer_first']['incremental_margin']:,.0f} vs "
                        f"{r['strategies']['offer_first']['incremental_margin']:,.0f}"
                        for r in rows)
    lines += ["", f"{setup['customers']:,} customers x {setup['offers']} offers x "
              f"{setup['weeks']} weeks, means over {len(rows)} seed(s); customer-first beats "
              f"offer-first in {result['customer_first_beats_offer_first']} (incremental margin "
              f"per seed: {margins}); {result['seconds_per_seed']} s per seed, peak "
              f"{result['peak_memory_gb']} GB, commit {result['commit'][:8]}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the seeds one by one and write the stamped result after each."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "simulate.toml")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--offers", type=int, default=200)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--strategies", default="customer_first,offer_first,popular,random")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1,
                        help="simulate --workers: processes planning a week's strategies side "
                             "by side (the seed's peak memory is then its largest process's)")
    parser.add_argument("--lock", type=Path, default=None,
                        help="run each seed under flock on this lock file")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="folder whose optimizer package the seeds run (python -m optimizer "
                             "from there): a snapshot (git archive) of the stamped commit keeps "
                             "a long benchmark on one code while the worktree moves on")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "simulate")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--table", type=Path, default=None,
                        help="print this result file as the README's table and exit")
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return 0
    stamped = stamp()  # at the start: the code that runs
    setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
             if k not in ("out", "results", "lock", "code")}
    setup["scenario"] = str(Path(args.scenario).resolve().relative_to(ROOT))
    rows: list[dict[str, Any]] = []
    args.results.mkdir(parents=True, exist_ok=True)
    size = f"{args.customers}x{args.offers}x{args.weeks}"
    path = args.results / f"simulate_{size}_{stamped['commit'][:8]}.json"
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows.append(run_one(args, seed))
        wins = [r["customer_first_beats_offer_first"] for r in rows
                if "customer_first_beats_offer_first" in r]
        result = {**stamped, "setup": setup, "seeds": rows,
                  "customer_first_beats_offer_first": f"{sum(wins)} of {len(wins)} seeds",
                  "seconds_per_seed": [r["seconds"] for r in rows],
                  "peak_memory_gb": max(r["peak_memory_gb"] for r in rows)}
        path.write_text(json.dumps(result, indent=1) + "\n")
        r = rows[-1]
        print(f"seed {seed}: {r['seconds']:.0f} s ({r['cpu_seconds']:.0f} s CPU), "
              f"{r['peak_memory_gb']:.2f} GB; incremental margin "
              + ", ".join(f"{s} {v['incremental_margin']:,.0f}"
                          for s, v in r["strategies"].items()), flush=True)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
