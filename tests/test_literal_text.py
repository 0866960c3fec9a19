"""Names and IDs are data: printed and drawn as written (issue 22, item 9).

Rich markup in a scenario name (``[/]``) crashed ``run`` after it had written its folder, and
``compare``, ``explain`` and error messages the same way; matplotlib read ``$...$`` in an offer ID
as mathtext (``$\\frac{$ OFF 1001`` crashed the report, ``$5 OFF $20`` rendered as maths). Here a
small demo gets text offer IDs full of both, and a scenario name and output folder full of markup.
"""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from tests.tiny_world import write_scenario

NAME = "[/] [bold]plan[/bold] :smile: <b>&"
MATH = "$\\frac{$ OFF 1001"


def _offer_id(k: int) -> str:
    return MATH if k == 0 else f"${k} OFF ${4 * k} [/] [red]"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A 300-customer demo whose offers (and every table naming one) have text IDs, a scenario
    named in markup, and its run (written once)."""
    root = tmp_path_factory.mktemp("literal")
    data = root / "data"
    write_demo_data(data, customers=300, offers=12, seed=0)
    ids = pl.read_parquet(data / "offers.parquet").get_column("offer_id").to_list()
    mapping = {old: _offer_id(k) for k, old in enumerate(ids)}
    for table in ("offers", "offer_products", "history", "redemptions"):
        path = data / f"{table}.parquet"
        frame = pl.read_parquet(path)
        # history may name retired offers: they keep a text form of their number
        frame.with_columns(pl.col("offer_id").replace_strict(
            mapping, default=pl.col("offer_id").cast(pl.Utf8), return_dtype=pl.Utf8)
        ).write_parquet(path)
    scenario = write_scenario(root / "scenario.toml", name=NAME, output="run [/]",
                              rules={"max_offers_per_customer": 3, "global_budget": 60.0},
                              solver={"max_iterations": 5})
    # --append-history: the summary used to crash after the folder and history were written
    result = CliRunner().invoke(main, ["run", str(scenario), "--append-history"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(data / "history.parquet").get_column("week").max() == 40
    (root / "run.out").write_text(result.output)
    return root


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_run_prints_the_name_as_written(world):
    output = (world / "run.out").read_text()
    assert NAME in _flat(output), output
    assert "run [/]" in output


def test_report_draws_and_prints_ids_as_written(world):
    page = (world / "run [/]" / "report.html").read_text()
    svg_text = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", page)]
    assert MATH in svg_text                                   # drawn literally, no mathtext
    assert any(t.startswith("$") and " OFF $" in t and t.endswith("[/] [red]") for t in svg_text)
    assert html.escape(NAME, quote=False) in page             # the page escapes the name
    assert "<b>&" not in page.replace("<b>&amp;", "")
    assert f"<td>{html.escape(MATH, quote=False)}</td>" in page


def test_check_explain_and_compare_print_ids_as_written(world):
    scenario = str(world / "scenario.toml")
    runner = CliRunner(env={"COLUMNS": "300"})   # tables wide enough not to wrap an ID
    check = runner.invoke(main, ["check", scenario])
    assert check.exit_code == 0, check.output
    given = pl.read_parquet(world / "run [/]" / "assignments.parquet",
                            glob=False).row(0, named=True)
    explain = runner.invoke(main, ["explain", scenario, str(given["customer_id"]),
                                   "--top", "20"])
    assert explain.exit_code == 0, explain.output
    assert given["offer_id"] in explain.output, explain.output
    assert "[/] [red]" in explain.output
    copy = world / "copy [/] [bold]"
    if not copy.exists():
        shutil.copytree(world / "run [/]", copy)
    compare = runner.invoke(main, ["compare", str(world / "run [/]"), str(copy), "--html",
                                   str(world / "compare [/].html"), "--offers", "30"])
    assert compare.exit_code == 0, compare.output
    assert "[/] [red]" in compare.output and "compare [/].html" in compare.output
    page = (world / "compare [/].html").read_text()
    assert html.escape(NAME, quote=False) in page


def test_error_messages_print_paths_as_written(world):
    missing = world / "no run [/] here"
    result = CliRunner().invoke(main, ["check", str(world / "scenario.toml"), str(missing)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "error:" in result.output and "no run [/] here" in _flat(result.output)


def test_a_data_folder_with_brackets_is_a_path_not_a_pattern(tmp_path):
    """polars reads ``[...]`` in a path as a glob unless told otherwise; run and check must not."""
    from click.testing import CliRunner

    from optimizer.apps.synthetic import write_demo_data
    from optimizer.cli import main

    data = tmp_path / "week [40]"
    write_demo_data(data, customers=200, offers=10, seed=2)
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "b"\nweek = 40\ndata = "week [40]"\noutput = "run [40]"\n'
                        '[solver]\nmax_iterations = 2\n')
    ran = CliRunner().invoke(main, ["run", str(scenario), "--quiet"])
    assert ran.exit_code == 0, ran.output
    checked = CliRunner().invoke(main, ["check", str(scenario)])
    assert checked.exit_code == 0, checked.output
