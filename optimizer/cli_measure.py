"""``offeropt measure`` and ``offeropt demo-outcomes``: the measurement loop's commands.

Registered on the ``offeropt`` group by :mod:`optimizer.cli`; a thin layer over
:mod:`optimizer.apps.measure` and :mod:`optimizer.apps.outcomes`. Any :class:`OptimizerError` becomes a
message on stderr and exit code 2.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from optimizer.cli_text import FiniteFloatRange, _fail, _lit
from optimizer.core.errors import OptimizerError
from optimizer.io.manifest import read_manifest


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


@click.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--outcomes", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Folder with the transactions and redemptions tables of the "
                                  "weeks after the runs (the inputs' format).")
@click.option("--weeks", type=click.IntRange(min=1), default=None,
              help="Outcome weeks per run, from its planning week on; past the "
                   "transactions' last week is exit 2. Default: every outcome week from the run's "
                   "week on.")
@click.option("--pre-weeks", type=click.IntRange(min=1), default=26, show_default=True,
              help="Weeks of sales before each run's week for the CUPED adjustment.")
@click.option("--margin-rate", type=FiniteFloatRange(0, 1), default=0.25, show_default=True,
              help="Gross margin as a share of sales (margin = rate x sales - discount cost).")
@click.option("--bootstrap", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Bootstrap resamples of customers for the intervals.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the bootstrap.")
@click.option("--alpha", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True, help="1 - the intervals' confidence level.")
@click.option("--power-target", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
              default=0.8, show_default=True, help="Power of the minimum detectable effect.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Folder for measure.json.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write the page (default: OUT/measure.html).")
@click.option("--no-html", is_flag=True, help="Do not write the page.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--power", is_flag=True, help="Plan a test instead: the holdout share that "
              "detects --effect at --power-target (needs --effect and --baseline-sd or --data).")
@click.option("--baseline-sd", type=FiniteFloatRange(0, min_open=True), default=None,
              help="--power: standard deviation of a customer's sales over the test's weeks.")
@click.option("--effect", type=FiniteFloatRange(0, min_open=True), default=None,
              help="--power: the lift in sales per customer to detect.")
@click.option("--customers", type=click.IntRange(min=1), default=None,
              help="--power: customers the plan reaches (default: a RUN_DIR's manifest).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="--power: estimate --baseline-sd from this input folder's last "
                                 "--weeks weeks of transactions (default 1 week).")
def measure(run_dirs: tuple[Path, ...], outcomes: Path | None, weeks: int | None, pre_weeks: int,
            margin_rate: float, bootstrap: int, seed: int, alpha: float, power_target: float,
            out_dir: Path, html_path: Path | None, no_html: bool, as_json: bool, power: bool,
            baseline_sd: float | None, effect: float | None, customers: int | None,
            data_dir: Path | None) -> None:
    """Measure what the runs in RUN_DIR earned: treated customers against their control groups.

    Example: offeropt measure runs/week40 runs/week41 --outcomes data/outcomes --weeks 2

    Planning a test: offeropt measure --power --baseline-sd 25 --effect 1.5 --customers 20000
    """
    from optimizer.apps.measure import Settings, measure_runs, render_measure
    from optimizer.io.atomic import write_atomic_together
    from optimizer.io.runfolder import check_files_folder, json_writer

    page = None if no_html else (html_path or out_dir / "measure.html")
    try:
        if power:
            _measure_power(run_dirs, baseline_sd, effect, customers, data_dir, weeks, alpha,
                           power_target, as_json)
            return
        if not run_dirs or outcomes is None:
            raise click.UsageError("measure needs RUN_DIR ... and --outcomes DIR (or --power)")
        # not into a run's (or sweep's, ...) folder: its next run would delete them; before work
        check_files_folder(out_dir, "--out")
        if page is not None:
            check_files_folder(page.parent, f"the folder of --html {page}:")
            if page.resolve() == (out_dir / "measure.json").resolve():
                raise click.UsageError("--html names measure.json itself: give the page another "
                                       "name")
        settings = Settings(weeks=weeks, pre_weeks=pre_weeks, margin_rate=margin_rate,
                            bootstrap=bootstrap, seed=seed, alpha=alpha, power=power_target)
        result = measure_runs(list(run_dirs), outcomes, settings)
    except OptimizerError as exc:
        _fail(exc)
        return
    # the page is rendered and both files written to temporary names before either is renamed
    # into place: a page that cannot be written leaves no measure.json behind, and the reverse
    text = None if page is None else render_measure(result)
    for folder in [out_dir] + ([] if page is None else [page.parent]):
        folder.mkdir(parents=True, exist_ok=True)
    files = {out_dir / "measure.json": json_writer(result)}
    if page is not None and text is not None:
        files[page] = lambda path: path.write_text(text, encoding="utf-8")
    write_atomic_together(files)
    default_page = out_dir / "measure.html"
    if page is None or page.resolve() != default_page.resolve():
        # an earlier measure's page left beside this measure.json would read as its page, with
        # another measurement's figures
        default_page.unlink(missing_ok=True)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    table = Table(title=f"lift per customer over the outcome weeks "
                        f"({100 * (1 - alpha):.0f}% interval, CUPED, bootstrap)")
    for column in ("", "treated", "control", "sales lift", "interval", "significant",
                   "min. detectable", "redemptions lift", "margin lift"):
        table.add_column(column, justify="left" if not column else "right")
    entries = [("total", result["total"])] + [(f"offer {e['offer_id']}", e)
                                              for e in result["per_offer"]]
    for label, e in entries:
        table.add_row(_lit(label), f"{e['treated_customers']:,}", f"{e['control_customers']:,}",
                      _number(e["incremental_sales_per_customer"]),
                      f"{_number(e['ci_low'])} to {_number(e['ci_high'])}",
                      "yes" if e["significant"] else "no", _number(e["mde_sales_per_customer"]),
                      _number(e["incremental_redemptions_per_customer"]),
                      _number(e["incremental_margin_per_customer"]))
    Console().print(table)
    click.echo(f"wrote {out_dir / 'measure.json'}"
               + ("" if no_html else f" and {html_path or out_dir / 'measure.html'}"))


def _measure_power(run_dirs: tuple[Path, ...], baseline_sd: float | None, effect: float | None,
                   customers: int | None, data_dir: Path | None, weeks: int | None,
                   alpha: float, power_target: float, as_json: bool) -> None:
    from optimizer.apps.measure import baseline_sd_from, power_plan

    if effect is None or (baseline_sd is None) == (data_dir is None):
        raise click.UsageError("--power needs --effect and one of --baseline-sd or --data")
    source = "--baseline-sd"
    if data_dir is not None:
        baseline_sd, _ = baseline_sd_from(data_dir, weeks or 1)
        source = f"sales over {weeks or 1} week(s) in {data_dir}"
    if customers is None and run_dirs:
        try:
            reached = read_manifest(run_dirs[0]).customers_reached
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"cannot read {run_dirs[0] / 'manifest.json'}: {exc}")
        if reached is None:
            raise click.UsageError(f"{run_dirs[0] / 'manifest.json'} does not say how many "
                                   "customers the plan reached; give --customers")
        customers = reached
    assert baseline_sd is not None  # given, or measured from --data above
    plan = power_plan(float(baseline_sd), effect, alpha, power_target, customers)
    plan["baseline_sd_from"] = source
    if as_json:
        click.echo(json.dumps(plan, indent=2, sort_keys=True))
        return
    click.echo(f"to detect {effect:g} per customer (sd {plan['baseline_sd']:.4g}, {source}) at "
               f"{100 * power_target:.0f}% power, two-sided alpha {alpha:g}:")
    click.echo(f"  equal arms: {plan['customers_per_arm_equal_split']:,} customers each")
    if customers is not None:
        if plan["holdout_share"] is None:
            click.echo(f"  of {customers:,} customers: {plan['note']}")
        else:
            click.echo(f"  of {customers:,} customers: a holdout share of "
                       f"{plan['holdout_share']:.2%} ({plan['control_customers']:,} control, "
                       f"{plan['treated_customers']:,} treated)")


@click.command("demo-outcomes")
@click.argument("data", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--weeks", type=click.IntRange(min=1), default=2, show_default=True,
              help="Outcome weeks from the run's week on.")
@click.option("--lift", type=FiniteFloatRange(0), default=0.0, show_default=True,
              help="True lift: expected extra sales per treated customer over the weeks.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")
def demo_outcomes(data: Path, run_dir: Path, out: Path, weeks: int, lift: float,
                  seed: int) -> None:
    """Simulate the weeks after the run in RUN_DIR (inputs in DATA) with a known true lift and
    write their transactions and redemptions (and truth.json) to OUT.

    Example: offeropt demo-outcomes data/demo runs/demo data/outcomes --weeks 2 --lift 3 --seed 0
    """
    from optimizer.apps.outcomes import simulate_outcomes

    try:
        truth = simulate_outcomes(data, run_dir, out, weeks, lift, seed)
    except OptimizerError as exc:
        _fail(exc)
        return
    click.echo(f"wrote weeks {truth['weeks'][0]}..{truth['weeks'][1]} to {out}: true lift "
               f"{lift:g} per treated customer ({truth['treated_customers']:,} treated, "
               f"{truth['sales_per_redemption']:.4g} extra sales per redemption)")
