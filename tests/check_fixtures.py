"""A tiny hand-made world for testing ``optimizer.check``: inputs, a scenario and a good run.

Week 40. Rules: 3 offers per customer, 1 per category, 4-week cooldown, at most 3 offers over a
4-week window, global budget 100, sensitive category "Infant Formula" under ``opt_in``.

Offers (discount, budget):
  1 PORK (2.0, 4)              2 BAKERY (1.0, none; max_customers 2)
  3 INFANT FORMULA (3.0, 20)   4 no category; products DAIRY + SNACKS (1.0, 5)
  5 DAIRY, starts week 41      6 SNACKS, ended week 39
  7 BAKERY (0.5, 5; min_customers 4, a target only)   8 FROZEN (1.0, none)
  9 "snacks " (1.0, none; written in lower case with a trailing space)
Restrictions: customer 1 excludes "pork"; customer 2 excludes " Snacks"; customer 3 opted in to
"infant formula". History: see ``HISTORY``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

WEEK = 40

CUSTOMERS = [1, 2, 3, 4, 5, 6]
PRODUCTS = [(101, "PORK"), (102, "Infant Formula"), (103, "bakery"), (104, "DAIRY"),
            (105, "Snacks"), (106, "FROZEN")]
OFFERS = [
    # offer_id, category, discount, budget, max_customers, min_customers, start_week, end_week
    (1, "PORK", 2.0, 4.0, None, None, None, None),
    (2, "BAKERY", 1.0, None, 2, None, None, None),
    (3, "INFANT FORMULA", 3.0, 20.0, None, None, None, None),
    (4, None, 1.0, 5.0, None, None, None, None),
    (5, "DAIRY", 1.5, 50.0, None, None, 41, None),
    (6, "SNACKS", 1.0, None, None, None, None, 39),
    (7, "BAKERY", 0.5, 5.0, None, 4, None, None),
    (8, "FROZEN", 1.0, None, None, None, None, None),
    (9, "snacks ", 1.0, None, None, None, None, None),
]
OFFER_PRODUCTS = [(4, 104), (4, 105)]
RESTRICTIONS = [(1, "pork", "exclude"), (2, " Snacks", "exclude"), (3, "infant formula", "opt_in")]
HISTORY = [
    (4, 2, 38),   # cooldown forbids (4, 2)
    (4, 1, 35),   # before the cooldown (weeks 36..39): allowed
    (5, 7, 40),   # the planning week itself: ignored
    (6, 1, 38),   # frequency window (weeks 37..39): counts
    (6, 7, 39),   # counts
    (6, 2, 36),   # before the window: does not count (but cools (6, 2) down)
    (6, 999, 39),  # unknown offer: dropped by validate, does not count
    (6, 3, 40),   # the planning week: not counted in the window
]

# customer_id, rank, offer_id, p_redeem  (expected_cost = p * discount, score = 2 * p)
GOOD = [
    (1, 1, 2, 0.5),
    (1, 2, 4, 0.2),
    (2, 1, 1, 0.5),
    (2, 2, 2, 0.25),
    (3, 1, 1, 0.5),   # ranks follow scores (score = 2 * p)
    (3, 2, 3, 0.4),
    (4, 1, 1, 0.5),
    (4, 2, 4, 0.2),
    (5, 1, 7, 0.3),
    (6, 1, 4, 0.2),
]

RULES: dict[str, Any] = {
    "max_offers_per_customer": 3,
    "max_offers_per_category": 1,
    "cooldown_weeks": 4,
    "max_offers_per_window": 3,
    "window_weeks": 4,
    "global_budget": 100,
    "budget_scale": 1.0,
    "sensitive_categories": ["Infant Formula"],
    "sensitive_policy": "opt_in",
}


def ident(kind: str, value: Any, string_ids: bool) -> Any:
    """An ID as the input folder types it: ``C1``/``P101``/``O1`` with string IDs."""
    if value is None or not string_ids:
        return value
    return f"{kind}{value}"


def _csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    text = ",".join(header) + "\n" + "".join(",".join(cell(v) for v in r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def write_inputs(folder: Path, *, string_ids: bool = False, scores: list[tuple] | None = None,
                 extra_restrictions: list[tuple] = ()) -> Path:
    """Write the input folder as CSV files; ``scores`` rows are (customer, offer, p, value)."""
    folder.mkdir(parents=True, exist_ok=True)
    c = lambda v: ident("C", v, string_ids)  # noqa: E731
    p = lambda v: ident("P", v, string_ids)  # noqa: E731
    o = lambda v: ident("O", v, string_ids)  # noqa: E731
    _csv(folder / "customers.csv", ["customer_id", "segment"], [(c(x), "a") for x in CUSTOMERS])
    _csv(folder / "products.csv", ["product_id", "category"], [(p(x), cat) for x, cat in PRODUCTS])
    _csv(folder / "offers.csv",
         ["offer_id", "category", "discount", "budget", "max_customers", "min_customers",
          "start_week", "end_week"],
         [(o(r[0]), *r[1:]) for r in OFFERS])
    _csv(folder / "offer_products.csv", ["offer_id", "product_id"],
         [(o(a), p(b)) for a, b in OFFER_PRODUCTS])
    _csv(folder / "restrictions.csv", ["customer_id", "category", "rule"],
         [(c(a), b, r) for a, b, r in [*RESTRICTIONS, *extra_restrictions]])
    _csv(folder / "history.csv", ["customer_id", "offer_id", "week"],
         [(c(a), o(b), w) for a, b, w in HISTORY])
    _csv(folder / "transactions.csv", ["customer_id", "product_id", "week", "sales_value"],
         [(c(1), p(101), 39, 3.5), (c(2), p(103), 38, 2.0)])
    if scores is not None:
        _csv(folder / "scores.csv", ["customer_id", "offer_id", "p_redeem", "value"],
             [(c(a), o(b), pr, v) for a, b, pr, v in scores])
    return folder


def write_scenario(root: Path, *, week: int = WEEK, **rules: Any) -> Path:
    """Write ``root/scenario.toml`` pointing at ``root/data`` and ``root/run``."""
    merged = {**RULES, **rules}
    lines = ['name = "check-test"', f"week = {week}", 'data = "data"', 'output = "run"', "",
             "[rules]"]
    for key, value in merged.items():
        if value is None:
            continue
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    path = root / "scenario.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def discount_of(offer: int) -> float:
    return next(r[2] for r in OFFERS if r[0] == offer)


def assignment_rows(rows: list[tuple] = GOOD) -> list[dict[str, Any]]:
    """(customer, rank, offer, p[, expected_cost[, score]]) -> assignment dicts (integer IDs)."""
    out = []
    for row in rows:
        cust, rank, offer, pr = row[:4]
        cost = row[4] if len(row) > 4 else pr * discount_of(offer)
        score = row[5] if len(row) > 5 else 2 * pr
        out.append({"customer_id": cust, "rank": rank, "offer_id": offer, "p_redeem": pr,
                    "expected_cost": cost, "score": score})
    return out


def reranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with each customer's ranks renumbered by score, best first, equal scores by
    offer (as the writer ranks them; offer IDs here are in the offers table's order)."""
    out = sorted((dict(r) for r in rows),
                 key=lambda r: (r["customer_id"], -r["score"], r["offer_id"]))
    for k, row in enumerate(out):
        same = k > 0 and out[k - 1]["customer_id"] == row["customer_id"]
        row["rank"] = out[k - 1]["rank"] + 1 if same else 1
    return out


