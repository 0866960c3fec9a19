"""``offeropt``: the command line, a thin layer over the library.

:func:`entry` is the program (``offeropt`` and ``python -m optimizer``): it sets the allocator up
before polars loads, so the commands import the polars-using modules inside their bodies.

The only module that imports click, with :mod:`optimizer.cli_measure` (``measure``,
``demo-outcomes``), :mod:`optimizer.cli_planners` (``explain``, ``backtest``) and
:mod:`optimizer.cli_simulate` (``simulate``). Errors become a message on stderr and the exit code
that :func:`optimizer.core.errors.exit_code` maps them to (2 bad input, 3 environment, 4 out of
memory, 70 a bug, with its traceback; ``offeropt check`` exits 1 when a run breaks a rule), caught
once, in :class:`_Main`.

Names, IDs, paths and messages are data: they reach rich only as :class:`rich.text.Text` (see
:func:`_lit`), never as markup, so ``[/]`` or ``:smile:`` in a scenario name prints as written.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optimizer import __version__
from optimizer.cli_text import (
    _fail,
    _lit,
    err_console,
)
from optimizer.core.allocator import configure_polars_allocator
from optimizer.core.errors import (
    EXIT_INTERNAL,
    MemoryLimitError,
    OptimizerError,
    ScenarioError,
    describe_internal,
    exit_code,
)


class _Main(click.Group):
    """The command group; maps the errors a command raises to their documented exit codes
    (:func:`optimizer.core.errors.exit_code`): an operating-system error, an allocation failure or an
    error of the optimizer ends with its message instead of a traceback. Any other exception is a
    bug: its traceback on stderr, then a one-line message, and exit code 70 (``EX_SOFTWARE``),
    never Python's 1, which is ``check``'s "violations found". Ctrl-C in any command: a one-line message and exit 130
    (click's own would be exit 1); SIGTERM (``kill``, ``timeout``) is turned into the same
    interrupt while the command runs (:func:`optimizer.core.interrupt.terminate_as_interrupt`)."""

    def invoke(self, ctx: click.Context) -> Any:
        from optimizer.core.interrupt import (
            EXIT_INTERRUPTED,
            InterruptedAfterCommit,
            signal_name,
            terminate_as_interrupt,
        )

        try:
            with terminate_as_interrupt():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except InterruptedAfterCommit as exc:
            err_console.print(f"\ninterrupted ({signal_name(exc)}) as the outputs were "
                              "committed: they are complete", highlight=False, markup=False)
            sys.exit(EXIT_INTERRUPTED)
        except KeyboardInterrupt as exc:
            err_console.print(f"\ninterrupted ({signal_name(exc)})", highlight=False,
                              markup=False)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - mapped, or a bug: its traceback and exit 70
            if exit_code(exc) is None:
                _internal_error(exc)
            _fail(exc)


def _internal_error(exc: BaseException) -> None:
    """A bug reached the command line: its traceback (for the report) and what it means on
    stderr, then exit :data:`optimizer.core.errors.EXIT_INTERNAL`."""
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    err_console.print(Text.assemble(("error:", "bold red"), " ", describe_internal(exc)))
    sys.exit(EXIT_INTERNAL)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit codes: 0 success; 1 check found violations; 2 bad input (a table, "
                    "the scenario, --set or a path); 3 the environment refuses (a folder cannot "
                    "be read or written, disk full, file size limit, I/O error); 4 out of memory "
                    "(the estimate exceeds the limit, or an allocation failed); 70 internal error (a "
                    "bug: its traceback is printed on stderr); 130 interrupted "
                    "(Ctrl-C or SIGTERM). An output folder is only ever replaced when this tool wrote it "
                    "(it holds our manifest.json).")
@click.version_option(__version__, prog_name="offeropt")
@click.option("-v", "--verbose", is_flag=True, help="Log each step's details to stderr.")
def main(verbose: bool) -> None:
    """Plan which personalised offers each customer gets this week.

    Tables in (an input folder), one TOML scenario, a run folder out. The data contract
    (every table, column, rule and knob) is docs/contract.md in the repository.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from optimizer.core.allocator import address_space_shortfall
    shortfall = address_space_shortfall()  # before polars and numba load: they would abort
    if shortfall:
        _fail(MemoryLimitError(shortfall))


def entry() -> None:
    """The ``offeropt`` program: the allocator's settings, then the command line."""
    configure_polars_allocator()
    main()


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="Override a scenario knob, e.g. --set rules.max_offers_per_customer=3 "
                   "(repeatable; values in TOML syntax).")
@click.option("--quiet", is_flag=True, help="Print nothing but warnings and errors (on stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for scripts).")
@click.option("--append-history", is_flag=True,
              help="After a successful run, append this week's assignments to the input "
                   "folder's history table (same format; refused if the week is already there).")
