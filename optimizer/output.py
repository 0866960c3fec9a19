"""Turn a solution into the run folder's tables, and write the folder whole or not at all.

The folder is written into a temporary sibling and renamed into place; an earlier run folder of the
same name is swapped out in the same step (atomically with ``renameat2(RENAME_EXCHANGE)`` where the
kernel has it), so a reader or a crash sees the old folder or the new one, never a mix.

A run killed while writing (SIGKILL, power loss) can leave its temporary sibling
``.NAME.tmp-PID-XXXXXXXX`` behind; it is never read as a run, and the next run into the same folder
removes the siblings whose writing process is gone (see :func:`remove_stale_temps`).

Test hook: when the environment variable ``OFFEROPT_TEST_WRITE_DELAY_S`` is set (seconds, a float),
:func:`write_run_folder` sleeps that long after each file it writes, so a test can kill a run
deterministically in the middle of writing. Unset (always, outside tests) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from .interrupt import deferred_interrupt
from .problem import AssignmentProblem, Solution
from .schemas import ASSIGNMENT_COLUMNS, OFFER_SUMMARY_COLUMNS
from .validate import Inputs


def assignments_frame(inputs: Inputs, problem: AssignmentProblem, solution: Solution
                      ) -> pl.DataFrame:
    """One row per assigned pair: customer_id, rank, offer_id, p_redeem, expected_cost, score."""
    parts = {"c": [], "o": [], "p_redeem": [], "expected_cost": [], "score": []}
    for block, chosen in zip(problem.blocks, solution.chosen):
        rows, slots = np.nonzero(chosen)
        parts["c"].append(block.customers[rows])
        parts["o"].append(block.offer[rows, slots])
        parts["p_redeem"].append(block.p_redeem[rows, slots])
        parts["expected_cost"].append(block.cost[rows, slots])
        parts["score"].append(block.value[rows, slots])
    columns = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    frame = pl.DataFrame({
        "c": columns["c"].astype(np.int64), "o": columns["o"].astype(np.int64),
        "p_redeem": columns["p_redeem"].astype(np.float64),
        "expected_cost": columns["expected_cost"].astype(np.float64),
        "score": columns["score"].astype(np.float64),
    })
    frame = (frame.sort(["c", "score", "o"], descending=[False, True, False])
             .with_columns(pl.int_range(1, pl.len() + 1).over("c").cast(pl.Int64).alias("rank")))
    customer_ids = inputs.customers.get_column("customer_id")
    offer_ids = inputs.offers.get_column("offer_id")
    return frame.select(
        customer_ids.gather(frame.get_column("c")).alias("customer_id"),
        pl.col("rank"),
        offer_ids.gather(frame.get_column("o")).alias("offer_id"),
        "p_redeem", "expected_cost", "score",
    ).select(ASSIGNMENT_COLUMNS)


def offers_summary_frame(inputs: Inputs, problem: AssignmentProblem, assignments: pl.DataFrame,
                         solution: Solution) -> pl.DataFrame:
    """Per offer: customers, expected redemptions and cost, budget (scaled) and its use."""
    offers = problem.offers
    # sums added in the assignments' (sorted) row order with numpy, not by a parallel group-by
    # whose summation order can vary from run to run: byte-identical outputs
    o = (assignments.select("offer_id")
         .join(inputs.offers.select("offer_id", "o"), on="offer_id", how="left",
               maintain_order="left")
         .get_column("o").to_numpy().astype(np.int64))
    n_offers = inputs.n_offers
    per_offer = pl.DataFrame({
        "offer_id": inputs.offers.get_column("offer_id"),
        "customers": np.bincount(o, minlength=n_offers).astype(np.int64),
        "expected_redemptions": np.bincount(
            o, weights=assignments.get_column("p_redeem").to_numpy(), minlength=n_offers),
        "expected_cost": np.bincount(
            o, weights=assignments.get_column("expected_cost").to_numpy(), minlength=n_offers),
    }).filter(pl.col("customers") > 0)
    budget = np.where(np.isfinite(offers.budget), offers.budget, np.nan)
    max_customers = np.where(np.isfinite(offers.max_customers), offers.max_customers, np.nan)
    base = pl.DataFrame({
        "offer_id": inputs.offers.get_column("offer_id"),
        "budget": pl.Series(budget).fill_nan(None),
        "min_customers": pl.Series(offers.min_customers, dtype=pl.Int64),
        "max_customers": pl.Series(max_customers).fill_nan(None).cast(pl.Int64),
        "shadow_price": solution.prices.budget + solution.prices.global_budget,
    })
    frame = base.join(per_offer, on="offer_id", how="left", maintain_order="left").with_columns(
        pl.col("customers").fill_null(0), pl.col("expected_redemptions").fill_null(0.0),
        pl.col("expected_cost").fill_null(0.0),
    )
    return frame.with_columns(
        pl.when(pl.col("budget") > 0).then(pl.col("expected_cost") / pl.col("budget"))
        .otherwise(None).alias("budget_used"),
        (pl.col("min_customers") - pl.col("customers")).clip(lower_bound=0).alias("shortfall"),
    ).select(OFFER_SUMMARY_COLUMNS)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def write_run_folder(output: Path, writers: dict[str, Callable[[Path], None]],
                     then: Callable[[], None] | None = None) -> None:
    """Write every file through ``writers`` (name -> function writing that path) into a temporary
    sibling folder, then move it into place as one step.

    ``then``: called right after the folder is in place, in the same commit (e.g. renaming a
    staged history table into place). A Ctrl-C while the files are written removes the temporary
    folder and leaves the earlier run as it was; one during the commit (a few renames) is held
    until the commit is done (:func:`optimizer.interrupt.deferred_interrupt`)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)
    temp = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    delay = float(os.environ.get(WRITE_DELAY_ENV) or 0.0)  # test hook (module docstring)
    try:
        for name, write in writers.items():
            write(temp / name)
            if delay > 0:
                time.sleep(delay)
        _fsync_dir(temp)
        with deferred_interrupt():
            if output.exists():
                if _exchange(temp, output):
                    shutil.rmtree(temp)  # temp now holds the old run
                else:
                    old = (output.parent
                           / f".{output.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
                    output.rename(old)
                    temp.rename(output)
                    shutil.rmtree(old)
            else:
                temp.rename(output)
            _fsync_dir(output.parent)
            if then is not None:
                then()
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


WRITE_DELAY_ENV = "OFFEROPT_TEST_WRITE_DELAY_S"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(output: Path) -> list[Path]:
    """Remove the temporary siblings (``.NAME.tmp-*``, ``.NAME.old-*``) that earlier runs into
    ``output`` left behind when killed; returns the removed paths.

    A sibling named with a process id (``.NAME.tmp-PID-XXXXXXXX``) is removed when that process no
    longer exists, so a concurrent run's folder in the making is left alone; one without (older
    versions) is removed when it was last modified more than an hour ago."""
    output = Path(output)
    removed = []
    if not output.parent.is_dir():
        return removed
    for kind in ("tmp", "old"):
        for path in output.parent.glob(f".{output.name}.{kind}-*"):
            tag = path.name[len(f".{output.name}.{kind}-"):]
            pid_text, _, rest = tag.partition("-")
            try:
                if rest and pid_text.isdigit():
                    stale = not _pid_alive(int(pid_text))
                else:
                    stale = time.time() - path.lstat().st_mtime > 3600
            except OSError:
                continue
            if stale:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir() if path.is_dir() and path.name.startswith(".") else []:
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_writer(data: dict[str, Any]) -> Callable[[Path], None]:
    """A writer of pretty, key-sorted, strict JSON (deterministic apart from what ``data``
    holds). A NaN or infinity raises ``ValueError`` instead of writing the non-standard
    ``NaN``/``Infinity`` that strict JSON readers refuse."""
    def write(path: Path) -> None:
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default,
                                   allow_nan=False) + "\n")
    return write


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def table_writers(name: str, frame: pl.DataFrame) -> dict[str, Callable[[Path], None]]:
    """Writers of ``name.parquet`` and ``name.csv`` for a frame."""
    return {
        f"{name}.parquet": lambda path: frame.write_parquet(path, compression="zstd",
                                                            statistics=True),
        f"{name}.csv": lambda path: frame.write_csv(path),
    }


