"""Coupled budgets (audit28 finding 7): offer budgets, a funder budget over most offers, the global
budget and channels with a contact budget binding together (docs/method.md,
"Starting prices and coupled budgets").

    python benchmarks/coupled.py                  # the audit's repro, about a minute
    python benchmarks/coupled.py --out /tmp/cpl   # keep the data folder and run folders there
    python benchmarks/coupled.py --customers 20000 --scale 10   # ten times the customers

The instance is the audit's, rebuilt from scratch: ``offeropt demo-data --customers 2000 --offers
60 --seed 1`` (its offers' ``funded_by`` puts 52 of the 60 on ``retailer``), plus

- ``funders``: ``retailer`` with budget 900 and ``min_redemptions`` 600;
- ``offer_groups``: ``g1`` = offers 1043, 1012, 1017, one per customer;
- ``channels``: ``email`` capacity 5,000 at 0.01 a contact, ``sms`` 800 at 0.05; consent
  (``customer_channels``): email for every customer whose ID is not a multiple of 10, sms for
  even IDs;
- the demo rules with ``global_budget = 1500`` and, with channels, ``contact_budget = 60``.

Two runs: with the channel tables and the contact budget (``channels``, the audit's 6.9 % gap),
and without them (``funders``, its 1.7 %). Per run: objective, upper bound, gap, status, passes
and the solve's seconds. Writes ``benchmarks/results/coupled_<instance>_<commit>.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stamp import RESULTS, stamp, write_result  # noqa: E402

from optimizer.apps.pipeline import run_scenario  # noqa: E402
from optimizer.apps.synthetic import write_demo_data  # noqa: E402
from optimizer.core.config import load_scenario  # noqa: E402

RULES: dict[str, Any] = {
    "max_offers_per_customer": 5, "max_offers_per_category": 1, "cooldown_weeks": 4,
    "max_offers_per_window": 8, "window_weeks": 4, "global_budget": 1500, "budget_scale": 1.0,
    "sensitive_categories": ["FAMILY PLANNING", "DIETARY AID PRODUCTS", "INFANT FORMULA"],
    "sensitive_policy": "opt_in"}


def build(data: Path, customers: int, offers: int, seed: int, channels: bool, scale: float
          ) -> None:
    """The audit's data folder (module docstring) in ``data``, its budgets, capacities and
    targets times ``scale``."""
    write_demo_data(data, customers, offers, seed)
    pl.DataFrame({"funded_by": ["retailer"], "budget": [900.0 * scale],
                  "min_redemptions": [600.0 * scale]}
                 ).write_parquet(data / "funders.parquet")
    pl.DataFrame({"group_id": ["g1"] * 3, "offer_id": [1043, 1012, 1017],
                  "max_per_customer": [1] * 3}).write_parquet(data / "offer_groups.parquet")
    if not channels:
        return
    pl.DataFrame({"channel_id": ["email", "sms"],
                  "capacity": [round(5000 * scale), round(800 * scale)],
                  "cost_per_contact": [0.01, 0.05]}).write_parquet(data / "channels.parquet")
    ids = pl.read_parquet(data / "customers.parquet").get_column("customer_id")
    pl.concat([pl.DataFrame({"customer_id": ids.filter(ids % 10 != 0), "channel_id": "email"}),
               pl.DataFrame({"customer_id": ids.filter(ids % 2 == 0), "channel_id": "sms"})]
              ).write_parquet(data / "customer_channels.parquet")


def run(root: Path, name: str, channels: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the instance; its figures."""
    data = root / f"data-{name}"
    if data.exists():
        shutil.rmtree(data)
    build(data, args.customers, args.offers, args.seed, channels, args.scale)
    rules = {**RULES, "global_budget": RULES["global_budget"] * args.scale,
             **({"contact_budget": 60.0 * args.scale} if channels else {})}
    lines = [f'name = "{name}"', "week = 40", f'data = "{data}"', f'output = "{root / name}"',
             "", "[rules]", *(f"{k} = {json.dumps(v)}" for k, v in rules.items()),
             "", "[solver]", "gap_tolerance = 0.001", "time_limit_s = 600", "seed = 0"]
    path = root / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    result = run_scenario(load_scenario(path), write=False)
    solver = result.manifest["solver"]
    figures = {"objective": result.objective, "upper_bound": result.bound, "gap": result.gap,
               "status": solver["status"], "passes": solver["iterations"],
               "solve_s": result.manifest["seconds"]["solve"],
               # the passes' own seconds (the solve's also hold the polish, without channels)
               "passes_s": max(e["seconds"] for e in solver["trace"]),
               "first_pass_s": solver["trace"][0]["seconds"],
               "polish": solver.get("polish"),
               "run_s": time.perf_counter() - started}
    print(f"{name}: objective {figures['objective']:,.2f}  bound {figures['upper_bound']:,.2f}  "
          f"gap {100 * figures['gap']:.2f} %  {figures['status']}  {figures['passes']} passes  "
          f"solve {figures['solve_s']:.1f} s (passes {figures['passes_s']:.1f} s)")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--offers", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="budgets, capacities and targets times this (e.g. with --customers)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stamped = stamp()  # at the start: the code that runs
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs = {name: run(root, name, channels, args)
                for name, channels in (("channels", True), ("funders", False))}
    instance = f"c{args.customers}-o{args.offers}-s{args.seed}" + (
        f"-x{args.scale:g}" if args.scale != 1 else "")
    path = write_result("coupled", instance, {**stamped, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": runs}, args.results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
