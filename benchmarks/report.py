"""Render the README's short performance table and docs/performance.md's tables from the newest
stamped result files in ``benchmarks/results/`` (written by ``scale.py``, ``completejourney.py``
and ``simulate.py``, see ``benchmarks/stamp.py``).

    python benchmarks/report.py           # rewrite the generated sections in place
    python benchmarks/report.py --check   # exit 1 if a generated section differs (hand edits)

Each generated section lies between ``<!-- report.py: NAME -->`` and ``<!-- report.py: end
NAME -->``; the text outside the markers is left alone. ``tests/test_perf_report.py`` checks
that the committed files equal what this renders from the committed result files.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

# the README's rows: (benchmark, instance key) of the result file, newest first by date
SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("scenario", "demo"),
    ("e2e", "scores-c1000000-o500-k50-share0.4"),
    ("e2e", "scores-c1000000-o500-k50-bs0.3-gb300000"),
    ("e2e", "tx-c1000000-o500-share0.4"),
)
_STAGES = ("load", "features", "eligibility", "solve", "bound_all_candidates", "write")


def load_results(folder: Path = RESULTS) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest result file (by its stamp's date, then name) of each (benchmark, instance)."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        if path.name.startswith("simulate_"):  # seeds add up across files: each file is kept
            newest[("simulate", path.stem)] = {**result, "file": path.name}
            continue
        if "benchmark" not in result:  # files written before result files named their benchmark
            continue
        key = (result["benchmark"], result["instance"])
        if key not in newest or result["date"] >= newest[key]["date"]:
            newest[key] = {**result, "file": path.name}
    return newest


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _num(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    if x is None:
        return ""
    return f"{100 * x:.3f} %" if x < 0.01 else f"{100 * x:.2f} %"


def _stamp(result: dict[str, Any]) -> str:
    dirty = " + uncommitted changes" if result.get("dirty") else ""
    load = result["machine"].get("load_average") or []
    at = f", load {load[0]:.1f}" if load else ""
    return f"{result['commit'][:8]}{dirty}, {result['date'][:10]}{at}"


def describe(result: dict[str, Any]) -> str:
    """A row's instance in words, from the arguments the benchmark ran with."""
    args, run = result["args"], result["runs"][-1]
    if result["benchmark"] == "scenario":
        return (f"`{Path(args['scenario']).name}`: {run['customers']:,} customers x "
                f"{run['offers']} offers, {run['candidate_pairs']:,} candidate pairs")
    text = f"{run['customers']:,} customers x {run['offers']} offers, "
    text += ("built-in affinity from transactions" if args["transactions"]
             else f"{args['scores_per_customer']} scored pairs each")
    if args.get("budget_scale", 1.0) != 1.0:
        text += f", budgets x{args['budget_scale']:g}"
    text += (f", global budget {args['global_budget']:,.0f}" if args.get("global_budget")
             else f", global budget {args['global_share']:g} of the unconstrained spend")
    for name, words in (("category_cap", "category cap"), ("kept", "pairs kept"),
                        ("memory_limit_gb", "memory limit GB")):
        if args.get(name) is not None:
            text += f", {words} {args[name]:g}"
    for name, words in (("channels", "channels"), ("groups", "exclusive offer families")):
        if args.get(name):
            text += f", {args[name]} {words}"
    if args.get("backend") == "dask":
        backend = run.get("backend") or {}
        peaks = ", ".join(f"{g:.2f}" for g in backend.get("worker_peak_gb") or [])
        text += (f", dask backend on a {args['workers']}-worker LocalCluster"
                 + (f" (the peak is the driver's; the workers' {peaks} GB)" if peaks else ""))
    return text + f", gap tolerance {args['gap']:g}"


def _runs(result: dict[str, Any], key: str) -> float | None:
    return _median([r.get(key) for r in result["runs"]])