@click.option("--replace-week", is_flag=True,
              help="With --append-history: replace the history rows of the planning week "
                   "instead of refusing.")
@click.option("--warm-start", "warm_start", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="RUN_DIR",
              help="Start the solver from the dual prices of this earlier run folder (faster on "
                   "a similar week; recorded in the manifest). Default: a cold start, so the "
                   "plan depends only on the inputs and the scenario.")
@click.option("--previous-run", "previous_run",
              type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN_DIR",
              help="Last week's run folder: its lists are the ones rules.change_penalty keeps "
                   "and the report counts changes against (default: history's rows of the week "
                   "before).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the solver's passes on this Dask scheduler's workers (sets "
                   "solver.backend = \"dask\" and solver.scheduler; needs the dask extra).")
def run(scenario: Path, overrides: tuple[str, ...], quiet: bool, as_json: bool,
        append_history: bool, replace_week: bool, warm_start: Path | None,
        previous_run: Path | None, scheduler: str | None) -> None:
    """Plan the week of SCENARIO and write its run folder.

    Example: offeropt run scenarios/demo.toml --set rules.budget_scale=0.8

    Weekly loop: offeropt run scenarios/demo.toml --set week=41 --append-history
    """
    if replace_week and not append_history:
        raise click.UsageError("--replace-week only applies with --append-history")
    from optimizer.core.config import load_scenario
    from optimizer.core.interrupt import import_held
    run_scenario = import_held("optimizer.apps.pipeline").run_scenario  # native modules: Ctrl-C held

    console = Console(stderr=True, quiet=quiet or as_json)

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "stage":
            console.print(f"[cyan]{info['stage']}[/] ...", highlight=False)
        elif kind == "polish":
            console.print(f"  polish: CP-SAT on up to {int(info['polish']):,} pairs",
                          highlight=False)
        elif kind == "iteration":
            bound = f"bound {info['best_bound']:,.2f}"
            if info["gap"] is None:  # the solver plans once its bound settles
                console.print(f"  pass {int(info['iteration']):>3}: {bound}  (no plan yet)",
                              highlight=False)
            else:
                console.print(f"  pass {int(info['iteration']):>3}: objective "
                              f"{info['best_objective']:,.2f}  {bound}  gap "
                              f"{100 * info['gap']:.4f}%", highlight=False)
    if scheduler is not None:
        overrides = (*overrides, 'solver.backend="dask"', f"solver.scheduler={json.dumps(scheduler)}")
    try:
        loaded = load_scenario(scenario, overrides)
        result = run_scenario(loaded, progress=progress, append_history=append_history,
                              replace_week=replace_week, warm_start_run=warm_start,
                              previous_run=previous_run)
    except OptimizerError as exc:
        _fail(exc)
        return
    m = result.manifest
    summary = {
        "name": loaded.name, "week": loaded.week, "output": str(result.output),
        "objective": m["objective"], "expected_redemptions": m["expected_redemptions"],
        "upper_bound": m["upper_bound"], "gap": m["gap"],
        "status": m["solver"]["status"], "iterations": m["solver"]["iterations"],
        "assignments": result.assignments.height, "customers_reached": m["customers_reached"],
        "expected_cost": float(result.offers_summary.get_column("expected_cost").sum()),
        "min_customers_shortfalls": len(m["min_customers_shortfalls"]),
        "seconds": m["seconds"], "backend": m["solver"]["backend"],
    }
    if append_history:
        summary["history_rows_appended"] = result.history_appended
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if quiet:
        return
    table = Table(title=_lit(f"{loaded.name}: week {loaded.week}"), show_header=False)
    for key in ("objective", "expected_redemptions", "upper_bound", "gap", "status", "iterations",
                "assignments",
                "customers_reached", "expected_cost", "min_customers_shortfalls", "output"):
        value = summary[key]
        text = (f"{100 * value:.4f}%" if key == "gap" else f"{value:,.2f}"
                if isinstance(value, float) else str(value))
        table.add_row(key, _lit(text))
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()))
    if summary["backend"]["name"] != "local":
        table.add_row("backend", _lit(_backend_line(summary["backend"])))
    if append_history:
        done = "replaced that week's rows in" if replace_week else "appended to"
        table.add_row("history", _lit(f"{result.history_appended:,} rows of week {loaded.week} "
                                      f"{done} {loaded.data}"))
    Console().print(table)


