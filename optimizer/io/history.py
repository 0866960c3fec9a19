"""The weekly loop: append a run's assignments to the input folder's ``history`` table.

After a successful run of week ``w``, its assignments become history rows ``(customer_id,
offer_id, week = w)``, so the next week's cooldown and frequency window see them
(docs/contract.md: "earlier runs' assignments can be appended here").

- **Format kept.** The table is rewritten in the format it was found in: Parquet keeps its column
  types, CSV its text (values such as ``00123`` stay as written) and header; columns beyond
  ``customer_id, offer_id, week`` are kept and left empty (null) in the new rows, except
  ``expected_cost``, which gets each send's expected cost (what flights count as spent, see
  optimizer/model/flights.py). With ``with_cost`` (a run whose offers carry flights) the column is
  added when the table lacks it (earlier rows empty). Without a history table,
  ``history.parquet`` is created.
- **Atomic.** The new table is written to a temporary file in the same folder, flushed to disk
  and renamed over the old one with :func:`os.replace`: a reader, a failure or a kill sees the old
  table or the new one, never a half-written or missing one. A failure removes the temporary file;
  the one a killed append leaves (``.history.tmp-PID-XXXXXXXX.parquet``) is removed by the next
  run with ``--append-history`` once process PID is gone.
- **One writer at a time.** The table is read, checked and replaced under an exclusive lock
  (``fcntl.flock`` on ``.history.lock`` beside it, see :func:`history_lock`): a second run
  appending at the same moment waits (saying so on stderr), then reads the table with the first
  run's rows, so no week is lost and its own week check sees the fresh table.
- **No week twice.** When the table already holds rows of the planning week, appending is refused
  (:class:`~optimizer.core.errors.InputError`, exit 2 in the CLI) unless ``replace_week`` is set, which
  drops that week's rows first. :func:`check_history_week` makes the same test before planning,
  so a refused run plans and writes nothing.

``run_scenario(scenario, append_history=True, replace_week=...)`` calls both in order; from Python
they can also be called on their own.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import polars as pl

from optimizer.core.errors import InputError, OptimizerError
from optimizer.io.atomic import publish
from optimizer.io.load import read_table, read_table_as_stored
from optimizer.io.runfolder import remove_stale_temps

log = logging.getLogger(__name__)

TABLE = "history"
KEYS = ("customer_id", "offer_id")
COST = "expected_cost"
# the lock beside the table; not a temporary file (`.history.tmp-*`): it stays, and is reused
LOCK_NAME = ".history.lock"
LOCK_TIMEOUT_S = 600.0
_LOCK_POLL_S = 0.05


def _clean(name: str) -> str:
    """A header name as :mod:`optimizer.io.load` compares it (trimmed, byte-order mark dropped)."""
    return name.lstrip("\ufeff").strip()


def _refusal(path: Path, week: int, rows: int, before_planning: bool) -> InputError:
    # after planning, the table is checked again under the lock before the run folder is
    # written: another run may have appended the week meanwhile
    done = ("nothing was planned or written" if before_planning
            else "history was left as it was and the run folder was not written")
    return InputError(
        TABLE, "week",
        f"{path} already holds {rows} row{'s' if rows != 1 else ''} of week {week} (this week was "
        f"appended before), so {done}; re-run with --replace-week (replace_week=True) to replace "
        "that week's rows, or plan another week")


def check_history_week(data_dir: Path, week: int, replace_week: bool = False) -> int:
    """Before planning: refuse when ``history`` already holds rows of ``week``.

    Returns how many rows of ``week`` the table holds (0 when there is no table). Raises
    :class:`InputError` naming the table, the column ``week`` and the week when there are some and
    ``replace_week`` is false. Reads the table typed, so a malformed table is reported here too.
    """
    remove_stale_temps(Path(data_dir) / TABLE)  # left by appends that were killed
    table = read_table(Path(data_dir), TABLE)
    if table is None or "week" not in table.frame.columns:
        return 0
    rows = int((table.frame.get_column("week") == week).sum())
    if rows and not replace_week:
        raise _refusal(table.path, week, rows, True)
    return rows


def _as_column(values: pl.Series, dtype: pl.DataType, column: str) -> pl.Series:
    """This run's IDs in the stored column's type; refuses a cast that would lose a value."""
    if dtype == pl.Null:
        return values
    if dtype in (pl.Utf8, pl.String):
        return values.cast(pl.Utf8)
    converted = values.cast(dtype, strict=False)
    lost = converted.is_null() & values.is_not_null()
    if lost.any():
        raise InputError(TABLE, column, f"the history table stores {column} as {dtype}, which "
                         f"cannot hold this run's IDs (for example {values.filter(lost)[0]!r}); "
                         "store them as text in history", count=int(lost.sum()))
    return converted


def _new_rows(stored: pl.DataFrame, assignments: pl.DataFrame, week: int) -> pl.DataFrame:
    """The run's rows, shaped like the stored table (its columns, names and types)."""
    n = assignments.height
    columns = []
    for name, dtype in stored.schema.items():
        clean = _clean(name)
        if clean in KEYS:
            series = _as_column(assignments.get_column(clean), dtype, clean)
        elif clean == COST and COST in assignments.columns:
            series = assignments.get_column(COST)
            if dtype in (pl.Utf8, pl.String):  # CSV text: the value as printed in full
                series = series.cast(pl.Utf8)
        elif clean == "week":
            series = _as_column(pl.Series([week] * n, dtype=pl.Int64), dtype, "week")
        else:
            series = pl.Series([None] * n, dtype=pl.Null)
        columns.append(series.cast(dtype).alias(name))
    return pl.DataFrame(columns, schema=stored.schema)


