"""``offeropt check``'s verification of the stable-lists figures (docs/contract.md, "Stable
lists"): the manifest's ``stability`` record is recomputed from last week's lists (``history``'s
rows of the week before, or the ``--previous-run`` folder's assignments it names, its Parquet or
CSV copy read as ``run`` reads it) and the run's
assignments, independently of :mod:`optimizer.model.stability`. Rule id:

=========================== ===================================================================
``stability``               a figure of the manifest's ``stability`` (previous_lists,
                            previous_slots, kept_slots, changed_slots, changed_lists,
                            penalized_objective) disagrees with the lists
``pin``                     with ``rules.pin``: a pin (a pair of last week's lists whose offer's
                            flight, or without one its window, covers the week) missing from the
                            plan and not counted among the manifest's released or withheld pins;
                            or one that nothing justifies, re-derived pin by pin
                            (:mod:`optimizer.check.pins`): not a control of the run's controls,
                            no per-pair rule forbids it, it is a candidate (scores path: listed,
                            value > 0) and it fits every capacity rule beside the pins kept
                            before it (customer cap or frequency room, category cap, offer
                            groups, ``max_customers``, offer / funder / group flight / global
                            budget); or the manifest's pin figures disagree with the lists
=========================== ===================================================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from optimizer.check.base import ROUNDING
from optimizer.check.channels import contact_cost
from optimizer.core.config import Scenario
from optimizer.core.errors import InputError
from optimizer.io.runview import read_run_arm
from optimizer.io.validate import Inputs

_RTOL, _ATOL = 1e-6, 1e-6


def _previous(record: dict[str, Any], inputs: Inputs, scenario: Scenario) -> pl.DataFrame | None:
    """Last week's (c, o) pairs as the record names them; None when they cannot be read."""
    source = str(record.get("previous", ""))
    if source == f"history week {scenario.week - 1}":
        if inputs.history is None:
            return pl.DataFrame(schema={"c": pl.Int32, "o": pl.Int32})
        return inputs.history.filter(pl.col("week") == scenario.week - 1).select("c", "o")
    folder = Path(source)
    if not any((folder / f"assignments.{kind}").is_file() for kind in ("parquet", "csv")):
        return None
    try:  # the one reader of a run's arms: IDs typed as the inputs type them, as run reads them
        frame = read_run_arm(folder, "assignments", inputs.id_is_int)
    except InputError:
        return None
    return (frame.join(inputs.customers.select("customer_id", "c"), on="customer_id", how="inner")
            .join(inputs.offers.select("offer_id", "o"), on="offer_id", how="inner")
            .select("c", "o"))


def check_stability(manifest: dict[str, Any] | None, known: pl.DataFrame, inputs: Inputs,
                    scenario: Scenario, run_dir: Path | None = None) -> list[Any]:
    """The ``stability`` and ``pin`` rules; ``known`` are the assignments with known ``c`` and
    ``o``; ``run_dir``: the run folder (its controls justify withheld pins)."""
    from optimizer.check.base import Violation

    record = (manifest or {}).get("stability")
    if not record:
        return [Violation("pin", "rules.pin is set but the manifest has no stability record "
                          "(the pins cannot be verified)", 1)] if (
                              scenario.rules.pin and manifest is not None) else []
    before = _previous(record, inputs, scenario)
    if before is None:
        return [Violation("stability", f"the lists the manifest's stability compares with "
                          f"({record.get('previous')!r}) cannot be read", 1)]
    before = before.unique()
    out = _check_pins(record, before, known, inputs, scenario, run_dir)
    now = known.select("c", "o").unique()
    kept = now.join(before, on=["c", "o"], how="semi").height
    changed = pl.concat([now.join(before, on=["c", "o"], how="anti"),
                         before.join(now, on=["c", "o"], how="anti")]).get_column("c").n_unique()
    # the plan's objective: its scores, less its contact costs with channels
    score = (float(known.get_column("score").sum()) - contact_cost(known, inputs)
             if known.height else 0.0)
    penalty = float(record.get("change_penalty", 0.0))
    slack = float(known.get_column(ROUNDING).sum()) if known.height else 0.0  # scores as read
    expected = {"previous_lists": before.get_column("c").n_unique(),
                "previous_slots": before.height, "kept_slots": kept,
                "changed_slots": before.height - kept, "changed_lists": changed,
                "penalized_objective": score - penalty * (before.height - kept)}
    wrong = {k: (record.get(k), v) for k, v in expected.items()
             if not isinstance(record.get(k), (int, float))
             or abs(float(record[k]) - v) > _RTOL * max(1.0, abs(v)) + _ATOL
             + (slack if k == "penalized_objective" else 0.0)}
    if not wrong:
        return out
    detail = ", ".join(f"{k} {got} vs {want}" for k, (got, want) in wrong.items())
    return out + [Violation("stability", f"the manifest's stability figures disagree with the "
                            f"lists ({detail})", len(wrong))]