def _backend_line(backend: dict[str, Any]) -> str:
    """Where the passes ran and what they exchanged, for the run's summary."""
    traffic = backend["bytes_per_pass"]
    return (f"{backend['name']} at {backend['scheduler']}: {backend['workers']} workers, "
            f"{backend['shards']} shards built by the {backend.get('shards_built_by', 'driver')} "
            f"({backend.get('setup_bytes', 0) / 1e6:.2f} MB sent to start them); per pass "
            f"{traffic['prices_mean'] / 1e6:.2f} MB for "
            f"the prices, {traffic['plan_mean'] / 1e6:.2f} MB for the plan, "
            f"{traffic.get('repair_mean', 0) / 1e6:.2f} MB for its repair and "
            f"{traffic.get('refill_mean', 0) / 1e6:.2f} MB for its refill (both on the "
            f"{backend.get('repair', 'driver')}; means over {traffic['passes']} passes)"
            + (f"; {backend['rebuilt_shards']} shards rebuilt after {backend['workers_lost']} "
               "workers were lost" if backend.get("rebuilt_shards") else ""))


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="The same overrides the run was made with.")
@click.option("--force", is_flag=True,
              help="Check even when the run's manifest records another scenario (after --set) "
                   "or inputs with other SHA-256 than these.")
def check(scenario: Path, run_dir: Path | None, overrides: tuple[str, ...], force: bool) -> None:
    """Verify every hard rule of a run of SCENARIO against the raw inputs, independently of the
    solver, and every file and figure the run published.

    RUN_DIR defaults to the scenario's output folder; a file the run writes that it lacks
    (manifest.json, report.html, a table's Parquet or CSV copy) is a violation too,
    [missing_output]. Exits 1 listing every violation (and,
    as notes, any setting or input that differs from the run's own); exits 2 when the run was
    made with another scenario or other inputs (naming them) and breaks no rule, unless --force.
    The scenario's name and solver knobs are not compared: they decide no rule.

    Example: offeropt check scenarios/demo.toml runs/demo
    """
    from optimizer.check.verify import check_run
    from optimizer.core.config import load_scenario

    try:
        report = check_run(load_scenario(scenario, overrides), run_dir, force=force)
    except OptimizerError as exc:
        _fail(exc)
        return
    for note in report.notes:
        err_console.print(Text.assemble(("note:", "yellow"), " ", note))
    report = replace(report, notes=[])
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
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")
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
    from optimizer.apps.synthetic import check_demo_arguments, write_demo_data

    try:
        check_demo_arguments(customers, offers, seed, scores_per_customer=scores_per_customer,
                             weeks=weeks, planning_week=planning_week, file_format=file_format,
                             out_dir=out_dir)
    except ValueError as exc:   # a bad argument: a usage error (exit 2), nothing written
        raise click.UsageError(str(exc)) from exc
    console = Console(stderr=True)
    counts = write_demo_data(out_dir, customers, offers, seed,
                             scores_per_customer=scores_per_customer, weeks=weeks,
                             planning_week=planning_week, file_format=file_format,
                             progress=lambda msg: console.print(_lit(msg, "cyan")))
    for name, rows in counts.items():
        click.echo(f"{name}: {rows:,} rows")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("compare.html"), show_default=True,
              help="Where to write the HTML page (charts and full tables), relative to the "
                   "current folder.")
@click.option("--no-html", is_flag=True, help="Do not write the HTML page.")
@click.option("--sample", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many changed customers to list per run.")
@click.option("--offers", "top_offers", type=click.IntRange(min=0), default=10,
              show_default=True, help="How many offers (largest spend change) the terminal shows.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the whole comparison as JSON instead of tables.")
def compare(run_dirs: tuple[Path, ...], html_path: Path, no_html: bool, sample: int,
            top_offers: int, as_json: bool) -> None:
    """Compare the run folders RUN_DIRS side by side; the first is the baseline.

    Totals (objective, bound, gap, redemptions, spend, budget use, reach), value by
    lifetime-value decile, per-offer changes in reach and spend, and the customers whose offer
    lists changed. Prints tables and writes an HTML page with charts.

    Example: offeropt compare runs/demo runs/demo_budget_cut --html runs/compare.html
    """
    from optimizer.io.runfolder import check_files_folder, write_text_file
    from optimizer.report.compare import TOTAL_KEYS, compare_runs, render_compare

    try:
        if not no_html:  # not into a run's folder: its next run would delete the page
            check_files_folder(html_path.parent, f"the folder of --html {html_path}:")
        comparison = compare_runs(run_dirs, sample=sample)
    except OptimizerError as exc:
        _fail(exc)
        return
    if not no_html:
        write_text_file(html_path, render_compare(comparison))
    if as_json:
        click.echo(json.dumps({**comparison.to_json(),
                               "html": None if no_html else str(html_path)}, indent=2,
                              default=str))
        return
    table = Table(title="Runs (first = baseline)")
    table.add_column("")
    for label in comparison.labels:
        table.add_column(_lit(label), justify="right")
    for key in TOTAL_KEYS:
        cells = [comparison.totals[k][key] for k in range(len(comparison.labels))]
        if key.endswith(("gap", "_used")):
            table.add_row(key, *("" if v is None else f"{100 * v:.2f}%" for v in cells))
        else:
            table.add_row(key, *(_number(v) for v in cells))
    table.add_row("customers whose list changed", "",
                  *(str(change["changed_customers"]) for change in comparison.changed))
    console = Console()
    console.print(table)
    if top_offers:
        labels = comparison.labels
        offers = Table(title=_lit(f"Offers whose spend moved most (against {labels[0]})"))
        offers.add_column("offer", justify="right")
        for label in labels:
            offers.add_column(_lit(f"customers {label}"), justify="right")
            offers.add_column(_lit(f"spend {label}"), justify="right")
        for label in labels[1:]:
            offers.add_column(_lit(f"change in spend {label}"), justify="right")
        for o in comparison.offers.head(top_offers).to_dicts():
            row: list[str | Text] = [_lit(o["offer_id"])]
            for k in range(len(labels)):
                row += [str(o[f"customers_{k}"]), f"{o[f'expected_cost_{k}']:,.2f}"]
            row += [f"{o[f'd_expected_cost_{k}']:+,.2f}" for k in range(1, len(labels))]
            offers.add_row(*row)
        console.print(offers)
    if not no_html:
        console.print(_lit(f"page: {html_path}"))


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--budget-scale", "scales", required=True, metavar="START:STOP:STEP",
              help="The budget_scale values: START:STOP:STEP (STOP included), e.g. "
                   "0.5:1.5:0.1, or a list such as 0.6,0.8,1.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KNOB=VALUE",
              help="Override a scenario knob for every point (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The sweep folder [default: the scenario's output folder "
                                 "with '-sweep' appended].")
