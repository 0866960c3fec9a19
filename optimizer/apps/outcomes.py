"""``offeropt demo-outcomes``: the weeks after a plan, simulated with a known true lift.

For tests and for users who want to see ``offeropt measure`` recover a lift it is told in
advance. Written into ``OUT`` in the contract's format: ``transactions`` and ``redemptions`` of
the weeks ``week .. week + weeks - 1`` of the run (the plan's week is the first outcome week), and
``truth.json`` with the lift that was put in.

How the weeks are simulated (vectorised, seeded, no loop over customers):

- **Baseline purchases, the same for treated and control customers.** Each customer keeps buying
  as the input folder shows her buying (for a ``demo-data`` folder: as the synthetic world made
  her): in each outcome week, a Poisson number of lines with her mean lines per week over the
  input's weeks, each line one of her own past lines drawn at random (product, sales value,
  quantity, discount), dated within the week by the synthetic calendar
  (:data:`optimizer.apps.synthetic.WEEK1_START`).
- **Redemptions.** Each send of the run (``assignments``) is redeemed with its ``p_redeem``, in a
  week of the window drawn at random; controls were sent nothing and redeem nothing.
- **The lift.** Each redemption brings one extra line of an offer's product worth ``v``, the same
  for every redemption, with ``v = lift x treated customers / sum of the sends' p_redeem``: so
  the expected extra sales per treated customer over the window is exactly ``lift``, the
  quantity ``offeropt measure`` reports as ``incremental_sales_per_customer``. Treated as measure
  counts them, by intention to treat: every customer the plan reached outside the universal
  control, sent at least one offer or every planned send withheld by the per-offer control
  (:func:`optimizer.apps.measure.program_arm`). An offer's own expected lift per customer it was sent to is
  ``v x`` the mean ``p_redeem`` of its sends (``truth.json``, ``per_offer``). With ``lift = 0``
  redemptions happen (the discount is paid) but bring no extra sales.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.apps.measure import program_arm
from optimizer.apps.synthetic import WEEK1_START
from optimizer.core.errors import InputError, ScenarioError
from optimizer.core.numerics import group_sums
from optimizer.io.atomic import write_atomic_together
from optimizer.io.load import file_sha256, table_forms, table_path
from optimizer.io.manifest import Manifest, read_manifest
from optimizer.io.runfolder import check_files_folder, json_writer
from optimizer.io.runview import read_run_arm
from optimizer.io.typed_ids import ids_are_int, read_master, read_referencing

_EPOCH_DAYS = (WEEK1_START - datetime.date(1970, 1, 1)).days


def _run_manifest(run_dir: Path) -> tuple[Manifest, int]:
    """The run's manifest and its week."""
    try:
        manifest = read_manifest(run_dir)
        return manifest, manifest.week
    except FileNotFoundError:
        raise InputError("manifest", None, f"no manifest.json in {run_dir}: name a run folder "
                         "of offeropt run") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError("manifest", None, f"cannot read the week of {run_dir / 'manifest.json'} "
                         f"({type(exc).__name__}: {exc})") from None


def _refuse_other_inputs(data: Path, run_dir: Path, manifest: Manifest) -> None:
    """``data`` must be the run's input folder: a ``customers`` or ``offers`` table other than
    the one the run read (its SHA-256 in ``manifest.json``) simulated the outcomes from other
    customers' purchases and other offers' discounts, silently (exit 0). Tables the manifest
    does not record (a hand-made run folder) are not compared."""
    recorded = manifest.data.get("inputs")
    for name in ("customers", "offers"):
        entry = recorded.get(name) if isinstance(recorded, dict) else None
        was = entry.get("sha256") if isinstance(entry, dict) else None
        path = table_path(data, name)
        if was is None or path is None:
            continue
        if file_sha256(path) != was:
            raise InputError(name, None, f"DATA {data} is not the input folder of the run in "
                             f"{run_dir}: its {path.name} differs from the {name} table the run "
                             f"read (SHA-256 in its manifest.json); give the run's own input "
                             f"folder ({manifest.data_dir})")