def render_summary(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The README's table: one row per :data:`SUMMARY_ROWS` entry that has a result file."""
    lines = ["| instance | runs | wall | peak memory | gap | status, passes | measured at |",
             "|---|---|---|---|---|---|---|"]
    for key in SUMMARY_ROWS:
        if key not in results:
            continue
        r = results[key]
        last = r["runs"][-1]
        lines.append(f"| {describe(r)} | {len(r['runs'])} | {_num(_runs(r, 'wall_s'))} s | "
                     f"{_num(_runs(r, 'peak_rss_gb'), 2)} GB | {_pct(last['gap'])} | "
                     f"`{last['status']}`, {last['iterations']} | {_stamp(r)} |")
    return "\n".join(lines)


def render_runs(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """docs/performance.md's table of every end-to-end and scenario result: stage medians."""
    lines = ["| instance | runs | " + " | ".join(f"{s} s" for s in _STAGES)
             + " | wall s | peak RSS | objective | bound | gap | status, passes | measured at |",
             "|---|---|" + "---|" * len(_STAGES) + "---|---|---|---|---|---|---|"]
    for key in sorted(k for k in results if k[0] in ("scenario", "e2e")):
        r = results[key]
        last = r["runs"][-1]
        stages = [_num(_median([run["seconds"].get(s) for run in r["runs"]])) for s in _STAGES]
        lines.append(f"| {describe(r)} | {len(r['runs'])} | " + " | ".join(stages)
                     + f" | {_num(_runs(r, 'wall_s'))} | {_num(_runs(r, 'peak_rss_gb'), 2)} GB"
                     f" | {_num(last['objective'], 2)} | {_num(last['bound'], 2)} | "
                     f"{_pct(last['gap'])} | `{last['status']}`, {last['iterations']} | "
                     f"{_stamp(r)} |")
    return "\n".join(lines)


def render_versions(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """docs/performance.md's list of the result files behind the tables, with their versions."""
    lines = []
    for key in sorted(k for k in results if k[0] in ("scenario", "e2e")):
        r = results[key]
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)
        lines.append(f"- `benchmarks/results/{r['file']}`: python {r['python']}, {versions}")
    return "\n".join(lines)


SIMULATE_SIZE = (20_000, 200, 12)  # the size, the README's simulate table
_STRATEGIES = ("customer_first", "offer_first", "popular", "random")


def simulate_seeds(results: dict[tuple[str, str], dict[str, Any]]
                   ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(seed row, its result file) of every seed run at :data:`SIMULATE_SIZE`, in seed order;
    a seed in several files is taken from the newest (``benchmarks/simulate.py`` writes a file
    per commit, so the seeds of a long benchmark may come from several)."""
    rows: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for key, r in sorted(results.items(), key=lambda kv: (kv[1]["date"], kv[1]["file"])):
        setup = r["setup"] if key[0] == "simulate" else {}
        if (setup.get("customers"), setup.get("offers"), setup.get("weeks")) != SIMULATE_SIZE:
            continue
        for row in r["seeds"]:
            rows[row["seed"]] = (row, r)
    return [rows[seed] for seed in sorted(rows)]


def render_simulate(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The README's simulate table: per seed, each strategy's incremental margin and realised
    spend, the seed's CPU and wall seconds and peak memory, and where it was measured."""
    seeds = simulate_seeds(results)
    if not seeds:
        return "(no simulate result at this size yet)"
    lines = ["| seed | " + " | ".join(_STRATEGIES) + " | CPU s | wall s | peak GB | measured at |",
             "|---|" + "---:|" * (len(_STRATEGIES) + 3) + "---|"]
    for row, r in seeds:
        cells = [f"{row['strategies'][s]['incremental_margin']:,.0f} / "
                 f"{row['strategies'][s]['spend']:,.0f}" for s in _STRATEGIES]
        workers = r["setup"].get("workers", 1)
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + f" | {_num(row['cpu_seconds'], 0)}"
                     f" | {_num(row['seconds'], 0)} | {row['peak_memory_gb']:.2f} | {_stamp(r)}"
                     f", {workers} worker{'s' if workers > 1 else ''} |")
    means = [f"{statistics.mean(x['strategies'][s]['incremental_margin'] for x, _ in seeds):,.0f}"
             f" / {statistics.mean(x['strategies'][s]['spend'] for x, _ in seeds):,.0f}"
             for s in _STRATEGIES]
    wins = sum(x["strategies"]["customer_first"]["incremental_margin"]
               > x["strategies"]["offer_first"]["incremental_margin"] for x, _ in seeds)
    lines.append("| mean | " + " | ".join(means) + " | | | | |")
    return "\n".join(lines + ["", f"Customer-first earns more incremental margin than "
                               f"offer-first in {wins} of {len(seeds)} seeds."])


SECTIONS: dict[str, dict[str, Callable[[dict[tuple[str, str], dict[str, Any]]], str]]] = {
    "README.md": {"summary": render_summary, "simulate": render_simulate},
    "docs/performance.md": {"runs": render_runs, "versions": render_versions},
}


def render_text(text: str, sections: dict[str, Callable[..., str]],
                results: dict[tuple[str, str], dict[str, Any]], where: str = "") -> str:
    """``text`` with each named section between its markers replaced by its rendering."""
    for name, render in sections.items():
        pattern = re.compile(rf"(<!-- report\.py: {name} -->\n)(?:.*?\n)?(<!-- report\.py: "
                             rf"end {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{where}: no '<!-- report.py: {name} -->' ... '<!-- report.py: "
                             f"end {name} -->' markers")
        body = render(results)
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def rendered(root: Path = ROOT, folder: Path = RESULTS) -> dict[Path, tuple[str, str]]:
    """Each generated file: (its text now, its text as rendered from ``folder``)."""
    results = load_results(folder)
    out = {}
    for name, sections in SECTIONS.items():
        path = root / name
        text = path.read_text()
        out[path] = (text, render_text(text, sections, results, name))
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated sections, or with ``--check`` report those that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a generated section differs")
    args = parser.parse_args(argv)
    stale = []
    for path, (now, new) in rendered().items():
        if now != new:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    verb = "differs from its result files" if args.check else "rewritten"
    for path in stale:
        print(f"{path.relative_to(ROOT)}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
