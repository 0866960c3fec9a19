"""``offeropt simulate``: a quarter of weekly plans on a synthetic world with known truth.

Registered on the ``offeropt`` group by :mod:`optimizer.cli`; a thin layer over
:mod:`optimizer.apps.simulate.run`. Any :class:`OptimizerError` becomes a message on stderr and
its exit code (2 bad input, 3 the environment refuses, 4 out of memory); ``--check`` verifies every simulated week's plan with ``offeropt check`` and exits 1
on the first one that breaks a rule.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optimizer.cli_text import _fail
from optimizer.core.errors import OptimizerError


class _Violation(Exception):
    """A simulated week's plan broke a hard rule (``--check``)."""


def _verify(scenario, run_dir: Path) -> None:
    from optimizer.check.verify import check_run

    report = check_run(scenario, run_dir)
    if not report.ok:
        raise _Violation(report.describe())


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--customers", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Customers in each seed's world.")
@click.option("--offers", type=click.IntRange(min=1), default=200, show_default=True,
              help="Offers in each seed's world.")
@click.option("--weeks", type=click.IntRange(min=1), default=12, show_default=True,
              help="Weeks simulated, from the scenario's week on.")
@click.option("--strategies", default="customer_first,offer_first,popular,random",
              show_default=True, help="Comma-separated: customer_first, offer_first, popular, "
                                      "random.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Worlds simulated: seeds FIRST-SEED .. FIRST-SEED + N - 1.")
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="The first seed.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for simulate.json and report.html (written whole or not at all); "
                   "default: none, the results are printed only.")
@click.option("--worlds", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A new folder to keep every strategy's tables and weekly run folders in "
                   "(for offeropt measure, and offeropt check --force: the tables hold the "
                   "weeks after each run); default: removed at the end.")
@click.option("--check", "verify", is_flag=True,
              help="Verify every week's plan with offeropt check; exit 1 at a violation.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="Change a scenario knob (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes planning a week's strategies side by side (2 on 2 cores; each "
                   "holds one strategy's run in memory). The result does not depend on it.")
@click.option("--json", "as_json", is_flag=True, help="Print simulate.json to stdout.")
@click.option("--quiet", is_flag=True, help="Print no progress.")
def simulate(scenario: Path, customers: int, offers: int, weeks: int, strategies: str,
             seeds: int, first_seed: int, out_dir: Path | None, worlds: Path | None, verify: bool,
             overrides: tuple[str, ...], workers: int, as_json: bool, quiet: bool) -> None:
    """Simulate WEEKS weeks of SCENARIO's rules and budgets on a synthetic world per seed,
    planning each week with every strategy from the tables its world wrote so far, and compare
    their incremental margin at equal spend against the world without offers.

    Example: offeropt simulate scenarios/simulate.toml --customers 2000 --offers 50 --weeks 4
    --seeds 2 --out runs/simulate
    """
    from optimizer.apps.simulate.run import parse_strategies
    from optimizer.apps.simulate.run import simulate as run_simulation
    from optimizer.core.config import load_scenario

    err = Console(stderr=True)
    say = None if (quiet or as_json) else (lambda m: err.print(Text(m)))
    try:
        names = parse_strategies(strategies)
        loaded = load_scenario(scenario, overrides)
        summary = run_simulation(loaded, customers, offers, weeks, names, seeds, out_dir, worlds,
                                 _verify if verify else None, say, first_seed, workers)
    except OptimizerError as exc:  # 2 bad input, 3 the environment refuses, 4 out of memory
        _fail(exc)
    except _Violation as exc:
        click.echo(str(exc))
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    if quiet:
        return
    table = Table(title=f"{customers:,} customers x {offers} offers x {weeks} weeks, "
                        f"{seeds} seed(s): means over seeds")
    for column in ("strategy", "incremental margin", "incremental sales", "spend",
                   "planned spend", "redemptions", "retained", "customer equity"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name, entry in summary["strategies"].items():
        t = entry["total"]
        table.add_row(Text(name), *(f"{t[k]['mean']:,.0f}" for k in (
            "incremental_margin", "incremental_sales", "spend", "planned_spend", "redemptions",
            "customers_retained", "customer_equity")))
    Console().print(table)
    for name, c in summary["comparisons"].items():
        click.echo(f"{name}: wins {c['wins']} of {c['seeds']} seeds")
    if out_dir is not None:
        click.echo(f"wrote {out_dir / 'simulate.json'} and {out_dir / 'report.html'}")
