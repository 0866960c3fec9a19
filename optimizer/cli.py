"""``offeropt``: the command line, a thin layer over the library.

The only module that imports click. Any :class:`OptimizerError` becomes a message on stderr and
exit code 2; ``offeropt check`` exits 1 when a run breaks a rule.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import OptimizerError

err_console = Console(stderr=True)


def _fail(exc: OptimizerError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="offeropt")
@click.option("-v", "--verbose", is_flag=True, help="Log each step's details to stderr.")
def main(verbose: bool) -> None:
    """Plan which personalised offers each customer gets this week.

    Tables in (an input folder), one TOML scenario, a run folder out. See the README and
    CONTRACT.md for the tables and the scenario's knobs.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="Override a scenario knob, e.g. --set rules.max_offers_per_customer=3 "
                   "(repeatable; values in TOML syntax).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts).")
def run(scenario: Path, overrides: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Plan the week of SCENARIO and write its run folder.

    Example: offeropt run scenarios/demo.toml --set rules.budget_scale=0.8
    """
    from .config import load_scenario
    from .pipeline import run_scenario

    console = Console(stderr=True, quiet=quiet or as_json)

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "stage":
            console.print(f"[cyan]{info['stage']}[/] ...", highlight=False)
        elif kind == "iteration":
            console.print(f"  pass {int(info['iteration']):>3}: objective {info['best_objective']:,.2f}"
                          f"  bound {info['best_bound']:,.2f}  gap {100 * info['gap']:.4f}%",
                          highlight=False)
    try:
        loaded = load_scenario(scenario, overrides)
        result = run_scenario(loaded, progress=progress)
    except OptimizerError as exc:
        _fail(exc)
        return
    m = result.manifest
    summary = {
        "name": loaded.name, "week": loaded.week, "output": str(result.output),
        "objective": m["objective"], "upper_bound": m["upper_bound"], "gap": m["gap"],
        "status": m["solver"]["status"], "iterations": m["solver"]["iterations"],
        "assignments": result.assignments.height, "customers_reached": m["customers_reached"],
        "expected_cost": float(result.offers_summary.get_column("expected_cost").sum()),
        "min_customers_shortfalls": len(m["min_customers_shortfalls"]),
        "seconds": m["seconds"],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if quiet:
        return
    table = Table(title=f"{loaded.name}: week {loaded.week}", show_header=False)
    for key in ("objective", "upper_bound", "gap", "status", "iterations", "assignments",
                "customers_reached", "expected_cost", "min_customers_shortfalls", "output"):
        value = summary[key]
        text = (f"{100 * value:.4f}%" if key == "gap" else f"{value:,.2f}"
                if isinstance(value, float) else str(value))
        table.add_row(key, text)
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()))
    Console().print(table)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="The same overrides the run was made with.")
def check(scenario: Path, run_dir: Path | None, overrides: tuple[str, ...]) -> None:
    """Verify every hard rule of a run against the raw inputs, independently of the solver.

    RUN_DIR defaults to the scenario's output folder. Exits 1 listing every violation.

    Example: offeropt check scenarios/demo.toml runs/demo
    """
    from .check import check_run
    from .config import load_scenario

    try:
        report = check_run(load_scenario(scenario, overrides), run_dir)
    except OptimizerError as exc:
        _fail(exc)
        return
    if report.ok:
        click.echo(f"ok: {report.assignments} assignments in {report.run_dir} obey every hard rule")
        return
    click.echo(report.describe())
    sys.exit(1)


@main.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--customers", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Number of customers.")
@click.option("--offers", type=click.IntRange(min=1), default=200, show_default=True,
              help="Number of offers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--scores-per-customer", type=click.IntRange(min=1), default=None,
              help="Write a scores table with this many offers per customer (and no "
                   "transactions) instead of purchase history: for solver benchmarks.")
@click.option("--weeks", type=click.IntRange(min=1), default=26, show_default=True,
              help="Weeks of purchase history.")
@click.option("--week", "planning_week", type=int, default=40, show_default=True,
              help="The planning week the data leads up to.")
@click.option("--format", "file_format", type=click.Choice(["parquet", "csv"]),
              default="parquet", show_default=True, help="File format of the tables.")
def demo_data(out_dir: Path, customers: int, offers: int, seed: int,
              scores_per_customer: int | None, weeks: int, planning_week: int,
              file_format: str) -> None:
    """Write a realistic synthetic input folder to OUT_DIR, deterministically.

    Example: offeropt demo-data data/demo --customers 20000 --offers 200 --seed 0
    """
    from .synthetic import write_demo_data

    console = Console(stderr=True)
    counts = write_demo_data(out_dir, customers, offers, seed,
                             scores_per_customer=scores_per_customer, weeks=weeks,
                             planning_week=planning_week, file_format=file_format,
                             progress=lambda msg: console.print(f"[cyan]{msg}[/]",
                                                                highlight=False))
    for name, rows in counts.items():
        click.echo(f"{name}: {rows:,} rows")


if __name__ == "__main__":  # pragma: no cover
    main()