def _week_mask(stored: pl.DataFrame, week: int) -> pl.Series:
    """Rows of the stored table whose ``week`` is ``week`` (as load reads it: trimmed integer)."""
    name = next((c for c in stored.columns if _clean(c) == "week"), None)
    if name is None:
        return pl.Series([False] * stored.height)
    col = stored.get_column(name)
    if col.dtype in (pl.Utf8, pl.String):
        col = col.str.strip_chars()
    return (col.cast(pl.Int64, strict=False) == week).fill_null(False)


def _write_frame(frame: pl.DataFrame, path: Path, file_format: str) -> None:
    """Write ``frame`` to ``path`` as Parquet or CSV (a seam for tests of a failing writer)."""
    if file_format == "parquet":
        frame.write_parquet(path, compression="zstd", statistics=True)
    else:
        frame.write_csv(path)


def _write_temp(frame: pl.DataFrame, target: Path, file_format: str) -> Path:
    """Write ``frame`` to a temporary file beside ``target``, flushed to disk; failing (or
    interrupted), leave none."""
    # the writer's pid in the name: a later append removes it once that process is gone
    temp = target.parent / f".{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}"
    try:
        _write_frame(frame, temp, file_format)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        if target.exists():
            shutil.copymode(target, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


class HistoryBusyError(OptimizerError):
    """Another process held the history table's lock for longer than the wait allowed."""


@contextmanager
def history_lock(data_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive lock of ``data_dir``'s history table (``fcntl.flock`` on
    :data:`LOCK_NAME` in that folder) for the body: the updates of two processes take turns, so
    each reads the table the other wrote. Waits up to ``timeout_s`` seconds (saying so on stderr
    once), then raises :class:`HistoryBusyError`. The lock file stays (removing it would let a
    waiting process lock a file that no longer has the name); the lock goes with the process."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(TABLE, None, f"cannot open the history lock {path}: {exc.strerror}; "
                         "the input folder must be writable to append history") from None
    try:
        deadline = time.monotonic() + timeout_s
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HistoryBusyError(
                        f"the history table in {data_dir} is being updated by another run (lock "
                        f"{path} held for more than {timeout_s:g} s); nothing was appended and "
                        "the run folder was not written: run again when the other run is done"
                    ) from None
                if not waiting:
                    log.warning("waiting for another run to finish updating %s (lock %s)",
                                data_dir, path)
                    waiting = True
                time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class StagedHistory:
    """The new history table written beside the old one, waiting to be renamed into place.

    Staged under :func:`history_lock` (so from the table as it is now) and committed or
    discarded before the lock is released."""

    temp: Path
    target: Path
    rows: int
    week: int
    removed: int

    def commit(self) -> None:
        """Rename the new table over the old one (atomically) and flush the folder."""
        publish(self.temp, self.target, sync_folder=True)
        log.info("history: %d row(s) of week %d appended to %s%s", self.rows, self.week,
                 self.target, f" ({self.removed} earlier row(s) of that week replaced)"
                 if self.removed else "")

    def discard(self) -> None:
        """Remove the new table if it was not committed (nothing else changes)."""
        self.temp.unlink(missing_ok=True)