def customers_frame(inputs: Inputs, clv: np.ndarray) -> pl.DataFrame:
    """Per customer: customer_id, clv (lifetime value the run used), clv_decile (1 = lowest tenth
    of customers by clv, 10 = highest; ties broken by input order). Unknown (NaN) values, e.g.
    on the ``scores`` path without ``customers.clv``, are left empty and not ranked."""
    known = ~np.isnan(clv)
    order = np.flatnonzero(known)[np.argsort(clv[known], kind="stable")]
    decile = np.zeros(clv.shape[0], dtype=np.int64)
    decile[order] = np.arange(order.size) * 10 // max(order.size, 1) + 1
    return pl.DataFrame({
        "customer_id": inputs.customers.get_column("customer_id"),
        "clv": pl.Series(np.where(known, clv, np.nan).astype(np.float64)).fill_nan(None),
        "clv_decile": pl.Series(decile).replace(0, None),
    })


def write_text_file(path: Path, text: str) -> None:
    """Write one text file whole or not at all (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        temp.write_text(text, encoding="utf-8")
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_files(folder: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write each file through its writer into a temporary name in ``folder`` and rename it into
    place (each file whole or not at all; other files of the folder are left alone)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, write in writers.items():
        temp = folder / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            write(temp)
            with temp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, folder / name)
        finally:
            temp.unlink(missing_ok=True)