def write_run(run_dir: Path, rows: list[dict[str, Any]], *, string_ids: bool = False,
              summary: bool = True, fmt: str = "parquet", budget_scale: float = 1.0) -> Path:
    """Write a run folder: assignments (+ offers_summary aggregated from the same rows, budgets
    times ``budget_scale``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = [{**r, "customer_id": ident("C", r["customer_id"], string_ids),
             "offer_id": ident("O", r["offer_id"], string_ids)} for r in rows]
    id_type = pl.Utf8 if string_ids else pl.Int64
    frame = pl.DataFrame(data, schema={"customer_id": id_type, "rank": pl.Int64,
                                       "offer_id": id_type, "p_redeem": pl.Float64,
                                       "expected_cost": pl.Float64, "score": pl.Float64})
    if fmt == "parquet":
        frame.write_parquet(run_dir / "assignments.parquet")
    else:
        frame.write_csv(run_dir / "assignments.csv")
    if summary:
        budgets = {ident("O", r[0], string_ids): None if r[3] is None else r[3] * budget_scale
                   for r in OFFERS}
        # a row per offer, as a run writes it (offers no one got: 0 customers)
        every = pl.DataFrame({"offer_id": list(budgets)}, schema={"offer_id": id_type})
        summ = (every.join(frame.group_by("offer_id", maintain_order=True)
                           .agg(customers=pl.len(), expected_redemptions=pl.col("p_redeem").sum(),
                                expected_cost=pl.col("expected_cost").sum()),
                           on="offer_id", how="left", maintain_order="left")
                .with_columns(pl.col("customers").fill_null(0),
                              pl.col("expected_redemptions", "expected_cost").fill_null(0.0),
                              budget=pl.col("offer_id").replace_strict(budgets, default=None,
                                                                       return_dtype=pl.Float64))
                .with_columns(budget_used=pl.col("expected_cost") / pl.col("budget")))
        summ.write_parquet(run_dir / "offers_summary.parquet")
    return run_dir


def complete_run(run_dir: Path, scenario_path: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Give a hand-made run folder (:func:`write_run`, Parquet tables) the other files a run
    writes, so ``offeropt check`` reads it as a whole run folder (rule ``missing_output``): the
    tables' CSV copies, ``report.html`` and a ``manifest.json`` recording the scenario (after
    ``overrides``) and the inputs' rows and SHA-256, as a run made from them would, and its objective."""
    import json

    from optimizer.core.config import load_scenario, scenario_to_dict
    from optimizer.io.validate import load_inputs

    scenario = load_scenario(scenario_path, list(overrides))
    inputs = load_inputs(scenario.data)
    for name in ("assignments", "offers_summary"):
        pl.read_parquet(run_dir / f"{name}.parquet").write_csv(run_dir / f"{name}.csv")
    objective = float(pl.read_parquet(run_dir / "assignments.parquet").get_column("score").sum())
    manifest = {"package_version": "test", "scenario": scenario_to_dict(scenario),
                "inputs": {name: {"rows": inputs.row_counts[name], "sha256": sha}
                           for name, sha in inputs.sha256.items()},
                "objective": objective, "upper_bound": objective, "gap": 0.0,
                "solver": {"status": "optimal", "method": "exact", "iterations": 0},
                "seconds": {}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, default=str), encoding="utf-8")
    (run_dir / "report.html").write_text("<html></html>\n", encoding="utf-8")
    return run_dir
