"""Tiny hand-made input folders and scenarios for end-to-end tests of ``run_scenario`` and the CLI.

A world is a dict ``table name -> list of row dicts`` (``None`` = empty cell); :func:`write_world`
writes it as CSV (or Parquet) files, :func:`write_scenario` a scenario TOML next to it. The default
world (:func:`base_world`) plans week 40 on the ``scores`` path, so every test controls
``p_redeem`` and ``value`` exactly.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
from click.testing import CliRunner

from optimizer.cli import main

WEEK = 40

PRODUCTS = [
    {"product_id": 101, "category": "PORK"},
    {"product_id": 102, "category": "BAKERY"},
    {"product_id": 103, "category": "DAIRY"},
    {"product_id": 104, "category": "SNACKS"},
    {"product_id": 105, "category": "INFANT FORMULA"},
    {"product_id": 106, "category": "FAMILY PLANNING"},
]


def offer(offer_id: Any, category: str | None = "BAKERY", discount: float = 1.0,
          budget: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"offer_id": offer_id, "category": category, "discount": discount, "budget": budget,
            **extra}


def score(customer_id: Any, offer_id: Any, p: float = 0.5, value: float = 1.0) -> dict[str, Any]:
    return {"customer_id": customer_id, "offer_id": offer_id, "p_redeem": p, "value": value}


def base_world(customers: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Customers 1..n, the six products above, one offer (1, BAKERY) scored for everybody."""
    return {
        "customers": [{"customer_id": c, "segment": "a"} for c in range(1, customers + 1)],
        "products": copy.deepcopy(PRODUCTS),
        "offers": [offer(1)],
        "transactions": [{"customer_id": 1, "product_id": 101, "week": 39, "sales_value": 2.5}],
        "scores": [score(c, 1) for c in range(1, customers + 1)],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if any(ch in text for ch in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> Path:
    columns = header or (list(dict.fromkeys(k for r in rows for k in r)) if rows else [])
    text = ",".join(columns) + "\n"
    text += "".join(",".join(_cell(r.get(c)) for c in columns) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def write_world(folder: Path, world: dict[str, list[dict[str, Any]]], fmt: str = "csv",
                headers: dict[str, list[str]] | None = None) -> Path:
    """Write each table of ``world`` into ``folder`` (``fmt`` "csv" or "parquet")."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in world.items():
        header = (headers or {}).get(name)
        if fmt == "csv":
            write_csv(folder / f"{name}.csv", rows, header)
        else:
            columns = header or list(dict.fromkeys(k for r in rows for k in r))
            frame = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows],
                                 infer_schema_length=None) if rows else pl.DataFrame(
                                     {c: pl.Series([], dtype=pl.Utf8) for c in columns})
            frame.write_parquet(folder / f"{name}.parquet")
    return folder


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (e.g. one [[rules.eligibility]] entry)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def write_scenario(path: Path, *, data: str = "data", output: str = "run", week: int = WEEK,
                   name: str = "tiny", rules: dict[str, Any] | None = None,
                   solver: dict[str, Any] | None = None, extra: str = "") -> Path:
    """A scenario TOML at ``path``; knobs set to ``None`` are left out (their default applies)."""
    lines = [f"name = {_toml_value(name)}", f"week = {week}", f"data = {_toml_value(data)}",
             f"output = {_toml_value(output)}"]
    for section, knobs in (("rules", rules), ("solver", solver)):
        if knobs:
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in knobs.items() if v is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def pairs(assignments: pl.DataFrame) -> set[tuple[Any, Any]]:
    """The assigned (customer_id, offer_id) pairs."""
    return set(assignments.select("customer_id", "offer_id").iter_rows())


def offers_of(assignments: pl.DataFrame, customer: Any) -> set[Any]:
    return set(assignments.filter(pl.col("customer_id") == customer).get_column("offer_id"))


def customers_of(assignments: pl.DataFrame, offer_id: Any) -> set[Any]:
    return set(assignments.filter(pl.col("offer_id") == offer_id).get_column("customer_id"))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to compare folders byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def run_world(root: Path, world: dict[str, list[dict[str, Any]]], *extra: str,
              check: bool = True, **rules: Any) -> tuple[Path, dict[str, Any]]:
    """Write ``world`` and a scenario (one offer per customer unless ``rules`` say otherwise)
    under ``root``, ``offeropt run`` it (and ``check`` it), each asserted to exit 0; the run
    folder and its manifest."""
    write_world(root / "data", world)
    path = write_scenario(root / "scenario.toml", rules={"max_offers_per_customer": 1, **rules})
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    if check:
        checked = CliRunner().invoke(main, ["check", str(path)])
        assert checked.exit_code == 0, checked.output
    return root / "run", json.loads((root / "run" / "manifest.json").read_text())



def csv_floats_not_at_six_decimals(path: Path) -> list[str]:
    """The float cells of a written CSV that are not printed with 6 decimals (docs/contract.md,
    "Formatting of outputs": ``0.300000``, never ``0.30000000000000004`` or ``0.3``)."""
    typed, text = pl.read_csv(path), pl.read_csv(path, infer_schema=False)
    return [f"{column}={cell}" for column, dtype in typed.schema.items() if dtype.is_float()
            for cell in text.get_column(column).drop_nulls()
            if not re.fullmatch(r"-?\d+\.\d{6}", cell)]


def planned_demo(root: Path, cooldown: int = 4) -> Path:
    """``root`` holding a 300-customer demo folder ``data`` (built-in scoring), its
    ``scenario.toml`` (3 offers a customer, ``cooldown`` weeks, global budget 60, 5 passes) and
    the run folder ``run`` that ``offeropt run`` wrote from them."""
    from optimizer.apps.synthetic import write_demo_data

    write_demo_data(root / "data", customers=300, offers=12, seed=0)
    scenario = write_scenario(root / "scenario.toml", rules={
        "max_offers_per_customer": 3, "cooldown_weeks": cooldown, "global_budget": 60.0},
        solver={"max_iterations": 5})
    result = CliRunner().invoke(main, ["run", str(scenario), "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def built_for_workers(data: Path, scenario_path: Path, chunk: int, shard: int) -> Any:
    """The problem of the scores world in ``data`` built as for Dask workers
    (``solver.backend = "dask"``, chunks of ``chunk`` customers, shards of ``shard``): the
    :class:`~optimizer.model.build.Built`, its ``source`` set (the workers can build)."""
    from optimizer.apps.pipeline import score_inputs
    from optimizer.core.config import load_scenario
    from optimizer.io.validate import load_inputs
    from optimizer.model.build import build_problem
    from optimizer.solve.lagrangian.start import best_by_prices

    scenario = load_scenario(write_scenario(
        scenario_path, data=str(data), output="run",
        solver={"backend": "dask", "chunk_size": chunk, "shard_customers": shard}))
    inputs = load_inputs(scenario.data)
    scored = score_inputs(inputs, scenario, scenario.week)
    built = build_problem(inputs, scenario, scored.cats, scored.model, select=best_by_prices)
    assert built.source is not None, built.source_note
    return built

