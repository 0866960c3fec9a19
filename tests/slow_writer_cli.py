"""``python tests/slow_writer_cli.py DELAY ARGS...``: ``offeropt ARGS...`` whose run folder writer
sleeps DELAY seconds after each file it writes into the temporary folder, so that a test can kill
the run in the middle of writing (tests/test_atomic_runs.py). The library has no such hook: the
writers the pipeline hands to :func:`optimizer.io.runfolder.write_run_folder` are wrapped here.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

Writer = Callable[[Path], None]


def _slow(write: Writer, delay: float) -> Writer:
    def slow_write(path: Path) -> None:
        write(path)
        time.sleep(delay)
    return slow_write


def main(delay: float, args: list[str]) -> None:
    """Run the command line with every run-folder file written ``delay`` seconds apart."""
    from optimizer import cli
    from optimizer.apps import pipeline

    write_run_folder = pipeline.write_run_folder

    def slow_run_folder(output: Path, writers: dict[str, Writer],
                        then: Callable[[], None] | None = None, *, kind: str = "run") -> None:
        write_run_folder(output, {name: _slow(w, delay) for name, w in writers.items()},
                         then=then, kind=kind)

    pipeline.write_run_folder = slow_run_folder
    sys.argv = ["offeropt", *args]
    cli.entry()


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2:])
