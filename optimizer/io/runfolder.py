"""Write the run folder whole or not at all (its tables: :mod:`optimizer.report.tables`).

The folder is written into a temporary sibling and renamed into place; an earlier run folder of the
same name is swapped out in the same step (atomically with ``renameat2(RENAME_EXCHANGE)`` where the
kernel has it), so a reader or a crash sees the old folder or the new one, never a mix.

Only the same command's own earlier output is ever replaced (:func:`is_run_folder` with its
``kind``: a run's folder holds our ``manifest.json``, a sweep's ``sweep.json``, a backtest's
``backtest.json``, a simulation's ``simulate.json``), or an empty folder; anything else at
``output`` (another command's output, such as last week's run under a sweep's ``--out``, the
current folder, the data folder, a folder of runs, a file) is refused before planning by
:func:`check_output` (the one place the refusal is worded, :func:`_refuse_foreign`), which also
refuses an output equal to, above or inside the data folder and
tries the output's folder for writing (a folder made and removed again), so a read-only place is
found before planning too. :func:`write_run_folder` checks the first again, just before it writes.
An output inside a command's output folder is refused too (that folder's next run would delete
it), and so is a folder for named files there (:func:`check_files_folder`: ``measure --out``,
``--html`` pages, ``demo-outcomes``' OUT, ``simulate --worlds``).

A run killed while writing (SIGKILL, power loss) can leave its temporary sibling
``.NAME.tmp-PID-XXXXXXXX`` behind; it is never read as a run, and the next run into the same folder
removes the siblings whose writing process is gone (see :func:`remove_stale_temps`).
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

from optimizer.core.config import resolve_path
from optimizer.core.errors import AccessError, ScenarioError, os_error, os_problem
from optimizer.core.interrupt import deferred_interrupt
from optimizer.io.atomic import write_atomic

# writes one file at the path it is given (its result, if any, is ignored)
Writer = Callable[[Path], object]


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


# per command whose output is a folder (its kind): the file that marks the folder as that
# command's output, and keys its JSON object always has
_OUR_MARKERS = {"run": ("manifest.json", ("package_version", "scenario", "objective")),
                "sweep": ("sweep.json", ("scenario", "points")),
                "backtest": ("backtest.json", ("table", "calibration")),
                "simulate": ("simulate.json", ("settings", "strategies"))}
KINDS = tuple(_OUR_MARKERS)


def folder_kinds(path: Path) -> set[str]:
    """The commands (``run``, ``sweep``, ``backtest``, ``simulate``) whose output ``path`` holds:
    each whose marker file is there, a JSON object with the keys that command writes."""
    found = set()
    for kind, (name, keys) in _OUR_MARKERS.items():
        marker = Path(path) / name
        try:
            if marker.is_file() and not marker.is_symlink():
                data = json.loads(marker.read_text(encoding="utf-8"))
                if isinstance(data, dict) and all(key in data for key in keys):
                    found.add(kind)
        except (OSError, ValueError):
            continue
    return found


def is_run_folder(path: Path, kind: str | None = None) -> bool:
    """Whether ``path`` is a folder this tool wrote (:func:`folder_kinds`); with ``kind``, the
    output of that command alone (a sweep's folder is not a run's)."""
    kinds = folder_kinds(path)
    return bool(kinds) if kind is None else kinds == {kind}


def _held(kinds: set[str]) -> str:
    return " and ".join(f"a {k}'s output ({_OUR_MARKERS[k][0]})" for k in sorted(kinds))


def _refuse_inside_output(path: Path, what: str, itself: bool) -> None:
    """Raise :class:`ScenarioError` when a folder above ``path`` (and, with ``itself``, ``path``
    itself) is a command's output: that command replaces its folder whole, so whatever is
    written there is deleted by its next run into the same folder."""
    absolute = resolve_path(path, what)
    for place in ((absolute,) if itself else ()) + tuple(absolute.parents):
        kinds = folder_kinds(place)
        if kinds:
            where = "is" if place == absolute else f"is inside {place}, which holds"
            again = " or ".join(sorted(kinds))
            raise ScenarioError(
                f"{what} {path} {where} {_held(kinds)}: offeropt {again} replaces that folder "
                "whole, so its next run into it would delete what is written here; choose a "
                "folder outside it")


def check_files_folder(folder: Path, what: str) -> None:
    """Before any work: refuse (:class:`ScenarioError`, exit 2) a folder that a command writes
    named files into (``measure --out``, the folder of a ``--html`` page, ``demo-outcomes``'s
    OUT, ``simulate --worlds``) when it is, or is inside, a command's output folder (a run's,
    sweep's, backtest's or simulation's): those are replaced whole, so the files would be lost
    to the next run. ``what`` names the option in the message."""
    _refuse_inside_output(folder, what, itself=True)


def _refuse_foreign(output: Path, kind: str) -> None:
    """Raise :class:`ScenarioError` unless ``output`` is absent, the ``kind`` command's own
    earlier output, or an empty folder (not the current one, not a mount point: those cannot be
    swapped out), and lies inside no command's output folder (it would be deleted with it). The
    one rule of what a command's output may replace."""
    if kind not in _OUR_MARKERS:
        raise ValueError(f"unknown output kind {kind!r}; one of {', '.join(KINDS)}")
    _refuse_inside_output(output, "output", itself=False)
    if output.is_symlink():
        raise ScenarioError(f"output {output} is a symbolic link; name the folder itself")
    if not os.path.lexists(output):
        return
    if not output.is_dir():
        raise ScenarioError(f"output {output} is an existing file, not a {kind} folder; it is "
                            "never replaced: choose another output")
    kinds = folder_kinds(output)
    if kinds == {kind}:
        return
    if kinds:
        raise ScenarioError(
            f"output {output} holds {_held(kinds)}, not a {kind}'s: offeropt {kind} replaces only its "
            "own earlier output, never another command's (it would be lost): choose another "
            "folder, or remove it yourself")
    if not any(output.iterdir()) and output != Path.cwd().resolve() and not os.path.ismount(output):
        return
    raise ScenarioError(
        f"output {output} is an existing folder that this tool did not write (it holds no "
        f"{_OUR_MARKERS[kind][0]} of a {kind}); it is never replaced or deleted: choose a new "
        "folder, or remove it yourself")