def stage_history(data_dir: Path, assignments: pl.DataFrame, week: int,
                  replace_week: bool = False, with_cost: bool = False) -> StagedHistory:
    """Write the history table with ``assignments`` appended as rows of ``week`` to a temporary
    file beside it; :meth:`StagedHistory.commit` puts it in place. Call it under
    :func:`history_lock`. Refuses a week already present as :func:`append_history` does.
    ``with_cost``: write ``expected_cost`` even when the table lacks the column (module docstring)."""
    data_dir = Path(data_dir)
    missing = [c for c in KEYS if c not in assignments.columns]
    if missing:
        raise ValueError(f"assignments lack column(s) {', '.join(missing)}")
    ids = assignments.select(*KEYS, *[c for c in (COST,) if c in assignments.columns])
    remove_stale_temps(data_dir / TABLE)  # left by appends that were killed
    stored = read_table_as_stored(data_dir, TABLE)
    if stored is not None and with_cost and COST not in {_clean(c) for c in stored.frame.columns}:
        text = stored.path.suffix != ".parquet"
        stored = replace(stored, frame=stored.frame.with_columns(
            pl.lit(None, dtype=pl.Utf8 if text else pl.Float64).alias(COST)))
    if stored is None:
        target, file_format = data_dir / f"{TABLE}.parquet", "parquet"
        frame = ids.with_columns(pl.lit(week, dtype=pl.Int64).alias("week"))
        frame = frame.select(*KEYS, "week", *([COST] if with_cost and COST in frame.columns
                                              else []))
        removed = 0
    else:
        target = stored.path
        file_format = "parquet" if target.suffix == ".parquet" else "csv"
        found = {_clean(c) for c in stored.frame.columns}
        absent = [c for c in (*KEYS, "week") if c not in found]
        if absent:
            raise InputError(TABLE, absent[0], f"required column {absent[0]} missing from "
                             f"{target.name}; cannot append to it")
        same_week = _week_mask(stored.frame, week)
        removed = int(same_week.sum())
        if removed and not replace_week:
            raise _refusal(target, week, removed, False)
        kept = stored.frame.filter(~same_week) if removed else stored.frame
        frame = pl.concat([kept, _new_rows(stored.frame, ids, week)], how="vertical")
    return StagedHistory(_write_temp(frame, target, file_format), target, ids.height, week,
                         removed)


def append_history(data_dir: Path, assignments: pl.DataFrame, week: int,
                   replace_week: bool = False, lock_timeout_s: float = LOCK_TIMEOUT_S) -> int:
    """Append ``assignments`` (``customer_id, offer_id``) as history rows of ``week``.

    ``data_dir``: the scenario's input folder. ``assignments``: a run's assignments table.
    ``replace_week``: drop the table's rows of ``week`` first; without it, rows of ``week`` already
    in the table are refused with :class:`InputError` and nothing is written. Keeps the table's
    format, column types and extra columns (see the module docstring); creates
    ``history.parquet`` when there is none. The table is read and replaced under
    :func:`history_lock` (waiting up to ``lock_timeout_s``). Returns the number of rows appended.
    """
    with history_lock(data_dir, lock_timeout_s):
        staged = stage_history(data_dir, assignments, week, replace_week)
        try:
            staged.commit()
        finally:
            staged.discard()
    return staged.rows


def history_digest(history: pl.DataFrame | None, week: int) -> str:
    """SHA-256 of the validated ``history`` rows a run of ``week`` reads: those of earlier weeks
    (docs/contract.md ignores the planning week and later), as customer index, offer index and week in
    little-endian int64, column after column, in table order. No table hashes as no rows.

    The manifest records it, so ``offeropt check`` can tell a history that only gained rows of the
    planning week or later (``--append-history``) from one that changed what the run read."""
    digest = hashlib.sha256()
    rows = (history.filter(pl.col("week") < week) if history is not None
            else pl.DataFrame(schema={"c": pl.Int64, "o": pl.Int64, "week": pl.Int64}))
    for column in ("c", "o", "week"):
        digest.update(rows.get_column(column).cast(pl.Int64).to_numpy().astype("<i8").tobytes())
    return digest.hexdigest()


__all__ = ["HistoryBusyError", "history_digest", "LOCK_NAME", "StagedHistory", "append_history",
           "check_history_week", "history_lock", "stage_history"]