def _offer_products(data: Path, offers: pl.DataFrame, products: pl.DataFrame,
                    ids_int: dict[str, bool]) -> pl.DataFrame:
    """(offer_id, product_id): an offer's listed products, else the products of its category."""
    parts = []
    if table_path(data, "offer_products") is not None:
        # the rows checked (an empty product was drawn into the lines), IDs as the run read them
        listed = read_referencing(data, "offer_products", ids_int)
        parts.append(listed.select("offer_id", "product_id"))
    if "category" in offers.columns:
        by_category = (offers.filter(pl.col("category").is_not_null())
                       .select("offer_id", pl.col("category").str.strip_chars().str.to_uppercase())
                       .join(products.select("product_id", pl.col("category").str.strip_chars()
                                             .str.to_uppercase()), on="category")
                       .select("offer_id", "product_id"))
        parts.append(by_category)
    if not parts:
        return pl.DataFrame(schema={"offer_id": offers.schema["offer_id"],
                                    "product_id": products.schema["product_id"]})
    return pl.concat(parts).unique(maintain_order=True).sort("offer_id", "product_id")


def _baseline(tx: pl.DataFrame, customers: pl.DataFrame, week: int, weeks: int,
              rng: np.random.Generator) -> pl.DataFrame:
    """The outcome weeks without offers: each customer's own past lines, resampled, at her own
    weekly rate."""
    # each customer's lines in the table's order (an inner join's order is not guaranteed: it
    # varied between runs of the same seed, and the resampled lines with it)
    past = (tx.filter(pl.col("week") < week)
            .join(customers.with_row_index("c"), on="customer_id", how="inner",
                  maintain_order="left")
            .sort("c", maintain_order=True))
    weeks_seen = past.select(pl.col("week").max() - pl.col("week").min() + 1).item()
    span = max(1, int(weeks_seen) if past.height else 1)
    n_cust = customers.height
    lines = np.bincount(past.get_column("c").to_numpy(), minlength=n_cust)
    start = np.concatenate([[0], np.cumsum(lines)[:-1]])
    drawn = rng.poisson(lines[None, :] / span, size=(weeks, n_cust))  # (week, customer)
    w_idx, c_idx = np.nonzero(drawn)
    reps = drawn[w_idx, c_idx]
    c_line = np.repeat(c_idx, reps)
    w_line = np.repeat(w_idx, reps)
    pick = start[c_line] + (rng.random(c_line.size) * lines[c_line]).astype(np.int64)
    base = past[pick].select("customer_id", "product_id", "sales_value",
                             *[c for c in ("quantity", "discount") if c in past.columns])
    base = base.with_columns(week=pl.Series(week + w_line, dtype=pl.Int64))
    return base


def _refuse_input_folder(out: Path) -> None:
    """``out`` must not be an input folder (one holding a ``customers`` or ``offers`` table, the
    scenario's data folder itself): its ``transactions`` and ``redemptions`` would be replaced
    by the outcome weeks and lost (ScenarioError, exit 2, before anything is simulated)."""
    for name in ("customers", "offers"):
        held = [p.name for p in table_forms(out, name) if p.exists()]
        if held:
            raise ScenarioError(
                f"OUT {out} holds the input table {held[0]}: it is an input folder, whose "
                "transactions and redemptions the outcome weeks would replace; write the "
                "outcomes into a folder of their own")


def _read_inputs(data: Path) -> tuple[pl.DataFrame, ...]:
    """``customers`` (its IDs), ``offers``, ``products`` and ``transactions`` of ``data``: the
    inputs' row checks (a NaN discount or sale would be simulated into the outcomes), and their
    IDs typed as the run typed them (text customer IDs in transactions beside integer customers,
    which run accepts, failed the joins: exit 70)."""
    customers = read_master(data, "customers").select("customer_id")
    offers = read_master(data, "offers")
    products = read_master(data, "products")
    ids_int = ids_are_int(customer_id=customers, offer_id=offers, product_id=products)
    return customers, offers, products, read_referencing(data, "transactions", ids_int)