def _check_pins(record: dict[str, Any], before: pl.DataFrame, known: pl.DataFrame,
                inputs: Inputs, scenario: Scenario, run_dir: Path | None) -> list[Any]:
    """The ``pin`` rule: last week's pairs whose offer runs this week are in the plan, but for
    the ones the manifest reports released or withheld as controls, each of which a control, a
    rule or a capacity limit must justify (:mod:`optimizer.check.pins`)."""
    from optimizer.check.base import Violation, _sample
    from optimizer.check.pins import unjustified_pins

    pins = record.get("pins")
    if not scenario.rules.pin:
        return []
    if not isinstance(pins, dict):
        return [Violation("pin", "rules.pin is set but the manifest's stability has no pins "
                          "record", 1)]
    week = scenario.week

    def runs(start: str, end: str) -> pl.Expr:
        return ((pl.col(start).is_null() | (pl.col(start) <= week))
                & (pl.col(end).is_null() | (pl.col(end) >= week)))

    offers = inputs.offers
    # an offer's weeks: its own flight's, else its group flight's, else its window's
    weeks = offers.select("o", start="start_week", end="end_week")
    if inputs.flights is not None and "flight_id" in offers.columns:
        group = offers.select("o", "flight_id").join(
            inputs.flights.select("flight_id", "flight_start_week", "flight_end_week"),
            on="flight_id", how="inner")
        weeks = weeks.update(group.select("o", start="flight_start_week",
                                          end="flight_end_week"), on="o")
    if "flight_start_week" in offers.columns:
        weeks = weeks.update(offers.filter(pl.col("flight_start_week").is_not_null()).select(
            "o", start="flight_start_week", end="flight_end_week"), on="o")
    running = weeks.filter(runs("start", "end").fill_null(False)).select("o")
    pinned = before.join(running, on="o", how="semi")
    missing = pinned.join(known.select("c", "o"), on=["c", "o"], how="anti")
    released = pins.get("released") or {}
    accounted = (sum(int(v) for v in released.values() if isinstance(v, (int, float)))
                 + int(pins.get("withheld_as_controls") or 0))
    out = []
    if missing.height > accounted:
        sample = (missing.join(inputs.customers.select("c", "customer_id"), on="c")
                  .join(offers.select("o", "offer_id"), on="o")
                  .select("customer_id", "offer_id").sort("customer_id", "offer_id"))
        out.append(Violation(
            "pin", f"{missing.height - accounted} pin(s) dropped: {missing.height} pinned "
            f"pair(s) of last week's lists are not in the plan, the manifest releases or "
            f"withholds {accounted}", missing.height - accounted, _sample(sample, ["customer_id", "offer_id"])))
    out += unjustified_pins(pinned, known, inputs, scenario, run_dir, pins)
    expected = {"pinned": pinned.height, "kept": pinned.height - missing.height}
    wrong = {k: (pins.get(k), v) for k, v in expected.items() if pins.get(k) != v}
    if accounted > missing.height:  # releases that are in the plan would excuse a dropped pin
        wrong["released + withheld_as_controls"] = (accounted, missing.height)
    if wrong:
        detail = ", ".join(f"{k} {got} vs {want}" for k, (got, want) in wrong.items())
        out.append(Violation("pin", f"the manifest's pin figures disagree with the lists "
                             f"({detail})", len(wrong)))
    return out