@click.option("--quiet", is_flag=True, help="Print nothing but warnings and errors (on stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON (for scripts).")
def sweep(scenario: Path, scales: str, overrides: tuple[str, ...], out_dir: Path | None,
          quiet: bool, as_json: bool) -> None:
    """Solve SCENARIO at many budget scales: the budget-to-value curve.

    Each point is solved as `offeropt run` would solve it (so its figures do not depend on the
    other points) and writes no run folder; the sweep folder gets sweep.csv, sweep.json and sweep.html (chart and table),
    the same bytes at every re-run, and timings.json (each point's seconds).

    Example: offeropt sweep scenarios/demo.toml --budget-scale 0.5:1.5:0.25
    """
    from rich.progress import Progress as Bar

    from optimizer.apps.sweep import parse_range, sweep_budget, write_sweep
    from optimizer.core.config import load_scenario
    from optimizer.io.runfolder import check_output

    console = Console(stderr=True, quiet=quiet or as_json)
    try:
        if any(text.split("=", 1)[0].strip() == "rules.budget_scale" for text in overrides):
            # each point sets it: the override was dropped without a word (exit 0)
            raise ScenarioError("--set rules.budget_scale: the sweep sets rules.budget_scale "
                                "at each point; give the scales with --budget-scale")
        loaded = load_scenario(scenario, overrides)
        values = parse_range(scales)
        target = out_dir or loaded.output.with_name(loaded.output.name + "-sweep")
        check_output(target, loaded.data, kind="sweep")  # refused before the points are solved
        with Bar(console=console, transient=True) as bar:
            task = bar.add_task("sweep", total=len(values))

            def on_stage(kind: str, info: dict[str, Any]) -> None:
                if kind == "iteration":
                    gap = "no plan yet" if info["gap"] is None else \
                        f"gap {100 * info['gap']:.3f}%"
                    bar.update(task, description=f"pass {int(info['iteration'])}, {gap}")

            def on_point(k: int, n: int, row: dict[str, Any]) -> None:
                bar.advance(task)
                console.print(f"budget_scale {row['budget_scale']:.3g}: objective "
                              f"{row['objective']:,.2f}, spend {row['expected_cost']:,.2f}, "
                              f"{row['iterations']} passes", highlight=False)
            seconds: list[dict[str, float]] = []
            table = sweep_budget(loaded, values, progress=on_stage, on_point=on_point,
                                 seconds=seconds)
        write_sweep(target, loaded, table, seconds)
    except OptimizerError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps({"out": str(target), "points": table.to_dicts()}, indent=2))
        return
    if not quiet:
        click.echo(f"sweep of {len(values)} points written to {target}")


# the measurement loop's commands (issue 19) live in their own module
from optimizer.cli_measure import demo_outcomes, measure  # noqa: E402

# and the planners' questions about one run: explain and backtest
from optimizer.cli_planners import backtest, explain  # noqa: E402

main.add_command(explain)
main.add_command(backtest)
main.add_command(measure)
main.add_command(demo_outcomes)

# the closed-loop simulator (issue 20) lives in its own module too
from optimizer.cli_simulate import simulate  # noqa: E402

main.add_command(simulate)


if __name__ == "__main__":  # pragma: no cover
    main()
