"""Concurrent history appends (issue 22, item 6): the history table is read, checked and replaced
under a file lock, so two appends at once both land (read-concat-rename without a lock lost one
week), and the second sees the first's rows (a week appended twice is refused, not duplicated).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from optimizer.io.history import LOCK_NAME, HistoryBusyError, append_history, history_lock

# a child process: waits for the test's "go", then appends `week`; writing the new table is
# slowed (the module's writer seam), so both children read the table before either replaces it
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import polars as pl
    import optimizer.io.history as history
    folder, week, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    slow = history._write_frame
    def write(frame, path, fmt):
        time.sleep(1.0)
        slow(frame, path, fmt)
    history._write_frame = write
    (folder / f"ready-{week}-{sys.argv[4]}").touch()
    while not go.exists():
        time.sleep(0.01)
    rows = pl.DataFrame({"customer_id": [1, 2], "offer_id": [10 + week, 20 + week]})
    try:
        history.append_history(folder, rows, week)
    except history.InputError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
""")


def _history(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(folder / "history.parquet")


def _append_together(folder: Path, weeks: list[int]) -> list[subprocess.CompletedProcess]:
    go = folder / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(w), str(go), str(k)],
                              stderr=subprocess.PIPE, text=True) for k, w in enumerate(weeks)]
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < len(weeks):
        assert time.monotonic() < deadline, "children did not start"
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
        time.sleep(0.02)
    go.touch()
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, None, err))
    return out


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    pl.DataFrame({"customer_id": [1], "offer_id": [5], "week": [30]}).write_parquet(
        tmp_path / "history.parquet")
    return tmp_path


def test_two_appends_at_once_both_land(folder):
    results = _append_together(folder, [41, 42])
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    history = _history(folder)
    assert sorted(history.get_column("week").to_list()) == [30, 41, 41, 42, 42]
    assert (folder / LOCK_NAME).exists()
    assert not list(folder.glob(".history.tmp-*"))


def test_the_second_append_of_a_week_sees_the_first(folder):
    """Both append week 41: the one that waits reads the table with the other's rows and is
    refused (without the lock both succeeded, the last rename keeping one copy by chance)."""
    results = _append_together(folder, [41, 41])
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr for r in results]
    refused = next(r for r in results if r.returncode == 2)
    assert "already holds 2 rows of week 41" in refused.stderr
    assert sorted(_history(folder).get_column("week").to_list()) == [30, 41, 41]


def test_an_append_waits_for_the_lock_then_reads_the_fresh_table(folder, caplog):
    release = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with history_lock(folder):
            held.set()
            release.wait(10)
            # written under the lock, as another run would: the waiting append must see it
            pl.DataFrame({"customer_id": [3], "offer_id": [7], "week": [40]}).write_parquet(
                folder / "history.parquet")

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    start = time.perf_counter()
    with caplog.at_level("WARNING", logger="optimizer.io.history"):
        append_history(folder, pl.DataFrame({"customer_id": [1], "offer_id": [9]}), 41)
    thread.join()
    assert time.perf_counter() - start >= 0.4
    assert "waiting for another run" in caplog.text
    assert _history(folder).sort("week").get_column("week").to_list() == [40, 41]


def test_a_lock_held_too_long_fails_clearly(folder):
    before = (folder / "history.parquet").read_bytes()
    with history_lock(folder):
        with pytest.raises(HistoryBusyError, match=r"being updated by another run .*0\.3 s"):
            append_history(folder, pl.DataFrame({"customer_id": [1], "offer_id": [9]}), 41,
                           lock_timeout_s=0.3)
    assert (folder / "history.parquet").read_bytes() == before
    assert not list(folder.glob(".history.tmp-*"))
