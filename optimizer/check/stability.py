"""``offeropt check``'s verification of the stable-lists figures (docs/contract.md, "Stable
lists"): the manifest's ``stability`` record is recomputed from last week's lists (``history``'s
rows of the week before, or the ``--previous-run`` folder's assignments it names) and the run's
assignments, independently of :mod:`optimizer.model.stability`. Rule id:

=========================== ===================================================================
``stability``               a figure of the manifest's ``stability`` (previous_lists,
                            previous_slots, kept_slots, changed_slots, changed_lists,
                            penalized_objective) disagrees with the lists
=========================== ===================================================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from optimizer.core.config import Scenario
from optimizer.io.validate import Inputs

_RTOL, _ATOL = 1e-6, 1e-6


def _previous(record: dict[str, Any], inputs: Inputs, scenario: Scenario) -> pl.DataFrame | None:
    """Last week's (c, o) pairs as the record names them; None when they cannot be read."""
    source = str(record.get("previous", ""))
    if source == f"history week {scenario.week - 1}":
        if inputs.history is None:
            return pl.DataFrame(schema={"c": pl.Int32, "o": pl.Int32})
        return inputs.history.filter(pl.col("week") == scenario.week - 1).select("c", "o")
    path = Path(source) / "assignments.parquet"
    if not path.is_file():
        return None
    frame = pl.read_parquet(path, columns=["customer_id", "offer_id"], glob=False)
    customers, offers = inputs.customers, inputs.offers
    return (frame.with_columns(
        pl.col("customer_id").cast(customers.schema["customer_id"], strict=False),
        pl.col("offer_id").cast(offers.schema["offer_id"], strict=False))
        .join(customers.select("customer_id", "c"), on="customer_id", how="inner")
        .join(offers.select("offer_id", "o"), on="offer_id", how="inner").select("c", "o"))


def check_stability(manifest: dict[str, Any] | None, known: pl.DataFrame, inputs: Inputs,
                    scenario: Scenario) -> list[Any]:
    """The ``stability`` rule; ``known`` are the assignments with known ``c`` and ``o``."""
    from optimizer.check.base import Violation

    record = (manifest or {}).get("stability")
    if not record:
        return []
    before = _previous(record, inputs, scenario)
    if before is None:
        return [Violation("stability", f"the lists the manifest's stability compares with "
                          f"({record.get('previous')!r}) cannot be read", 1)]
    before = before.unique()
    now = known.select("c", "o").unique()
    kept = now.join(before, on=["c", "o"], how="semi").height
    changed = pl.concat([now.join(before, on=["c", "o"], how="anti"),
                         before.join(now, on=["c", "o"], how="anti")]).get_column("c").n_unique()
    score = float(known.get_column("score").sum()) if known.height else 0.0
    penalty = float(record.get("change_penalty", 0.0))
    expected = {"previous_lists": before.get_column("c").n_unique(),
                "previous_slots": before.height, "kept_slots": kept,
                "changed_slots": before.height - kept, "changed_lists": changed,
                "penalized_objective": score - penalty * (before.height - kept)}
    wrong = {k: (record.get(k), v) for k, v in expected.items()
             if not isinstance(record.get(k), (int, float))
             or abs(float(record[k]) - v) > _RTOL * max(1.0, abs(v)) + _ATOL}
    if not wrong:
        return []
    detail = ", ".join(f"{k} {got} vs {want}" for k, (got, want) in wrong.items())
    return [Violation("stability", f"the manifest's stability figures disagree with the lists "
                      f"({detail})", len(wrong))]
