"""A shard's actor future cancelled while the shards are first built counts as its worker lost
(optimizer/solve/backends/dask_shards.py): started again once on the workers left, and a second
loss is the clear "lost while built again" error (exit code 3), not a failed start.

Under load a second worker kill can land before the scheduler has dropped the worker, and Dask
cancels the actor's future first; a real cluster cannot make that order happen at will, so these
tests drive :meth:`DaskShards._built` on stand-in futures and client, deterministically.
"""
from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Any

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

from optimizer.core.errors import ClusterError  # noqa: E402
from optimizer.solve.backends.dask_shards import DaskShards  # noqa: E402

WORKERS = ("tcp://a:1", "tcp://b:1")


class _Future:
    """An actor's future as ``_built`` reads it: its status, and its result."""

    def __init__(self, status: str, actor: str) -> None:
        self.status, self.actor = status, actor

    def result(self) -> str:
        if self.status == "cancelled":
            raise CancelledError(self.actor)
        return self.actor


class _Client:
    def scheduler_info(self, n_workers: int = -1) -> dict[str, Any]:
        return {"workers": dict.fromkeys(WORKERS)}  # the scheduler still lists both workers


def _shards(statuses: list[str], restarts: list[str]) -> tuple[DaskShards, list[list[int]]]:
    """An executor of ``len(statuses)`` shards whose actors' futures have these statuses; each
    start again (``_place``) gives the next status of ``restarts``. Returns it and the shards
    started again, call by call."""
    shards = object.__new__(DaskShards)
    shards.client = _Client()
    shards.where = [WORKERS[k % 2] for k in range(len(statuses))]
    shards._futures = [_Future(s, f"actor {k}") for k, s in enumerate(statuses)]
    shards.actors = [None] * len(statuses)
    shards.lost, shards.rebuilt = set(), 0
    placed: list[list[int]] = []

    def place(again: list[int]) -> None:
        placed.append(list(again))
        for k in again:
            shards._futures[k] = _Future(restarts.pop(0), f"actor {k} again")

    shards._place = place  # type: ignore[method-assign]
    return shards, placed


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "wait", lambda futures, timeout=None: None)


def test_a_cancelled_actor_at_the_start_is_started_again_once():
    shards, placed = _shards(["finished", "cancelled", "finished"], ["finished"])
    shards._built(range(3), first=True)
    assert placed == [[1]]
    assert shards.actors == ["actor 0", "actor 1 again", "actor 2"]
    assert shards.rebuilt == 1 and shards.lost == {WORKERS[1]}


def test_a_cancelled_actor_started_again_and_cancelled_again_stops_the_run_clearly():
    shards, placed = _shards(["finished", "cancelled"], ["cancelled"])
    with pytest.raises(ClusterError, match="was built on it again; the solve stopped and no "
                                           "output was written"):
        shards._built(range(2), first=True)
    assert placed == [[1]]


def test_a_cancelled_actor_rebuilt_mid_solve_stops_the_run_clearly():
    """Mid-solve a lost shard is rebuilt once (``first`` false): cancelled then, the run stops
    naming the worker, as for a worker lost while it is rebuilt."""
    shards, placed = _shards(["cancelled"], [])
    with pytest.raises(ClusterError, match=f"the Dask worker {WORKERS[0]} was lost while shard "
                                           "0 was built on it;"):
        shards._built([0])
    assert placed == []


def test_worker_peak_is_its_own_not_its_starters():
    """A worker's peak memory is its own: ``ru_maxrss`` would report the RSS of the process that
    started it (kept across fork and exec), so a worker started by a driver holding GBs of pairs
    read as holding them too."""
    import subprocess
    import sys

    import numpy as np

    size = 1_200_000_000
    held = np.ones(size // 8)  # the starter holds 1.2 GB, more than the child's own imports
    code = ("import resource; from optimizer.solve.backends.dask_shards import _peak_rss_gb; "
            "print(_peak_rss_gb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    own, inherited_kb = out.stdout.split()
    assert held.sum() > 0
    if sys.platform.startswith("linux"):
        assert int(inherited_kb) * 1024 > size  # what getrusage says of the child
    assert float(own) < size / 1e9 - 0.4  # the child's imports only
