"""Polars operations whose output order is unspecified do not decide an output's bytes
(docs/guarantees.md, "Byte-identical reproducibility").

Polars gives no row order for a ``join`` without ``maintain_order`` (its documentation: "the
ordering might differ across Polars versions or even between different runs"), for the groups of
``group_by`` and the rows of ``unique`` without ``maintain_order=True`` (both follow its threads:
the same frame's group order differs at ``POLARS_MAX_THREADS`` 1 and 4), and a sort without
``maintain_order=True`` is not stable. Where that order reaches a published file, a report, a
message of ``offeropt check`` or ``offeropt measure``, or the order of a float sum or a
cumulative sum whose bits land in one of them, the code asks for an order.

A rule holds it so, with ``ast``: every ``join``, ``group_by`` and ``unique`` call of the package
names ``maintain_order``, or is listed in ``_ALLOWED`` (``"module:function method" -> (count,
why)``) with why its order cannot reach an output: it is only looked up by key, used as a set
(counts, ``is_in``, semi and anti joins), sorted afterwards on keys that are unique, or its rows
become keys numpy sorts. The test fails for a new call, for more of a listed one and for a listed
one that went away (so the list shrinks). Sorts are not held by the rule (most sort on unique
keys; the few whose ties reach an output ask for ``maintain_order=True``).

Measured with polars 2.1.0: a left, inner, semi or anti join kept the left frame's order at 1 and
4 threads; a full join's rows (with repeated keys), a ``group_by``'s groups and ``unique``'s rows
moved with the threads; a sort on two keys or more without ``maintain_order`` put ties in an
order of its own, the same at any thread count. No command (``run``, ``check``,
``demo-outcomes``, ``measure``, ``compare`` on a world with flights, channels, a contact budget
and holdouts) wrote other bytes at 1 and 4 threads before the fixes, so no test compares thread
counts here (``tests/test_threads_bytes.py`` does for pacing and the outcomes' truth); the
report's tie order, which the two-key sort did decide, is tested below.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import polars as pl

from optimizer.io.runview import RunView
from optimizer.report import page
from tests.test_code_shape import PACKAGE
from tests.test_cpu_rounding import scan_with

METHODS = ("join", "group_by", "unique")
# what a text, a path or a list's join is (not a frame's)
_NOT_FRAMES = ("list", "str", "arr", "path")

_LOOKUP = "a lookup table: read only by key (a join on its key, is_in, an index)"
_SET = "a set: only its height, n_unique, is_in or a semi/anti join's rows are read"
_NUMPY = "its rows become integer keys numpy sorts, or a sparse matrix of distinct pairs"
_ALLOWED: dict[str, tuple[int, str]] = {
    "optimizer/apps/backtest.py:replay_units join": (
        1, "credited: one row per send, a lookup; the sends are sorted by (c, o, week) after"),
    "optimizer/apps/backtest.py:replay_units unique": (
        3, "whole rows made unique, then sorted on every column (credited: a lookup)"),
    "optimizer/apps/measure.py:_require_outcomes join": (1, _SET),
    "optimizer/apps/measure.py:_require_outcomes unique": (1, _SET),
    "optimizer/apps/measure.py:_rows unique": (
        1, "the universal arm's customers, unique: the rows are sorted by (group, key, arm) "
           "after, no tie among them"),
    "optimizer/apps/measure.py:_sum_by unique": (1, "a Series of the keys, unique, then sorted"),
    "optimizer/apps/measure.py:measure_runs unique": (
        1, "a Series of offer ids, unique, then sorted"),
    "optimizer/apps/measure.py:program_arm unique": (
        1, "one column made unique, then sorted on it"),
    "optimizer/apps/outcomes.py:_offer_products join": (
        1, "(offer_id, product_id) rows made unique, then sorted on both"),
    "optimizer/check/campaign.py:attribute_hits unique": (1, _SET),
    "optimizer/check/campaign_figures.py:_channels group_by": (
        2, "integer counts per channel, joined to the channels table in its order"),
    "optimizer/check/campaign_figures.py:_funders group_by": (
        1, "integer counts per funder, joined to the funders table in its order"),
    "optimizer/check/campaign_figures.py:_group_flights group_by": (1, _LOOKUP),
    "optimizer/check/campaign_figures.py:_group_flights join": (
        2, "one row per flight, read into a dict that _compare walks in sorted key order"),
    "optimizer/check/campaign_figures.py:_groups group_by": (
        2, "integer counts, looked up by group (the limit is one value per group: validated)"),
    "optimizer/check/campaign_figures.py:_groups join": (1, "feeds the integer counts above"),
    "optimizer/check/campaign_figures.py:_groups unique": (1, "offer ids, unique, then sorted()"),
    "optimizer/check/figures.py:_shortfall_problems group_by": (1, _LOOKUP),
    "optimizer/check/figures.py:_shortfall_problems join": (1, "compared as sorted() lists"),
    "optimizer/check/flights.py:_over_caps join": (
        2, "the violations, sorted on their unique key after"),
    "optimizer/check/pacing.py:_active join": (
        1, "the group flights kept (semi), heads sorted on their unique key after"),
    "optimizer/check/pacing.py:_active unique": (1, _SET),
    "optimizer/check/pacing.py:expected_pacing group_by": (
        1, "each offer's first flight week, a lookup (weekly_spend joins it keeping its own "
           "tables' order)"),
    "optimizer/check/pacing.py:expected_pacing join": (
        4, "lookups onto the grid, which is sorted on (key, week), unique, after"),
    "optimizer/check/pins.py:_at_capacity join": (
        2, "the pins asked: only the set of ids released is read"),
    "optimizer/check/pins.py:_forbidden join": (1, "only the set of ids a rule forbids is read"),
    "optimizer/check/pins.py:_limits group_by": (2, _LOOKUP),
    "optimizer/check/pins.py:_limits join": (2, _LOOKUP),
    "optimizer/check/pins.py:_limits unique": (1, _LOOKUP),
    "optimizer/check/pins.py:_no_channel_room group_by": (1, "the set of ids every channel closes"),
    "optimizer/check/pins.py:_no_channel_room join": (
        3, "consent (a lookup; a pin's channels part at the sort on channel_id), the pins asked "
           "(a set of ids), spent (by id)"),
    "optimizer/check/pins.py:_no_channel_room unique": (
        1, "the pins asked: only the set of ids is read"),
    "optimizer/check/pins.py:_pins_frame group_by": (
        1, "per assigned pair, joined to the pins (sorted by c, o) keeping their order"),
    "optimizer/check/pins.py:_pins_frame unique": (
        3, "the pins, then sorted on (c, o); the controls: sets"),
    "optimizer/check/pins.py:_used_before group_by": (
        1, "one row per key and value (the cumulative sum's end), read by join_asof by key"),
    "optimizer/check/pins.py:unjustified_pins join": (
        2, "the sample, sorted on (customer_id, offer_id) after"),
    "optimizer/check/rules.py:_check_frequency group_by": (1, _LOOKUP),
    "optimizer/check/rules.py:_cooldown_hits group_by": (1, _LOOKUP),
    "optimizer/check/rules.py:_cooldown_hits join": (
        1, "the recent sends of assigned pairs (semi), grouped into a lookup"),
    "optimizer/check/rules.py:_restrictions unique": (1, _SET),
    "optimizer/check/stability.py:_check_pins join": (
        5, "weeks' update and the pins (heights, the pins frame sorts them); the sample sorted "
           "after"),
    "optimizer/check/stability.py:_previous join": (
        2, "last week's pairs: made unique and used as a set"),
    "optimizer/check/stability.py:check_stability join": (3, _SET),
    "optimizer/check/stability.py:check_stability unique": (2, _SET),
    "optimizer/core/interrupt.py:run_interruptible join": (2, "a thread's join, not a frame's"),
    "optimizer/io/runview.py:RunView.offers_per_customer group_by": (
        2, "integer counts, sorted on the (unique) number of offers after"),
    "optimizer/io/validate_rules.py:validate_offer_products unique": (1, _SET),
    "optimizer/model/eligibility.py:compile_rules group_by": (2, _NUMPY),
    "optimizer/model/eligibility.py:compile_rules join": (3, _NUMPY),
    "optimizer/model/eligibility.py:compile_rules unique": (1, _NUMPY),
    "optimizer/model/flights.py:_flights join": (
        2, "offers of group flights sorted by o (one flight each); the flights kept (semi) are "
           "heads, whose grid is sorted on (k, week) before any sum or output"),
    "optimizer/model/flights.py:_flights unique": (1, _SET),
    "optimizer/model/groups.py:group_data group_by": (
        1, "each group's first row, sorted on it (unique) after"),
    "optimizer/model/stability.py:from_run join": (2, _NUMPY),
    "optimizer/report/compare.py:_changed join": (
        1, "the changed customers, sorted on customer_id (unique) after"),
    "optimizer/report/compare.py:_offers_table join": (
        1, "sorted on (change, offer_id), offer_id unique, after"),
    "optimizer/report/compare.py:compare_charts unique": (1, "the deciles, sorted()"),
    "optimizer/scoring/baselines.py:_pair_weeks group_by": (1, _NUMPY),
    "optimizer/scoring/baselines.py:_pair_weeks join": (1, _NUMPY),
    "optimizer/scoring/baselines.py:_pair_weeks unique": (1, _NUMPY),
    "optimizer/scoring/baselines.py:shopping_weeks group_by": (
        1, "integer counts written by customer index"),
    "optimizer/scoring/baselines.py:week_shares join": (1, _NUMPY),
    "optimizer/scoring/baselines.py:week_shares unique": (2, _NUMPY),
    "optimizer/scoring/clv.py:LifetimeValue.fit group_by": (
        1, "integer counts, sorted on the (unique) group keys before the fit's sums"),
    "optimizer/scoring/features.py:offer_categories group_by": (
        1, "sorted on (o, rank, n, category), unique, before the unique that keeps the first"),
    "optimizer/scoring/features.py:offer_categories join": (1, "feeds the group_by above"),
    "optimizer/scoring/features.py:offer_categories unique": (1, "category names, sorted()"),
    "optimizer/scoring/features.py:purchase_lines unique": (
        2, "category and brand names, sorted()"),
    "optimizer/scoring/fit.py:_sent_pairs group_by": (2, "sorted on (c, o), unique, after"),
    "optimizer/scoring/repurchase.py:sources group_by": (1, _NUMPY),
    "optimizer/scoring/response.py:first_weeks group_by": (
        1, "read by _sent_pairs (sorts it) and the repurchase sources (numpy sorts their keys)"),
}


class _Walker(ast.NodeVisitor):
    def __init__(self, numpy: set[str]) -> None:
        self.numpy = numpy  # the names numpy is imported as (np.unique is numpy's, sorted)
        self.scope: list[str] = []
        self.hits: Counter[str] = Counter()

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in METHODS and not any(
                k.arg == "maintain_order" for k in node.keywords) and not _text_join(func) and not (
                isinstance(func.value, ast.Name) and func.value.id in self.numpy):
            self.hits[f"{'.'.join(self.scope) or '<module>'} {func.attr}"] += 1
        self.generic_visit(node)


def _text_join(func: ast.Attribute) -> bool:
    """``", ".join(...)`` (bytes too), ``os.path.join``, ``expr.list.join``, ``expr.str.join``."""
    owner = func.value
    return func.attr == "join" and (
        (isinstance(owner, ast.Constant) and isinstance(owner.value, (str, bytes)))
        or (isinstance(owner, ast.Attribute) and owner.attr in _NOT_FRAMES))


def scan(root: Path = PACKAGE) -> Counter[str]:
    """Every ``join``, ``group_by`` and ``unique`` call under ``root`` without
    ``maintain_order``: ``"path:function method"`` -> how many times."""
    return scan_with(root, lambda tree: _Walker({a.asname or a.name for node in ast.walk(tree)
                                                 if isinstance(node, ast.Import)
                                                 for a in node.names if a.name == "numpy"}))


def test_scan_flags_unordered_calls_and_nothing_else(tmp_path: Path) -> None:
    pkg = tmp_path / "optimizer"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import os\nimport numpy as np\nimport polars as pl\n\n"
        "class K:\n    def f(self, a, b):\n"
        "        x = a.join(b, on='k', how='left').group_by('k').agg(pl.len())\n"
        "        return x.unique(), a.lazy().join(b.lazy(), on='k').collect()\n\n"
        "def g(a, b):\n"
        "    a.join(b, on='k', maintain_order='left').group_by('k', maintain_order=True)\n"
        "    a.unique(maintain_order=True).select(pl.col('l').list.join(','))\n"
        "    return ', '.join(['x']) + os.path.join('a', 'b'), np.unique(a)\n")
    assert scan(pkg) == Counter({"optimizer/m.py:K.f join": 2, "optimizer/m.py:K.f group_by": 1,
                                 "optimizer/m.py:K.f unique": 1})


def test_unordered_polars_calls_are_listed_with_why_their_order_cannot_reach_an_output() -> None:
    hits = scan()
    new = sorted(k for k in hits if k not in _ALLOWED)
    grown = {k: (hits[k], _ALLOWED[k][0]) for k in hits
             if k in _ALLOWED and hits[k] > _ALLOWED[k][0]}
    fewer = {k: (hits.get(k, 0), n) for k, (n, _) in _ALLOWED.items() if hits.get(k, 0) < n}
    assert not new, (
        f"polars calls of unspecified order: {new}; give them maintain_order (a join: 'left' "
        "or 'left_right'; group_by, unique: True), or, where their order provably reaches no "
        "output, list them in _ALLOWED with why")
    assert not grown, f"listed calls grew (now, listed): {grown}"
    assert not fewer, f"fewer than listed now, lower or drop them in _ALLOWED: {fewer}"


def _tied_summary() -> pl.DataFrame:
    """60 capped offers: 40 unused (0 % used, 0 spent: tied), then 20 of distinct budget use."""
    used = [0.0] * 40 + [0.9 - 0.01 * k for k in range(20)]
    return pl.DataFrame({
        "offer_id": [f"o{k:02d}" for k in range(60)], "customers": [0] * 60,
        "expected_redemptions": [0.0] * 60, "expected_cost": [u * 100 for u in used],
        "budget": [100.0] * 60, "budget_used": used, "shadow_price": [0.0] * 60})


def test_the_reports_ties_follow_the_offers_order() -> None:
    """The budget chart and the offers table of report.html list offers of equal budget use and
    spend in the offers' order. Without ``maintain_order`` the chart's two-key sort put the
    unused offers in an order of its own (o15, o21, ...): it showed other offers than the first
    ones (the table's one-key sort kept them; polars promises neither)."""
    manifest = {"customers": 0, "objective": 0.0, "upper_bound": 0.0, "gap": 0.0,
                "solver": {"status": "optimal", "method": "scale", "iterations": 1}}
    view = RunView("tied", None, manifest, pl.DataFrame(
        schema={"customer_id": pl.Utf8, "rank": pl.Int64, "offer_id": pl.Utf8}),
        _tied_summary(), None)
    svg = page.run_charts(view)["budget"]
    unused = page.BUDGET_CHART_OFFERS - 20
    assert [f"o{k:02d}" for k in range(40) if f">o{k:02d}<" in svg] == [
        f"o{k:02d}" for k in range(unused)]
    tied = [svg.index(f">o{k:02d}<") for k in range(unused)]
    assert tied == sorted(tied) or tied == sorted(tied, reverse=True)
    html = page.render_run_report(view)
    rows = [html.index(f">o{k:02d}<") for k in range(40)]
    assert rows == sorted(rows)
