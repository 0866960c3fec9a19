"""The planners' questions about one run on the command line: ``explain`` (why a customer got
her offers) and ``backtest`` (how the fitted scoring ranks held-out weeks); added to the group by
:mod:`optimizer.cli`.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optimizer.cli_text import _fail, _lit, err_console
from optimizer.core.errors import OptimizerError


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("customer_id")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The run folder [default: the scenario's output folder].")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="The same overrides the run was made with.")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True,
              help="Show the given offers and this many next-best offers by score.")
@click.option("--json", "as_json", is_flag=True, help="Print every offer as JSON.")
def explain(scenario: Path, customer_id: str, run_dir: Path | None, overrides: tuple[str, ...],
            top: int, as_json: bool) -> None:
    """Why CUSTOMER_ID got her offers in a run of SCENARIO and not the next-best ones.

    Each offer with its score and status: given, ineligible (window, exclude, sensitive,
    cooldown), capped (per-customer, per-category or window cap full of better offers), priced
    out by a budget (score - shadow price x expected cost <= 0), withheld as a measurement
    control, with the numbers.

    Example: offeropt explain scenarios/demo.toml 42 --run runs/demo
    """
    from optimizer.apps.explain import explain_customer
    from optimizer.core.config import load_scenario

    try:
        result = explain_customer(load_scenario(scenario, overrides), customer_id, run_dir)
    except OptimizerError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
        return
    given = sum(r["status"] == "given" for r in result.offers)
    held = sum(r["status"] == "control" for r in result.offers)
    control = ("; in the universal control: nothing sent" if result.control else
               f"; {held} withheld as per-offer controls" if held else "")
    table = Table(title=_lit(f"customer {result.customer_id}: {given} offers (cap {result.cap}) "
                             f"in {result.run_dir}{control}; global budget price "
                             f"{result.global_price:.4f}"),
                  caption="reduced = score - (budget price + global price) x exp. cost - "
                          "count price")
    for name in ("offer", "status", "score", "exp. cost", "budget price", "reduced", "why"):
        table.add_column(name, justify="left" if name in ("status", "why") else "right")
    for r in result.offers[:given + held + top]:
        table.add_row(_lit(r["offer_id"]), _lit(r["status"]), f"{r['score']:.4f}",
                      f"{r['expected_cost']:.4f}", f"{r['budget_price']:.4f}",
                      f"{r['reduced_value']:.4f}", _lit(r["why"]))
    Console().print(table)
    for warning in result.warnings:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", str(warning)))


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--holdout-weeks", type=click.IntRange(min=1), default=4, show_default=True,
              help="Fit on the weeks before week - N and score the lists on the N weeks after.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="Override a scenario knob (repeatable; values in TOML syntax).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for backtest.json, backtest.csv and backtest.html [default: the "
                   "scenario's output folder with '-backtest' appended, beside the run folder].")
def backtest(scenario: Path, holdout_weeks: int, overrides: tuple[str, ...],
             out_dir: Path | None) -> None:
    """Backtest the fitted scoring on held-out weeks against buy-again, offer-first, popular
    and random offers.

    Prints recall and precision of the held-out redemptions and category purchases for the lists
    each method would have sent, and the calibration of p_redeem by decile.

    Example: offeropt backtest scenarios/demo.toml --holdout-weeks 4
    """
    from optimizer.apps.backtest import run_backtest, write_backtest
    from optimizer.core.config import load_scenario
    from optimizer.io.runfolder import check_output

    try:
        loaded = load_scenario(scenario, overrides)
        # its own folder, beside the run's (a run replaces its folder whole: a backtest written
        # inside it would be deleted by the next run); refused before the backtest runs
        target = out_dir or loaded.output.with_name(loaded.output.name + "-backtest")
        check_output(target, loaded.data, kind="backtest")
        result = run_backtest(loaded, holdout_weeks)
    except OptimizerError as exc:
        _fail(exc)
        return
    paths = write_backtest(result, target)
    info = result.info
    console = Console()
    table = Table(title=_lit(f"{loaded.name}: fitted on weeks < {info['cutoff']}, held out "
                             f"{info['holdout_weeks'][0]}..{info['holdout_weeks'][1]} "
                             f"({info['holdout_redemptions']:,} redemptions)"))
    methods = result.table.get_column("method").to_list()
    table.add_column("metric")
    for method in methods:
        table.add_column(method, justify="right")
    for column in result.table.columns[1:]:
        values = result.table.get_column(column).to_list()
        table.add_row(column, *[f"{v:,.4f}" if isinstance(v, float) else f"{v:,}"
                                for v in values])
    console.print(table)
    calibration = Table(title="calibration of p_redeem on the held-out sends")
    for column in result.calibration.columns:
        calibration.add_column(column, justify="right")
    for row in result.calibration.iter_rows():
        calibration.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(calibration)
    scores = info["calibration_scores"]
    if scores.get("log_loss") is not None:
        console.print(_lit(
            f"held-out sends {scores['sends']:,}: log loss {scores['log_loss']:.4f} "
            f"[{scores['log_loss_ci95'][0]:.4f}, {scores['log_loss_ci95'][1]:.4f}], Brier "
            f"{scores['brier']:.4f} [{scores['brier_ci95'][0]:.4f}, {scores['brier_ci95'][1]:.4f}]"
            " (95% bootstrap over customers)"))
    ltv, prop = info["lifetime_value"], info["propensity"]
    console.print(_lit(f"lifetime value: {ltv['model']}  propensity: {prop['model']} "
                       f"({prop.get('target', '')})  popular by: {info['popular_by']}"))
    for name, reason in (("lifetime value", ltv.get("fallback")), ("propensity", prop.get("fallback"))):
        if reason:
            console.print(Text.assemble((f"{name} fallback:", "yellow"), " ", str(reason)))
    click.echo(f"wrote {', '.join(str(p) for p in paths)}")
    if info["fallback"]:  # no redemption to learn from: the backtest judges a proxy
        err_console.print(Text.assemble(("warning:", "yellow"), " ", info["fallback"]))
