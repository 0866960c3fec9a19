"""The one manifest reader (``optimizer.io.manifest``): typed entries, prices matched by offer
id, and the reading errors each command words for its user."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optimizer.io.manifest import DualPrices, ManifestError, read_manifest

_MANIFEST = {"scenario": {"week": 41, "data": "/in", "name": "x"}, "customers_reached": 7,
             "dual_prices": {"offer_id": [10, "b", 30], "budget": [0.5, 0.0, 2.0],
                             "count": [0.0, 0.25, 0.0], "global_budget": 0.125}}


def _write(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_typed_entries_and_prices_by_offer_id(tmp_path: Path) -> None:
    manifest = read_manifest(_write(tmp_path / "run", _MANIFEST))
    assert manifest.week == 41 and manifest.data_dir == Path("/in")
    assert manifest.customers_reached == 7
    prices = manifest.dual_prices
    assert prices.global_budget == 0.125
    # matched as text, in the asked order; an offer the run did not have gets 0
    budget, count = prices.for_offers(["30", 10, "new", "b"])
    assert budget.tolist() == [2.0, 0.5, 0.0, 0.0] and count.tolist() == [0.0, 0.0, 0.0, 0.25]
    planned = read_manifest(_write(tmp_path / "held", {
        **_MANIFEST, "measurement": {"planned_customers_reached": 9}}))
    assert planned.customers_reached == 9


def test_reading_errors_keep_their_types(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nothing")
    with pytest.raises(ManifestError, match="does not hold a JSON object"):
        read_manifest(_write(tmp_path / "list", [1, 2]))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError):
        read_manifest(tmp_path / "bad")
    without = read_manifest(_write(tmp_path / "noprices", {"scenario": {"week": 1}}))
    with pytest.raises(KeyError):
        without.dual_prices
    with pytest.raises(KeyError):
        DualPrices.from_dict({"offer_id": [1], "budget": [0.0]})


def test_warm_start_reads_through_it(tmp_path: Path) -> None:
    import polars as pl

    from optimizer.apps.pipeline import warm_start_prices

    class _Inputs:
        offers = pl.DataFrame({"offer_id": [30, 10, 99]})
    prices = warm_start_prices(_write(tmp_path / "run", _MANIFEST), _Inputs())  # type: ignore[arg-type]
    assert prices.budget.tolist() == [2.0, 0.5, 0.0] and prices.global_budget == 0.125
    assert np.array_equal(prices.count, [0.0, 0.0, 0.0])
