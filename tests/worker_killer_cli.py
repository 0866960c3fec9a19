"""``python tests/worker_killer_cli.py CALL N WAIT ARGS...``: ``offeropt ARGS...`` on a Dask cluster
whose worker holding shard 0 is killed (SIGKILL) just before the ``N``-th call ``CALL`` of the
shards (``respond``: the ``N``-th price pass; ``collect``, ``plan_rows_packed``: mid-pass, after
calls whose state the shards keep), so that a test can lose a worker mid-solve at a known point
(tests/test_dask_backend.py); ``WAIT``: the seconds the lost shards wait for a worker to be
rebuilt on (``dask_shards.REPLACE_TIMEOUT``). The library has no such hook: the executor's
``map`` is wrapped here.

``CALL`` ``start``: the worker a shard's actor is sent to is killed just after the ``N``-th
actor is submitted (shards ``0 ... S-1`` are the first ``S``; those after, shards rebuilt), while
it is being built. Several kills: ``CALL`` and ``N`` as comma lists (``collect,start`` ``3,4``).
With ``KILLER_SPLIT_ABOVE`` set, the crossing buckets of more candidates are narrowed
(:mod:`optimizer.solve.lagrangian.narrow`), so that ``kept_tallies`` can be a kill point.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split()[2] in ("Z", "X")
    except FileNotFoundError:
        return True


def _kill(client: Any, worker: str, what: str) -> None:
    """SIGKILL the process of the Dask worker at ``worker`` and wait until it is gone."""
    pid = client.run(os.getpid, workers=[worker])[worker]
    os.kill(pid, signal.SIGKILL)
    while not _gone(pid):
        time.sleep(0.05)
    print(f"killed worker {worker} {what}", file=sys.stderr, flush=True)


def main(calls: str, ats: str, wait: float, args: list[str]) -> None:
    """Run the command line with shard 0's worker killed before the ``at``-th ``call`` (or a
    shard's worker as its ``at``-th actor is built: ``start``), for each pair of the lists."""
    from optimizer import cli
    from optimizer.solve.backends import dask_shards
    from optimizer.solve.lagrangian.executor import ShardExecutor

    if os.environ.get("KILLER_SPLIT_ABOVE"):  # crossing buckets narrowed past that many
        ShardExecutor.split_above = float(os.environ["KILLER_SPLIT_ABOVE"])

    kills = list(zip(calls.split(","), (int(a) for a in ats.split(","))))
    shards_map, shards_start = dask_shards.DaskShards.map, dask_shards.DaskShards._start
    seen: dict[str, int] = {}
    dask_shards.REPLACE_TIMEOUT = wait

    def counted(call: str) -> bool:
        seen[call] = seen.get(call, 0) + 1
        return (call, seen[call]) in kills

    def killing_map(self: dask_shards.DaskShards, method: str, margs: Any) -> Any:
        if counted(method):
            _kill(self.client, self.where[0], f"before call {seen[method]} of {method}")
        return shards_map(self, method, margs)

    def killing_start(self: dask_shards.DaskShards, k: int, at: str) -> Any:
        future = shards_start(self, k, at)
        if counted("start"):
            _kill(self.client, at, f"while it built shard {k} (actor {seen['start']})")
        return future

    dask_shards.DaskShards.map = killing_map  # type: ignore[method-assign]
    dask_shards.DaskShards._start = killing_start  # type: ignore[method-assign]
    sys.argv = ["offeropt", *args]
    cli.entry()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:])
