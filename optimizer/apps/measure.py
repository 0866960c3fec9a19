"""``offeropt measure``: what the plans earned, treated customers against their control groups.

For each run folder (and pooled over them), over the outcome window (the run's week and the
``weeks - 1`` weeks after it; by default every outcome week from the run's week on), per customer:

- ``redemptions``: rows of the outcome ``redemptions`` table;
- ``sales``: the sum of ``sales_value`` of the outcome ``transactions``;
- ``margin``: ``margin_rate x sales`` minus the discount cost of her redemptions (each at its
  offer's ``discount`` in the run's offers table; redemptions of offers it does not know cost 0).

Arms. In **total**, by intention to treat: every customer the plan reached outside the universal
control (treated: those the run sent at least one offer and those whose every planned send was
withheld by the per-offer control) against its universal control (``controls`` rows with reason
``universal_holdout``: hashed-out customers the plan would have reached). **Per offer** (offers with a per-offer control only): the customers sent that offer
against its per-offer control (reason ``offer_holdout``). Either way both arms were picked by the same plan and split by a hash that
knows nothing of it (optimizer/model/holdout.py), so the difference in means is the lift of the plan
(the offer) on the customers it chose.

Estimate: the difference in means of the CUPED-adjusted outcome ``y - theta (x - mean x)``, with
``x`` the customer's sales in the ``pre_weeks`` weeks before the run's week (the run's own input
transactions) and ``theta = cov(x, y) / var(x)`` over both arms. Interval: percentile bootstrap
over customers (``bootstrap`` resamples of the customers, with replacement, seeded; a customer in
several runs is resampled with all her rows, so the pooled interval allows for her weeks being
alike), ``theta`` re-estimated in each resample. Pooled over runs: the runs' differences weighted
by ``n_t n_c / (n_t + n_c)``; per offer, pooled over runs by offer_id. ``mde`` is the minimum
detectable effect at the arms' sizes: ``(z(1 - alpha/2) + z(power)) x`` the bootstrap standard
error. ``significant``: the interval excludes 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.apps.measure_stats import (
    _bootstrap,
    _estimates,
    _finite,
    _pooled,
    _sums,
    _z,
)
from optimizer.core.errors import InputError, ScenarioError
from optimizer.core.numerics import group_sums
from optimizer.io.load import unify_id_type
from optimizer.io.manifest import read_manifest
from optimizer.io.runview import read_run_arm
from optimizer.io.typed_ids import ids_are_int, read_master, read_referencing
from optimizer.io.validate import read_checked

METRICS = ("sales", "redemptions", "margin")
UNIVERSAL, PER_OFFER = "universal_holdout", "offer_holdout"


@dataclass(frozen=True)
class Settings:
    """How ``measure`` estimates; every field has the CLI's default."""

    weeks: int | None = None
    pre_weeks: int = 26
    margin_rate: float = 0.25
    bootstrap: int = 1000
    seed: int = 0
    alpha: float = 0.05
    power: float = 0.8


# --------------------------------------------------------------------------------------------
# reading


