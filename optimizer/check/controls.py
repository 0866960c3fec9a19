"""``offeropt check``'s verification of a run's control groups (``controls.parquet|csv``).

Independent of the planning code: the hash is recomputed from the scenario's ``[measurement]``
with :mod:`optimizer.core.keyed_hash` (BLAKE2b, the same as ``hashlib``), and every assignment and
every controls row is checked against it. Rule ids:

=========================== ===================================================================
``holdout_sent``            a customer of the universal control (her hash below
                            ``holdout_share``) was sent an offer
``offer_holdout_sent``      a (customer, offer) pair of the per-offer control was sent
``controls``                ``controls.*`` is missing although the scenario holds customers out,
                            lacks a column, lists a row that is not hashed out (or not of this
                            week, or of an unknown reason, customer or offer), lists a row
                            twice, or lists per-offer rows of a universal control
``manifest``                the manifest's ``measurement`` counts disagree with the controls and
                            assignments: ``universal_controls`` and ``offer_controls`` (the rows
                            of each reason), ``planned_customers_reached`` (the customers of
                            both files) and ``planned_sends - withheld_sends`` (the sends made)
=========================== ===================================================================

What can be verified without re-planning: every listed control is hashed out, and no hashed-out
customer or pair got a send, whether listed or not. Which hashed-out customers the plan *would*
have reached is the planner's record (the plan before withholding is not re-derived here).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.check.base import Violation
from optimizer.core.config import Scenario
from optimizer.core.errors import InputError
from optimizer.core.keyed_hash import below, customer_hashes, pair_hashes
from optimizer.io.load import unify_id_type
from optimizer.io.validate import Inputs

UNIVERSAL, PER_OFFER = "universal_holdout", "offer_holdout"  # as optimizer/model/holdout.py writes
_COLUMNS = ("customer_id", "offer_id", "week", "reason")


def _violation(rule: str, message: str, count: int, rows: pl.DataFrame) -> Violation:
    columns = [c for c in ("customer_id", "offer_id", "week", "reason", "rank") if c in rows.columns]
    return Violation(rule, message, count, rows.select(columns).head(5).rows(named=True))


def _read_controls(run_dir: Path) -> pl.DataFrame | None:
    for path in (run_dir / "controls.parquet", run_dir / "controls.csv"):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                return pl.read_parquet(path, glob=False)
            return pl.read_csv(path, infer_schema=False, raise_if_empty=False)
        except (pl.exceptions.PolarsError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError("controls", None, f"cannot read {path}: {first}") from None
    return None


def check_controls(run_dir: Path, assignments: pl.DataFrame, inputs: Inputs,
                   scenario: Scenario, manifest: dict[str, Any] | None = None) -> list[Any]:
    """Violations of the scenario's control groups in the run folder ``run_dir``, and of the
    ``manifest``'s ``measurement`` counts when given.

    ``assignments``: the run's assignments with ``c`` and ``o`` (the customers' and offers'
    dense indices, null where unknown), as :func:`optimizer.check.verify.check_run` builds them.
    """
    m = scenario.measurement
    customer_ids = inputs.customers.get_column("customer_id")
    offer_ids = inputs.offers.get_column("offer_id")
    held = below(customer_hashes(customer_ids, m.salt), m.holdout_share) \
        if m.holdout_share > 0 else np.zeros(len(customer_ids), dtype=bool)
    out = []

    sent = assignments.filter(pl.col("c").is_not_null())
    bad = sent.filter(pl.Series(held)[sent.get_column("c")] if sent.height else pl.lit(False))
    if bad.height:
        out.append(_violation("holdout_sent", f"{bad.height} send(s) to customers of the universal "
                              f"control (holdout_share {m.holdout_share}, salt {m.salt!r})",
                              bad.height, bad))
    pairs = sent.filter(pl.col("o").is_not_null())
    if m.offer_holdout_share > 0 and pairs.height:
        hashed = below(pair_hashes(customer_ids.gather(pairs.get_column("c")),
                                   offer_ids.gather(pairs.get_column("o")), m.salt),
                       m.offer_holdout_share)
        bad = pairs.filter(pl.Series(hashed))
        if bad.height:
            out.append(_violation("offer_holdout_sent", f"{bad.height} send(s) of a (customer, "
                                  f"offer) pair of the per-offer control (offer_holdout_share "
                                  f"{m.offer_holdout_share}, salt {m.salt!r})", bad.height, bad))

    try:
        controls = _read_controls(run_dir)
    except InputError as exc:  # a published file that cannot be read is a violation, as a
        # summary or customers table that cannot be read is (it stopped check: exit 2)
        out.append(_violation("controls", exc.problem, 1, pl.DataFrame()))
        return out
    holding = m.holdout_share > 0 or m.offer_holdout_share > 0
    if controls is None:
        if holding:
            out.append(_violation("controls", "no controls.parquet or controls.csv in the run "
                                  "folder, although [measurement] holds customers out", 1,
                                  pl.DataFrame()))
        return out
    missing = [c for c in _COLUMNS if c not in controls.columns]
    if missing:
        out.append(_violation("controls", f"controls lacks column(s) {', '.join(missing)}", 1,
                              controls))
        return out
    return (out + _check_rows(controls, inputs, scenario, held)
            + _measurement_figures(manifest, indexed_controls(controls, inputs), assignments))


def _measurement_figures(manifest: dict[str, Any] | None, controls: pl.DataFrame,
                         assignments: pl.DataFrame) -> list[Any]:
    """The manifest's ``measurement`` counts against the controls (``indexed_controls``) and
    the assignments (with ``c``): rows of each reason, customers reached before withholding
    (those of either file) and the sends made (``planned_sends - withheld_sends``)."""
    record = (manifest or {}).get("measurement")
    if not isinstance(record, dict):
        return []
    reason = controls.get_column("reason").cast(pl.Utf8)
    reached = pl.concat([assignments.get_column("c").cast(pl.Int64).drop_nulls(),
                         controls.get_column("c").cast(pl.Int64).drop_nulls()]).n_unique()
    expected: dict[str, int] = {"universal_controls": int((reason == UNIVERSAL).sum()),
                                "offer_controls": int((reason == PER_OFFER).sum()),
                                "planned_customers_reached": int(reached)}
    problems = [f"measurement.{key} is {record[key]!r}, the controls and assignments give {want}"
                for key, want in expected.items()
                if key in record and (record[key] != want or isinstance(record[key], bool))]
    planned, withheld = record.get("planned_sends"), record.get("withheld_sends")
    if (isinstance(planned, int) and isinstance(withheld, int)
            and planned - withheld != assignments.height):
        problems.append(f"measurement.planned_sends - withheld_sends is {planned} - {withheld} = "
                        f"{planned - withheld}, the assignments hold {assignments.height} sends")
    elif "planned_sends" in record and not (isinstance(planned, int) and isinstance(withheld, int)):
        problems.append(f"measurement.planned_sends ({planned!r}) and withheld_sends "
                        f"({withheld!r}) are not whole numbers")
    return [Violation("manifest", f"manifest.json: {p}", 1) for p in problems]


def indexed_controls(controls: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    """The controls rows with ``__c_id``, ``__o_id`` (IDs as the masters' types), ``__week``,
    ``__row`` and the dense indices ``c`` and ``o`` (null where unknown)."""
    rows = controls.with_columns(
        unify_id_type(controls.get_column("customer_id"), inputs.id_is_int["customer_id"])
        .alias("__c_id"),
        unify_id_type(controls.get_column("offer_id").cast(pl.Utf8).str.strip_chars()
                      .replace("", None) if controls.get_column("offer_id").dtype == pl.Utf8
                      else controls.get_column("offer_id"), inputs.id_is_int["offer_id"])
        .alias("__o_id"),
        pl.col("week").cast(pl.Int64, strict=False).alias("__week"),
    ).with_row_index("__row")
    return (rows.join(inputs.customers.select(pl.col("customer_id").alias("__c_id"), "c"),
                      on="__c_id", how="left", maintain_order="left")
            .join(inputs.offers.select(pl.col("offer_id").alias("__o_id"), "o"),
                  on="__o_id", how="left", maintain_order="left"))


def run_controls(run_dir: Path, inputs: Inputs) -> pl.DataFrame | None:
    """The run folder's controls as :func:`indexed_controls` gives them (None without the file
    or with a column missing, which :func:`check_controls` reports)."""
    controls = _read_controls(run_dir)
    if controls is None or any(c not in controls.columns for c in _COLUMNS):
        return None
    return indexed_controls(controls, inputs)


def _check_rows(controls: pl.DataFrame, inputs: Inputs, scenario: Scenario,
                held: np.ndarray) -> list[Any]:
    m = scenario.measurement
    rows = indexed_controls(controls, inputs)
    universal = pl.col("reason") == UNIVERSAL
    per_offer = pl.col("reason") == PER_OFFER
    out = []
    problems = {
        "a reason other than universal_holdout or offer_holdout":
            ~(universal | per_offer).fill_null(False),
        f"a week other than {scenario.week}": (pl.col("__week") != scenario.week).fill_null(True),
        "a customer not in 'customers'": pl.col("c").is_null(),
        "an offer_id with reason universal_holdout (it must be empty)":
            universal & pl.col("__o_id").is_not_null(),
        "an offer not in 'offers' (reason offer_holdout)": per_offer & pl.col("o").is_null(),
    }
    for what, bad_rows in problems.items():
        bad = rows.filter(bad_rows)
        if bad.height:
            out.append(_violation("controls", f"{bad.height} controls row(s) with {what}",
                                  bad.height, bad))
    known = rows.filter(pl.col("c").is_not_null())
    is_held = pl.Series(held)
    uni = known.filter(universal)
    bad = uni.filter(~is_held.gather(uni.get_column("c")) if uni.height else pl.lit(False))
    if bad.height:
        out.append(_violation("controls", f"{bad.height} universal control(s) listed whose hash "
                              f"is not below holdout_share {m.holdout_share}", bad.height, bad))
    pairs = known.filter(per_offer & pl.col("o").is_not_null())
    if pairs.height:
        hashed = below(pair_hashes(inputs.customers.get_column("customer_id").gather(pairs["c"]),
                                   inputs.offers.get_column("offer_id").gather(pairs["o"]),
                                   m.salt), m.offer_holdout_share) \
            if m.offer_holdout_share > 0 else np.zeros(pairs.height, dtype=bool)
        bad = pairs.filter(pl.Series(~hashed))
        if bad.height:
            out.append(_violation("controls", f"{bad.height} per-offer control(s) listed whose "
                                  f"pair hash is not below offer_holdout_share "
                                  f"{m.offer_holdout_share}", bad.height, bad))
        bad = pairs.filter(is_held.gather(pairs.get_column("c")))
        if bad.height:
            out.append(_violation("controls", f"{bad.height} per-offer control row(s) of customers "
                                  "in the universal control (they are held out of every offer)",
                                  bad.height, bad))
    # "ordered by customer" (docs/contract.md): the customers table's order, as the run writes
    # them; a row before the customer above it is out of order
    unordered = known.filter(pl.col("c") < pl.col("c").shift(1))
    if unordered.height:
        out.append(_violation("controls", f"{unordered.height} controls row(s) out of the "
                              "customers' order (the table is ordered by customer, in the "
                              "customers table's order)", unordered.height, unordered))
    duplicated = known.filter(pl.struct("c", "o").is_duplicated())
    if duplicated.height:
        out.append(_violation("controls", f"{duplicated.height} controls rows listed more than "
                              "once", duplicated.height, duplicated))
    return out


__all__ = ["check_controls", "indexed_controls", "run_controls"]
