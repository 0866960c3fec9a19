"""The one atomic file writer: a file is written under a temporary sibling name, flushed to disk
and renamed over its target, so a reader, a failure or a kill sees the old file or the new one,
never part of one.

:func:`write_atomic` writes one file that way (:func:`write_atomic_together` several: none is
published unless every one was written, then they are renamed into place one after another, so
only a crash between two renames leaves some new beside some old); writers that stage a file over a longer time (the
history table staged under its lock, the demo tables streamed chunk by chunk) publish their
temporary file with :func:`publish`.
"""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Callable


def temp_sibling(target: Path) -> Path:
    """A fresh temporary name beside ``target`` (hidden, ``.NAME.tmp-XXXXXXXX``)."""
    return target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"


def publish(temp: Path, target: Path, sync_folder: bool = False) -> None:
    """Flush ``temp`` to disk and rename it over ``target`` (atomically); ``sync_folder`` also
    flushes the folder, so the rename itself survives a power cut."""
    _flush(temp)
    os.replace(temp, target)
    if sync_folder:
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _flush(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def write_atomic(target: Path, write: Callable[[Path], object]) -> None:
    """Write ``target`` whole or not at all: ``write`` fills a temporary sibling, which is then
    published over ``target``; the temporary file never outlives a failure."""
    target = Path(target)
    temp = temp_sibling(target)
    try:
        write(temp)
        publish(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic_together(writers: dict[Path, Callable[[Path], object]]) -> None:
    """Write several files, none published unless every one was written: each is written to
    its temporary sibling and flushed to disk first (where a full disk, a size limit or a
    refused folder fails), and only then are they renamed into place, one rename each, one
    after another. A failure before the renames publishes none; the renames are not one atomic
    step, so a crash or kill between two of them leaves the files renamed so far new and the
    others old (each file still whole). No temporary file outlives a failure."""
    temps = {Path(target): temp_sibling(Path(target)) for target in writers}
    for target in temps:  # a rename onto a folder would fail after the others were published
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "a folder is where the file goes", str(target))
    try:
        for target, write in writers.items():
            write(temps[Path(target)])
        for temp in temps.values():  # all on disk before the first rename: the renames follow
            _flush(temp)             # one another with nothing slow between them
        for target, temp in temps.items():
            os.replace(temp, target)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


__all__ = ["publish", "temp_sibling", "write_atomic", "write_atomic_together"]