def simulate_outcomes(data: Path, run_dir: Path, out: Path, weeks: int, lift: float,
                      seed: int) -> dict[str, Any]:
    """Write the outcome weeks of the run in ``run_dir`` (inputs in ``data``) into ``out``;
    returns what ``truth.json`` holds. See the module docstring."""
    if weeks < 1 or lift < 0 or not np.isfinite(lift):
        raise ValueError("weeks must be >= 1 and lift a finite number >= 0")
    data, run_dir = Path(data), Path(run_dir)
    _refuse_input_folder(Path(out))
    check_files_folder(Path(out), "OUT")  # not in a run's folder: its next run would delete them
    manifest, week = _run_manifest(run_dir)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 19]))
    customers, offers, products, tx = _read_inputs(data)
    _refuse_other_inputs(data, run_dir, manifest)
    ids_int = ids_are_int(customer_id=customers, offer_id=offers, product_id=products)
    sends = read_run_arm(run_dir, "assignments", ids_int, ("p_redeem",)).with_columns(
        pl.col("p_redeem").cast(pl.Float64))

    base = _baseline(tx, customers, week, weeks, rng)

    # redemptions of the sends, and the lift they bring
    redeemed = rng.random(sends.height) < sends.get_column("p_redeem").to_numpy()
    r_week = week + rng.integers(0, weeks, sends.height)
    redemptions = sends.select("customer_id", "offer_id").with_columns(
        week=pl.Series(r_week, dtype=pl.Int64)).filter(pl.Series(redeemed))
    # measure's treated arm, by intention to treat: sent an offer, or every planned send withheld
    # (a run folder without the controls table, from before them: no control group)
    controls = read_run_arm(run_dir, "controls", ids_int, ("reason",), required=False)
    treated = program_arm(sends, controls).height
    p_total = float(sends.get_column("p_redeem").sum())
    value = lift * treated / p_total if p_total > 0 else 0.0
    extra = pl.DataFrame(schema={"customer_id": base.schema["customer_id"],
                                 "product_id": base.schema["product_id"], "week": pl.Int64})
    if value > 0 and redemptions.height:
        choices = _offer_products(data, offers, products, ids_int).group_by("offer_id", maintain_order=True).agg(
            pl.col("product_id"))
        with_products = redemptions.join(choices, on="offer_id", how="left", maintain_order="left")
        n_choice = with_products.get_column("product_id").list.len().fill_null(0).to_numpy()
        if (n_choice == 0).any():
            gone = with_products.filter(pl.Series(n_choice == 0)).get_column("offer_id")[0]
            raise InputError("offer_products", "product_id", f"offer {gone!r} has no product to "
                             "redeem (neither offer_products rows nor a category with products)")
        at = (rng.random(n_choice.size) * n_choice).astype(np.int64)
        extra = with_products.with_columns(__at=pl.Series(at)).select(
            "customer_id", pl.col("product_id").list.get(pl.col("__at")), "week")
    extra = extra.with_columns(sales_value=pl.lit(value, dtype=pl.Float64))
    if "quantity" in base.columns:
        extra = extra.with_columns(quantity=pl.lit(1.0))
    if "discount" in base.columns:
        extra = extra.with_columns(discount=pl.lit(0.0))
    transactions = pl.concat([base, extra.select(base.columns)], how="vertical")
    days = (rng.random(transactions.height) * 7).astype(np.int64)
    transactions = transactions.with_columns(
        date=pl.Series(_EPOCH_DAYS + (transactions.get_column("week").to_numpy() - 1) * 7 + days)
        .cast(pl.Int32).cast(pl.Date)).sort("week", "customer_id", "date", maintain_order=True)

    per_offer = (group_sums(sends, ["offer_id"], {"customers": pl.lit(1, dtype=pl.UInt32),
                                                  "p": pl.col("p_redeem")})
                 .with_columns((pl.col("p") / pl.col("customers") * value)
                               .alias("true_lift_per_customer")))
    truth = {
        "lift": lift, "weeks": [week, week + weeks - 1], "seed": seed,
        "definition": "expected extra sales per treated customer (intention to treat: every "
                      "customer the plan reached outside the universal control, sent an offer "
                      "or every planned send withheld per offer) over the weeks, as offeropt "
                      "measure's incremental_sales_per_customer",
        "treated_customers": treated, "sales_per_redemption": value,
        "per_offer": per_offer.select("offer_id", "customers", "true_lift_per_customer").to_dicts(),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    write_atomic_together({  # none published unless all three were written (see its docstring)
        Path(out) / "transactions.parquet": lambda path: transactions.write_parquet(path),
        Path(out) / "redemptions.parquet": lambda path: redemptions.write_parquet(path),
        Path(out) / "truth.json": json_writer(truth),
    })
    for name in ("transactions", "redemptions"):  # a CSV twin would make the folder ambiguous
        (Path(out) / f"{name}.csv").unlink(missing_ok=True)
    return truth


__all__ = ["simulate_outcomes"]
