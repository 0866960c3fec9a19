"""Write the run folder whole or not at all (its tables: :mod:`optimizer.report.tables`).

The folder is written into a temporary sibling and renamed into place; an earlier run folder of the
same name is swapped out in the same step (atomically with ``renameat2(RENAME_EXCHANGE)`` where the
kernel has it), so a reader or a crash sees the old folder or the new one, never a mix.

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


def write_run_folder(output: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write every file through ``writers`` (name -> function writing that path) into a temporary
    sibling folder, then move it into place as one step."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output)
    temp = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        for name, write in writers.items():
            write(temp / name)
        _fsync_dir(temp)
        if output.exists():
            if _exchange(temp, output):
                shutil.rmtree(temp)  # temp now holds the old run
            else:
                old = output.parent / f".{output.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                output.rename(old)
                temp.rename(output)
                shutil.rmtree(old)
        else:
            temp.rename(output)
        _fsync_dir(output.parent)
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
    """A writer of pretty, key-sorted JSON (deterministic apart from what ``data`` holds)."""
    def write(path: Path) -> None:
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
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
