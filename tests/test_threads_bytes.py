"""Outputs built on per-group float sums (optimizer.core.numerics.group_sums) are the same bytes
on one and on two polars threads: flights' pacing table and manifest record (forecast pacing,
own and group flights, spend so far from history) and demo-outcomes' truth. Each command runs in
its own process, since polars reads ``POLARS_MAX_THREADS`` once, at import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from optimizer.apps.synthetic import write_demo_data
from tests.tiny_world import write_scenario

WEEK = 40  # the demo data's planning week (its history runs to week 39)


def _flight_data(folder: Path) -> None:
    """Demo data with flights: six offers on flights of their own, six on a group flight, all
    running weeks 37..42, paced by a forecast; history's sends carry their expected cost."""
    write_demo_data(folder, customers=400, offers=30, seed=2)
    rng = np.random.default_rng(9)
    history = pl.read_parquet(folder / "history.parquet")
    history.with_columns(expected_cost=pl.Series(rng.random(history.height) * 3.7)).write_parquet(
        folder / "history.parquet")
    offers = pl.read_parquet(folder / "offers.parquet")
    ids = offers.get_column("offer_id").to_list()
    own, group = ids[:6], ids[6:12]
    on_own = pl.col("offer_id").is_in(own)
    offers.with_columns(
        flight_budget=pl.when(on_own).then(pl.lit(40.0)),
        flight_start_week=pl.when(on_own).then(pl.lit(37)),
        flight_end_week=pl.when(on_own).then(pl.lit(42)),
        flight_id=pl.when(pl.col("offer_id").is_in(group)).then(pl.lit("g1")),
    ).write_parquet(folder / "offers.parquet")
    pl.DataFrame({"flight_id": ["g1"], "flight_budget": [150.0], "flight_start_week": [37],
                  "flight_end_week": [42]}).write_parquet(folder / "flights.parquet")
    weeks = list(range(37, 43))
    pl.DataFrame({"offer_id": [o for o in own + group for _ in weeks],
                  "week": weeks * len(own + group),
                  "demand": rng.random(len(own + group) * len(weeks)) * 9.1 + 0.1}).write_parquet(
        folder / "forecast.parquet")


def _offeropt(threads: int, *args: str) -> None:
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "optimizer.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pacing_and_truth_are_the_same_bytes_on_one_and_two_threads(tmp_path):
    data = tmp_path / "data"
    _flight_data(data)
    outputs = []
    for threads in (1, 2):
        run = tmp_path / f"run{threads}"
        scenario = write_scenario(tmp_path / f"s{threads}.toml", data=str(data),
                                  output=str(run), week=WEEK,
                                  rules={"max_offers_per_customer": 3, "pacing": "forecast"})
        _offeropt(threads, "run", str(scenario), "--quiet")
        out = tmp_path / f"outcomes{threads}"
        _offeropt(threads, "demo-outcomes", str(data), str(run), str(out), "--weeks", "2",
                  "--lift", "3", "--seed", "0")
        flights = json.loads((run / "manifest.json").read_text())["flights"]
        outputs.append(((run / "pacing.parquet").read_bytes(), json.dumps(flights),
                        (out / "truth.json").read_bytes()))
    pacing_rows = pl.read_parquet(tmp_path / "run1" / "pacing.parquet")
    assert pacing_rows.height > 0 and (pacing_rows.get_column("kind") == "spent").any()
    assert outputs[0][0] == outputs[1][0]  # pacing.parquet
    assert outputs[0][1] == outputs[1][1]  # the manifest's flights record
    assert outputs[0][2] == outputs[1][2]  # truth.json
