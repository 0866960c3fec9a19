"""Ctrl-C at any moment (issue 22, item 5): the run stops with exit 130, removes its temporary
files, and leaves the earlier run folder and the history table as they were.

``offeropt run`` is started as a subprocess on a 500-customer demo; the test reads its progress
lines on stderr and sends SIGINT once the run reaches a stage: during the CP-SAT polish (which
used to swallow the interrupt and finish the run with exit 0) and while the run folder is being
written (the documented write-delay hook). The commit itself (folder swap and history rename)
holds an interrupt until it is done; that is tested in-process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optimizer.core.interrupt import InterruptedAfterCommit
from optimizer.io.runfolder import write_run_folder
from tests.tiny_world import tree_bytes

SLOW_WRITER = Path(__file__).parent / "slow_writer_cli.py"


def _interrupt_at(scenario: Path, marker: str, wait_s: float, *args: str,
                  write_delay_s: float | None = None) -> tuple[int, str, float]:
    """Run ``offeropt run`` until a stderr line contains ``marker``, wait ``wait_s``, send
    SIGINT; returns the exit code, stderr and the seconds from the signal to the exit. With
    ``write_delay_s`` each run-folder file is written that long apart (tests/slow_writer_cli.py)."""
    program = ([sys.executable, "-m", "optimizer"] if write_delay_s is None
               else [sys.executable, str(SLOW_WRITER), str(write_delay_s)])
    proc = subprocess.Popen(
        [*program, "run", str(scenario), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ),
        # a shell's background job ignores SIGINT, and Python would then never see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            break
    else:
        proc.wait()
        raise AssertionError(f"the run ended (exit {proc.returncode}) before {marker!r}: "
                             + "".join(seen))
    time.sleep(wait_s)
    proc.send_signal(signal.SIGINT)
    sent = time.perf_counter()
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    return code, "".join(seen) + rest, time.perf_counter() - sent


def _state(scenario: Path) -> dict[str, dict[str, bytes]]:
    """The run folder and the input folder byte for byte (the history lock file aside: it is
    created once, empty, and stays)."""
    root = scenario.parent
    data = {k: v for k, v in tree_bytes(root / "data").items() if k != ".history.lock"}
    return {"out": tree_bytes(root / "out"), "data": data}


def _leftovers(scenario: Path) -> list[str]:
    root = scenario.parent
    return sorted(p.name for p in [*root.iterdir(), *(root / "data").iterdir()]
                  if ".tmp-" in p.name or ".old-" in p.name)


@pytest.mark.slow
def test_ctrl_c_during_the_polish_stops_the_run(earlier):
    """CP-SAT's own SIGINT handler stopped its search and the run went on to write the folder
    and append history with exit 0."""
    before = _state(earlier)
    code, err, seconds = _interrupt_at(
        earlier, "polish: CP-SAT", 2.0, "--append-history", "--set", "solver.max_iterations=2",
        "--set", "solver.polish_pairs=1000000", "--set", "solver.polish_time=600")
    assert code == 130, err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert seconds < 30  # the polish was given 600 work units: it was stopped, not finished
    assert _state(earlier) == before
    assert _leftovers(earlier) == []


@pytest.mark.slow
@pytest.mark.parametrize("wait_s", [0.2, 1.5])
def test_ctrl_c_while_writing_removes_the_temporary_folder(earlier, wait_s):
    """While the files are written into the temporary folder (after the polish: SIGINT had been
    reset to the system default there, killing the process with its temporary folder left)."""
    before = _state(earlier)
    code, err, _ = _interrupt_at(earlier, "write ...", wait_s, "--append-history",
                                 "--set", "solver.max_iterations=2",
                                 write_delay_s=0.5)
    assert code == 130, err
    assert "Traceback" not in err
    assert _state(earlier) == before
    assert _leftovers(earlier) == []


def test_ctrl_c_during_the_commit_is_held_until_it_is_done(tmp_path):
    """An interrupt arriving while the folder is swapped in and the history renamed is acted on
    once both are done: the outputs are whole, and the run still stops (exit 130)."""
    out = tmp_path / "out"
    committed = []

    def then() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered now, held by the commit
        committed.append(True)

    with pytest.raises(InterruptedAfterCommit):
        write_run_folder(out, {"a.txt": lambda p: p.write_text("new")}, then=then)
    assert committed == [True]
    assert (out / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # the handler is Python's again: a later Ctrl-C raises at once
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_the_polish_leaves_pythons_sigint_handler_in_place(earlier):
    """After the polish SIGINT was the system default (CP-SAT resets it): Ctrl-C then killed the
    process outright instead of raising KeyboardInterrupt."""
    from optimizer.apps.pipeline import run_scenario
    from optimizer.core.config import load_scenario

    handler = signal.getsignal(signal.SIGINT)
    run_scenario(load_scenario(earlier, ["solver.max_iterations=2",
                                         "solver.polish_pairs=1000000"]), write=False)
    assert signal.getsignal(signal.SIGINT) is handler
