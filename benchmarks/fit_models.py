"""Time the fitting of the customer-first models at scale.

Usage: python benchmarks/fit_models.py [--customers 1000000] [--offers 500] [--data DIR] [--keep]

Writes demo data with ``write_demo_data`` into a temporary folder (or uses ``--data``), fits
features, BG/NBD, Gamma-Gamma and the redemption propensity for week 40 exactly as ``offeropt
run`` does (``optimizer.scoring.fit.fit_scoring``), and prints one table: customers, transactions,
seconds per stage, peak memory (``resource.getrusage``) and the log-likelihoods. The generated
data are deleted afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.core.config import scenario_from_dict
from optimizer.io.validate import load_inputs
from optimizer.scoring.features import offer_categories
from optimizer.scoring.fit import fit_scoring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--offers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = args.data or Path(tempfile.mkdtemp(prefix="fitbench-", dir="/tmp"))
    try:
        tick = time.perf_counter()
        if args.data is None:
            write_demo_data(folder, args.customers, args.offers, args.seed)
        generate = time.perf_counter() - tick
        tick = time.perf_counter()
        inputs = load_inputs(folder)
        load = time.perf_counter() - tick
        scenario = scenario_from_dict({
            "name": "bench", "week": 40, "data": str(folder), "output": str(folder / "run"),
            "rules": {"sensitive_categories": list(SENSITIVE_CATEGORIES)}})
        tick = time.perf_counter()
        scoring = fit_scoring(inputs, scenario, offer_categories(inputs), 40)
        total = time.perf_counter() - tick
        tick = time.perf_counter()
        scoring.model.score(0, min(50_000, inputs.n_customers))
        score_chunk = time.perf_counter() - tick
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        ltv, prop = scoring.lifetime_value, scoring.propensity
        rows = [
            ("customers", f"{inputs.n_customers:,}"), ("offers", f"{inputs.n_offers:,}"),
            ("transactions", f"{inputs.transactions.height:,}"),
            ("generate data s", f"{generate:.1f}"), ("load + validate s", f"{load:.1f}"),
            *[(f"{name} s", f"{seconds:.1f}") for name, seconds in scoring.seconds.items()],
            ("fit_scoring total s", f"{total:.1f}"),
            ("score one chunk of 50,000 s", f"{score_chunk:.2f}"),
            ("peak memory GB", f"{peak_gb:.2f}"),
            ("BG/NBD log-likelihood", f"{ltv.get('bg_nbd', {}).get('log_likelihood', float('nan')):,.1f}"),
            ("BG/NBD params", str({k: round(v, 4) for k, v in ltv.get('bg_nbd', {}).get('params', {}).items()})),
            ("Gamma-Gamma log-likelihood", f"{ltv.get('gamma_gamma', {}).get('log_likelihood', float('nan')):,.1f}"),
            ("Gamma-Gamma params", str({k: round(v, 4) for k, v in ltv.get('gamma_gamma', {}).get('params', {}).items()})),
            ("lifetime value fallback", str(ltv.get("fallback"))),
            ("propensity", f"{prop.get('target')} on {prop.get('pairs', 0):,} pairs, "
                           f"log-likelihood {prop.get('log_likelihood', float('nan')):,.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    finally:
        if args.data is None and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