def check_output(output: Path, data: Path | None = None, replace: bool = True,
                 kind: str = "run") -> None:
    """Before planning: refuse an ``output`` the ``kind`` command (``run``, ``sweep``,
    ``backtest``, ``simulate``) must not write (:class:`ScenarioError`, exit 2) or cannot write
    (:class:`AccessError`, exit 3).

    Refused: a path that cannot be resolved (a symbolic link loop), an existing file, a folder
    that is not this command's own earlier output nor empty when the command would replace it
    (``replace``; see :func:`is_run_folder`), the data folder, a folder above it or inside it, and a place where
    no folder can be made (read-only file system, no permission, a file where a folder should
    be): the nearest existing folder is tried by making and removing a folder in it."""
    output = resolve_path(output, "output")
    if data is not None:
        data = resolve_path(data, "data folder")
        if output == data or output in data.parents or data in output.parents:
            place = ("is the data folder" if output == data else "holds the data folder"
                     if output in data.parents else "is inside the data folder")
            raise ScenarioError(f"output {output} {place} {data}; the run folder must be "
                                "apart from its inputs: choose another output")
    if output == Path.cwd().resolve() or output in Path.cwd().resolve().parents:
        if not is_run_folder(output, kind):
            raise ScenarioError(f"output {output} is the current folder or one above it; it is "
                                "never replaced: choose a new folder")
    if replace:
        _refuse_foreign(output, kind)
    elif os.path.lexists(output) and not output.is_dir():
        raise ScenarioError(f"output {output} is an existing file, not a folder")
    probe_in = output if (not replace and output.is_dir()) else output.parent
    while not os.path.lexists(probe_in) and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ScenarioError(f"output {output}: {probe_in} is a file, not a folder")
    try:
        probe = probe_in / f".{output.name}.probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise AccessError(f"cannot write the output {output}: {os_problem(exc)} (tried by "
                          f"making a folder in {probe_in}); nothing was planned") from None


def write_run_folder(output: Path, writers: dict[str, Writer],
                     then: Callable[[], None] | None = None, *, kind: str = "run") -> None:
    """Write every file through ``writers`` (name -> function writing that path) into a temporary
    sibling folder, then move it into place as one step.

    ``then``: called right after the folder is in place, in the same commit (e.g. renaming a
    staged history table into place). A Ctrl-C while the files are written removes the temporary
    folder and leaves the earlier run as it was; one during the commit (a few renames) is held
    until the commit is done (:func:`optimizer.core.interrupt.deferred_interrupt`).

    Refuses (:class:`ScenarioError`) to replace anything but the ``kind`` command's own earlier
    output (``writers`` write that command's files) or an empty folder; a failure to write (disk
    full, file size limit, read-only) raises :class:`AccessError` and leaves no partial output."""
    output = Path(output)
    _refuse_foreign(output, kind)
    try:
        _write_run_folder(output, writers, then)
    except Exception as exc:
        if os_error(exc) is None or isinstance(exc, (AccessError, ScenarioError)):
            raise
        earlier = " (the earlier run is left as it was)" if is_run_folder(output) else ""
        raise AccessError(f"cannot write the run folder {output}: {os_problem(exc)}; nothing "
                          f"was written{earlier}") from exc


def _write_run_folder(output: Path, writers: dict[str, Writer],
                      then: Callable[[], None] | None) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)
    temp = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temp.mkdir()  # in the try: an interrupt right after it still removes the folder
        for name, write in writers.items():
            write(temp / name)
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
    removed: list[Path] = []
    if not output.parent.is_dir():
        return removed
    for kind in ("tmp", "old", "probe"):
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


def json_writer(data: dict[str, Any]) -> Writer:
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


# decimals of floats in CSV outputs: a campaign tool reads 0.300000, not 0.30000000000000004;
# the Parquet copy keeps full precision (offeropt check accepts the CSV's rounding of it)
CSV_DECIMALS = 6


def csv_writer(frame: pl.DataFrame) -> Writer:
    """The writer of a frame as a CSV output: floats with :data:`CSV_DECIMALS` decimals, as
    every CSV the tool writes (docs/contract.md, "Formatting of outputs")."""
    return lambda path: frame.write_csv(path, float_precision=CSV_DECIMALS)


def table_writers(name: str, frame: pl.DataFrame) -> dict[str, Writer]:
    """Writers of ``name.parquet`` (full precision) and ``name.csv`` (:func:`csv_writer`) for a
    frame."""
    return {
        f"{name}.parquet": lambda path: frame.write_parquet(path, compression="zstd",
                                                            statistics=True),
        f"{name}.csv": csv_writer(frame),
    }


def write_text_file(path: Path, text: str) -> None:
    """Write one text file whole or not at all (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_files(folder: Path, writers: dict[str, Writer]) -> None:
    """Write each file through its writer into a temporary name in ``folder`` and rename it into
    place (each file whole or not at all; other files of the folder are left alone)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, write in writers.items():
        write_atomic(folder / name, write)