def read_outcomes(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The outcome folder's ``transactions`` and ``redemptions``, typed and checked like inputs
    (bad tables raise :class:`InputError` naming the table and column)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("transactions", None, f"outcome folder not found: {folder}")
    # the inputs' row checks (a NaN or a 1e300 sale made every result null, silently)
    t = read_checked(folder, "transactions")
    r = read_checked(folder, "redemptions", "the outcomes' observed redemptions")
    return t.select("customer_id", "week", "sales_value"), r.select("customer_id", "offer_id",
                                                                    "week")


@dataclass
class _Run:
    """One run's customers and arms, IDs as the run's input typed them."""

    path: Path
    week: int
    data: Path
    treated: pl.DataFrame        # customer_id, offer_id: the sends
    controls: pl.DataFrame       # customer_id, offer_id (null: universal)
    offers: pl.DataFrame         # offer_id, discount
    pre: pl.DataFrame            # customer_id, x (pre-period sales)
    ids_int: dict[str, bool]
    customers_sha256: str | None = None  # the manifest's, of the customers table it planned


def _load_run(run_dir: Path, pre_weeks: int) -> _Run:
    run_dir = Path(run_dir)
    try:
        manifest = read_manifest(run_dir)
        week, data = manifest.week, manifest.data_dir
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError("manifest", None, f"{run_dir}: not a run folder of offeropt run "
                         f"(manifest.json: {type(exc).__name__}: {exc})") from None
    # IDs typed as the run typed them (a text customer_id in transactions beside integer
    # customers, which run accepts, failed the pre-period's join: exit 70)
    offers = read_master(data, "offers")
    ids_int = ids_are_int(customer_id=read_master(data, "customers"), offer_id=offers)
    sends = read_run_arm(run_dir, "assignments", ids_int)
    controls = read_run_arm(run_dir, "controls", ids_int, ("reason",))
    tx = read_referencing(data, "transactions", {"customer_id": ids_int["customer_id"]})
    pre = _sum_by(tx.filter((pl.col("week") >= week - pre_weeks) & (pl.col("week") < week)),
                  {"x": "sales_value"})
    customers = (manifest.data.get("inputs") or {}).get("customers")
    sha = customers.get("sha256") if isinstance(customers, dict) else None
    return _Run(run_dir, week, data, sends, controls,
                offers.select("offer_id", pl.col("discount").cast(pl.Float64)), pre, ids_int,
                sha if isinstance(sha, str) else None)


# --------------------------------------------------------------------------------------------
# customers, arms and outcomes


def _weeks_held(tx: pl.DataFrame, red: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """Per outcome table with rows, its first and last week."""
    return {name: (int(f.select(pl.col("week").min()).item()),
                   int(f.select(pl.col("week").max()).item()))
            for name, f in (("transactions", tx), ("redemptions", red)) if f.height}


def _outcomes_for(run: _Run, tx: pl.DataFrame, red: pl.DataFrame, settings: Settings,
                  held: dict[str, tuple[int, int]], folder: Path
                  ) -> tuple[pl.DataFrame, list[int]]:
    """Per customer of the outcome tables: sales, redemptions and discount cost in the run's
    window; and the window's first and last week. A window past the transactions' last week is
    bad input: its weeks would count as weeks without sales, diluting the lift."""
    # sales come from the transactions: past their last week every customer's sales would read
    # 0, whatever weeks the redemptions go on to (those bound the window without transactions)
    latest = (held["transactions"][1] if "transactions" in held
              else max([hi for _, hi in held.values()] or [0]))
    if latest < run.week:
        raise InputError("transactions", "week", f"the outcome tables have no week at or "
                         f"after the run's week {run.week} ({run.path})")
    last = latest - run.week + 1 if settings.weeks is None else settings.weeks
    window = [run.week, run.week + last - 1]
    if window[1] > latest:
        holds = ", ".join(f"{name} weeks {lo}..{hi}" for name, (lo, hi) in held.items())
        raise InputError("transactions", "week", f"--weeks {last} asks for weeks "
                         f"{window[0]}..{window[1]} after the run {run.path} (week {run.week}), "
                         f"but the outcome tables in {folder} hold {holds}: the weeks after "
                         f"{latest} would count as weeks without sales and dilute the lift "
                         f"(give --weeks {latest - run.week + 1} or less, or outcomes through "
                         f"week {window[1]})")
    # an ID no customer of the run can have (a text "06" beside integer customers) reads null:
    # a customer in no arm, left out (its null key has no place in the per-customer sums)
    in_window = pl.col("week").is_between(window[0], window[1]) & pl.col("customer_id").is_not_null()
    cid = unify_id_type(tx.get_column("customer_id"), run.ids_int["customer_id"])
    sales = _sum_by(tx.with_columns(cid).filter(in_window), {"sales": "sales_value"})
    r = red.with_columns(unify_id_type(red.get_column("customer_id"), run.ids_int["customer_id"]),
                         unify_id_type(red.get_column("offer_id"), run.ids_int["offer_id"]))
    cost = _sum_by(r.filter(in_window).join(run.offers, on="offer_id", how="left",
                                            maintain_order="left")
                   .with_columns(pl.col("discount").fill_null(0.0), one=pl.lit(1.0)),
                   {"redemptions": "one", "cost": "discount"})
    both = sales.join(cost, on="customer_id", how="full", coalesce=True,
                      maintain_order="left_right")  # its first rows are an error's sample
    return both.with_columns(pl.col("sales", "redemptions", "cost").fill_null(0.0)), window


def _sum_by(frame: pl.DataFrame, sums: dict[str, str]) -> pl.DataFrame:
    """Per customer_id (sorted), the sums of the columns ``sums`` names, added in the frame's
    row order (a parallel group-by may add in any order, and change the last digits)."""
    keys = frame.get_column("customer_id")
    index = keys.rank("dense").cast(pl.Int64).to_numpy() - 1 if keys.len() else np.zeros(0, int)
    ids = keys.unique().sort()
    out: dict[str, pl.Series | np.ndarray] = {"customer_id": ids}
    for name, column in sums.items():
        out[name] = np.bincount(index, weights=frame.get_column(column).to_numpy(),
                                minlength=ids.len())
    return pl.DataFrame(out)


def program_arm(sends: pl.DataFrame, controls: pl.DataFrame) -> pl.DataFrame:
    """The total comparison's treated arm, by intention to treat: every customer the plan covered
    outside the universal control, whether or not her sends survived per-offer withholding (the
    customers of ``sends`` and of the ``offer_holdout`` rows of ``controls``), one ``customer_id``
    column, sorted. Leaving out those whose every planned send was withheld would pick the arm by
    the per-offer draws, which the universal control's customers never went through."""
    withheld = controls.filter(pl.col("reason") == PER_OFFER).select("customer_id")
    return pl.concat([sends.select("customer_id"), withheld]).unique().sort("customer_id")


def _rows(run: _Run, outcomes: pl.DataFrame, margin_rate: float) -> pl.DataFrame:
    """customer_id, offer_id (null: the total comparison), arm (0 treated, 1 control), x, y."""
    universal = run.controls.filter(pl.col("reason") == UNIVERSAL).select("customer_id")
    program = program_arm(run.treated, run.controls)
    clash = program.join(universal, on="customer_id", how="semi", maintain_order="left")
    if clash.height:
        raise InputError("controls", "customer_id", f"universal controls of {run.path} were sent "
                         "offers or hold per-offer control rows (offeropt check reports them)",
                         sample=clash.head(5).rows(named=True), count=clash.height)
    offer_type = run.treated.schema["offer_id"]
    total = pl.concat([
        program.with_columns(arm=pl.lit(0, pl.Int8)),
        universal.unique().with_columns(arm=pl.lit(1, pl.Int8)),
    ]).with_columns(offer_id=pl.lit(None, dtype=offer_type))
    per_offer = pl.concat([
        run.treated.with_columns(arm=pl.lit(0, pl.Int8)),
        run.controls.filter(pl.col("reason") == PER_OFFER).select("customer_id", "offer_id")
        .with_columns(pl.col("offer_id").cast(offer_type), arm=pl.lit(1, pl.Int8)),
    ])
    rows = pl.concat([total.select("customer_id", "offer_id", "arm"),
                      per_offer.select("customer_id", "offer_id", "arm")])
    return (rows.join(outcomes, on="customer_id", how="left", maintain_order="left")
            .join(run.pre, on="customer_id", how="left", maintain_order="left")
            .with_columns(pl.col("sales", "redemptions", "cost", "x").fill_null(0.0))
            .with_columns(margin=margin_rate * pl.col("sales") - pl.col("cost")))


def _refuse_repeated_runs(run_dirs: list[Path]) -> None:
    """One run folder given twice (``runs/w40 runs/w4*``) counted its customers and sales twice
    in the pooled figures (the treated and ``incremental_sales_total`` doubled): refused."""
    seen: dict[Path, Path] = {}
    for given in map(Path, run_dirs):
        key = given.resolve()
        if key in seen:
            raise ScenarioError(f"the run folder {given} is given twice (as {seen[key]} and "
                                f"{given}): each run is measured once, or its customers would "
                                "count twice in the pooled figures")
        seen[key] = given


def _load_runs(run_dirs: list[Path], pre_weeks: int) -> list[_Run]:
    """The runs of ``run_dirs``, with a control group between them. Two runs of one week for one
    customers table (the manifests' ``week`` and ``inputs.customers.sha256``: a copy of a run
    folder, or the week planned twice) are refused, as one folder given twice is: the same
    customers against the same outcome weeks would count twice in the pooled figures."""
    runs = [_load_run(Path(p), pre_weeks) for p in run_dirs]
    seen: dict[tuple[int, str], Path] = {}
    for run in (r for r in runs if r.customers_sha256 is not None):
        key = (run.week, str(run.customers_sha256))
        if key in seen:
            raise ScenarioError(f"the run folders {seen[key]} and {run.path} are runs of the "
                                f"same week {run.week} for the same customers (their "
                                "manifests' week and customers SHA-256): measure one of them, "
                                "or their customers would count twice in the pooled figures")
        seen[key] = run.path
    _require_controls(runs)
    return runs


def _require_controls(runs: list[_Run]) -> None:
    """Refuse runs none of which has a control group: nothing to measure against."""
    if all(run.controls.height == 0 for run in runs):
        raise InputError("controls", "reason", "no control group to measure against: the "
                         f"controls table of {', '.join(str(r.path) for r in runs)} is empty "
                         "(plan with [measurement] holdout_share or offer_holdout_share > 0)")


def _require_outcomes(run: _Run, outcome: pl.DataFrame, rows: pl.DataFrame,
                      window: list[int]) -> None:
    """Refuse a run none of whose customers (treated or control) has an outcome row in its
    window: its lift would read 0 with a zero-width interval, a measurement of nothing (the
    wrong outcome folder, weeks or customer IDs)."""
    arms = rows.select("customer_id").unique()
    if arms.height and outcome.join(arms, on="customer_id", how="semi").height == 0:
        raise InputError("transactions", "customer_id", f"the outcome tables hold no row in "
                         f"weeks {window[0]}..{window[1]} for any of the {arms.height:,} "
                         f"customers of {run.path} (treated or control): are they the weeks "
                         "after this run, with its customer IDs?",
                         sample=outcome.select("customer_id", "sales", "redemptions")
                         .head(5).rows(named=True))


# --------------------------------------------------------------------------------------------
# estimates


def _entry(point: np.ndarray, boot: np.ndarray, n_t: int, n_c: int, means: np.ndarray,
           settings: Settings) -> dict[str, Any]:
    """One comparison's figures (``point``: per metric; ``boot``: replicates x metrics)."""
    entry: dict[str, Any] = {"treated_customers": n_t, "control_customers": n_c}
    measurable = n_t > 0 and n_c > 0 and np.isfinite(point).all()
    lo_q, hi_q = 100 * settings.alpha / 2, 100 * (1 - settings.alpha / 2)
    k = _z(1 - settings.alpha / 2) + _z(settings.power)
    for j, metric in enumerate(METRICS):
        if measurable:
            ok = boot[:, j][np.isfinite(boot[:, j])]
            lo, hi = (np.percentile(ok, [lo_q, hi_q]) if ok.size > 1 else (np.nan, np.nan))
            se = float(np.std(ok, ddof=1)) if ok.size > 1 else math.nan
            values: tuple[float | None, ...] = (float(point[j]), float(lo), float(hi), se)
        else:
            values = (None, None, None, None)
        prefix = "" if metric == "sales" else f"{metric}_"
        entry[f"incremental_{metric}_per_customer"] = values[0]
        entry[f"{prefix}ci_low"] = _finite(values[1])
        entry[f"{prefix}ci_high"] = _finite(values[2])
        entry[f"{prefix}se"] = _finite(values[3])
        entry[f"treated_mean_{metric}"] = _finite(means[0, j])
        entry[f"control_mean_{metric}"] = _finite(means[1, j])
        if metric == "sales":
            entry["mde_sales_per_customer"] = (_finite(k * values[3])
                                               if values[3] is not None else None)
            low, high = values[1], values[2]
            entry["significant"] = bool(measurable and low is not None and high is not None
                                        and (low > 0 or high < 0))
            entry["incremental_sales_total"] = (values[0] * n_t if values[0] is not None
                                                else None)
    return entry


# measure.json's "definitions": what each figure means
DEFINITIONS = {
    "treated": "intention to treat: every customer the plan reached outside the universal "
               "control, sent an offer or not (every planned send withheld by the per-offer "
               "control); per offer: the customers sent that offer",
    "control": "the run's universal control the plan would have reached (per offer: its "
               "per-offer control)",
    "incremental_sales_per_customer": "difference in mean sales per customer over the "
                                       "window, treated minus control, CUPED-adjusted on "
                                       "pre-period sales",
    "margin": "margin_rate x sales minus the discount cost of the customer's redemptions",
    "mde_sales_per_customer": "smallest lift the arms' sizes detect at the power given "
                              "(two-sided test at the confidence level)",
}


def measure_runs(run_dirs: list[Path], outcomes: Path, settings: Settings = Settings()
                 ) -> dict[str, Any]:
    """Measure the runs in ``run_dirs`` against the outcome folder ``outcomes`` (see the module
    docstring); returns what ``measure.json`` holds."""
    if settings.bootstrap < 2:
        raise ValueError("bootstrap needs at least 2 resamples")
    _refuse_repeated_runs(run_dirs)
    tx, red = read_outcomes(outcomes)
    runs = _load_runs(run_dirs, settings.pre_weeks)
    frames: list[pl.DataFrame] = []
    groups: list[tuple[int, Any]] = []
    windows: list[list[int]] = []
    held = _weeks_held(tx, red)
    for r, run in enumerate(runs):
        outcome, window = _outcomes_for(run, tx, red, settings, held, Path(outcomes))
        windows.append(window)
        rows = _rows(run, outcome, settings.margin_rate)
        _require_outcomes(run, outcome, rows, window)
        # offers with a per-offer control: the others have nothing to compare with
        offers = (rows.filter(pl.col("offer_id").is_not_null() & (pl.col("arm") == 1))
                  .get_column("offer_id").unique().sort().to_list())
        rows = rows.filter(pl.col("offer_id").is_null() | pl.col("offer_id").is_in(offers))
        index = {None: len(groups)}
        groups.append((r, None))
        for offer in offers:
            index[offer] = len(groups)
            groups.append((r, offer))
        frames.append(rows.with_columns(
            group=pl.col("offer_id").replace_strict(
                {o: i for o, i in index.items() if o is not None}, default=index[None],
                return_dtype=pl.Int64),
            key=pl.col("customer_id").cast(pl.Utf8)).select("key", "group", "arm", "x",
                                                            *METRICS))
    # sums in one order, every time (a row repeated in an edited run keeps its place)
    rows = pl.concat(frames).sort("group", "key", "arm", maintain_order=True)
    cluster = rows.get_column("key").rank("dense").cast(pl.Int64).to_numpy() - 1
    n_clusters = int(cluster.max()) + 1 if cluster.size else 0
    group = rows.get_column("group").to_numpy().astype(np.int64)
    arm = rows.get_column("arm").to_numpy().astype(np.int64)
    x = rows.get_column("x").to_numpy().astype(np.float64)
    y = np.ascontiguousarray(rows.select(METRICS).to_numpy().astype(np.float64))
    k = len(METRICS)
    point = np.zeros((len(groups), 2, 3 + 3 * k))
    _sums(group, cluster, arm, x, y, np.ones(max(n_clusters, 1)), len(groups), point)
    boot = _bootstrap(group, cluster, arm, x, y, max(n_clusters, 1), len(groups),
                      settings.bootstrap, settings.seed)
    d_point, n_point, _ = _estimates(point)
    d_boot, n_boot, _ = _estimates(boot)

    def summary(members: list[int]) -> dict[str, Any]:
        n_t = int(n_point[members, 0].sum())
        n_c = int(n_point[members, 1].sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            means = point[members][:, :, 3:3 + k].sum(0) / n_point[members].sum(0)[:, None]
        return _entry(_pooled(d_point, n_point, members), _pooled(d_boot, n_boot, members),
                      n_t, n_c, means, settings)

    def per_offer(members: list[int]) -> list[dict[str, Any]]:
        by_offer: dict[Any, list[int]] = {}
        for g in members:
            by_offer.setdefault(groups[g][1], []).append(g)
        return [{"offer_id": offer, **summary(gs)} for offer, gs in sorted(
            ((o, gs) for o, gs in by_offer.items() if o is not None), key=lambda t: str(t[0]))]

    per_run = []
    for r, run in enumerate(runs):
        mine = [g for g, (rr, _) in enumerate(groups) if rr == r]
        per_run.append({"run": str(run.path), "week": run.week, "weeks": windows[r],
                        "total": summary([mine[0]]), "per_offer": per_offer(mine[1:])})
    totals = [g for g, (_, offer) in enumerate(groups) if offer is None]
    return {
        "runs": per_run,
        "total": summary(totals),
        "per_offer": per_offer([g for g, (_, offer) in enumerate(groups) if offer is not None]),
        "settings": {"weeks": settings.weeks, "pre_weeks": settings.pre_weeks,
                     "margin_rate": settings.margin_rate, "bootstrap": settings.bootstrap,
                     "seed": settings.seed, "confidence": 1 - settings.alpha,
                     "power": settings.power, "outcomes": str(outcomes)},
        "definitions": DEFINITIONS,
    }


# --------------------------------------------------------------------------------------------
# planning a test


def power_plan(baseline_sd: float, effect: float, alpha: float = 0.05, power: float = 0.8,
               customers: int | None = None) -> dict[str, Any]:
    """The arms that detect ``effect`` (a difference in means) with probability ``power`` in a
    two-sided test at level ``alpha``, for an outcome of standard deviation ``baseline_sd``.

    Equal arms need ``n = 2 (k sd / effect)^2`` customers each, ``k = z(1 - alpha/2) + z(power)``.
    With ``customers`` (those the plan reaches) split into a holdout share ``s``: the least ``s``
    with ``1 / (s N) + 1 / ((1 - s) N) <= (effect / (k sd))^2``; none when even half and half
    would not do."""
    if not (baseline_sd > 0 and effect > 0 and 0 < alpha < 1 and 0 < power < 1):
        raise ValueError("baseline_sd and effect must be positive, alpha and power in (0, 1)")
    k = _z(1 - alpha / 2) + _z(power)
    m = (k * baseline_sd / effect) ** 2
    out: dict[str, Any] = {"baseline_sd": baseline_sd, "effect": effect, "alpha": alpha,
                           "power": power, "customers_per_arm_equal_split": math.ceil(2 * m)}
    if customers is not None:
        out["customers"] = customers
        if customers < 4 * m:
            out.update(holdout_share=None, control_customers=None, treated_customers=None,
                       note=f"{customers} customers are too few: even a 50% holdout needs "
                            f"{math.ceil(4 * m)}")
        else:
            share = (1 - math.sqrt(1 - 4 * m / customers)) / 2
            control = math.ceil(share * customers)
            out.update(holdout_share=control / customers, control_customers=control,
                       treated_customers=customers - control)
    return out


def baseline_sd_from(data: Path, weeks: int) -> tuple[float, int]:
    """The standard deviation of customers' sales over ``weeks`` weeks (the input folder's last
    ``weeks`` weeks, customers without purchases counting 0) and the number of customers."""
    # checked: an empty week crashed, a NaN sale spread as NaN
    customers = read_master(Path(data), "customers").select("customer_id")
    tx = read_referencing(Path(data), "transactions", ids_are_int(customer_id=customers))
    if tx.height == 0:
        raise InputError("transactions", "week", f"no transactions in {data} to estimate from")
    first, last = (int(v) for v in tx.select(pl.col("week").min().alias("first"),
                                             pl.col("week").max().alias("last")).row(0))
    if weeks > last - first + 1:  # the weeks missing would count as weeks without sales
        raise InputError("transactions", "week", f"--weeks {weeks} asks for the sales of weeks "
                         f"{last - weeks + 1}..{last}, but the transactions in {data} hold weeks "
                         f"{first}..{last} only: give --weeks {last - first + 1} or fewer (the "
                         "weeks missing would count as weeks without sales and bias the spread)")
    sales = group_sums(tx.filter(pl.col("week") > last - weeks), ["customer_id"],
                       {"s": pl.col("sales_value")})
    values = customers.join(sales, on="customer_id", how="left",
                            maintain_order="left").get_column("s").fill_null(0.0)
    spread = values.std()
    return (float(spread) if isinstance(spread, (int, float)) else 0.0), customers.height


def render_measure(result: dict[str, Any]) -> str:
    """The measure page (self-contained HTML): the lift chart with intervals, total and per
    offer, and per run."""
    from optimizer.report import charts
    from optimizer.report.page import environment

    shown = [("total", result["total"])] + [(str(e["offer_id"]), e)
                                            for e in result["per_offer"]]
    shown = [(label, e) for label, e in shown if e["incremental_sales_per_customer"] is not None
             and e["ci_low"] is not None]
    chart = (charts.interval_chart([label for label, _ in shown],
                                   [e["incremental_sales_per_customer"] for _, e in shown],
                                   [e["ci_low"] for _, e in shown],
                                   [e["ci_high"] for _, e in shown],
                                   "Lift in sales per customer (total, then per offer)",
                                   xlabel="treated minus control, per customer")
             if shown else "")
    level = f"{100 * result['settings']['confidence']:.0f}%"
    return environment().get_template("measure.html").render(m=result, chart=chart, level=level)


__all__ = ["METRICS", "Settings", "baseline_sd_from", "measure_runs", "power_plan",
           "program_arm", "read_outcomes", "render_measure"]
