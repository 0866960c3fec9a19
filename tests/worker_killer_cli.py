"""``python tests/worker_killer_cli.py CALL N WAIT ARGS...``: ``offeropt ARGS...`` on a Dask cluster
whose worker holding shard 0 is killed (SIGKILL) just before the ``N``-th call ``CALL`` of the
shards (``respond``: the ``N``-th price pass; ``collect``, ``plan_rows_packed``: mid-pass, after
calls whose state the shards keep), so that a test can lose a worker mid-solve at a known point
(tests/test_dask_backend.py); ``WAIT``: the seconds the lost shards wait for a worker to be
rebuilt on (``dask_shards.REPLACE_TIMEOUT``). The library has no such hook: the executor's
``map`` is wrapped here.
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


def main(call: str, at: int, wait: float, args: list[str]) -> None:
    """Run the command line with shard 0's worker killed before the ``at``-th ``call``."""
    from optimizer import cli
    from optimizer.solve.backends import dask_shards

    shards_map = dask_shards.DaskShards.map
    seen = [0]
    dask_shards.REPLACE_TIMEOUT = wait

    def killing_map(self: dask_shards.DaskShards, method: str, margs: Any) -> Any:
        if method == call:
            seen[0] += 1
            if seen[0] == at:
                worker = self.where[0]
                pid = self.client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                while not _gone(pid):
                    time.sleep(0.05)
                print(f"killed worker {worker} before call {at} of {call}", file=sys.stderr,
                      flush=True)
        return shards_map(self, method, margs)

    dask_shards.DaskShards.map = killing_map  # type: ignore[method-assign]
    sys.argv = ["offeropt", *args]
    cli.entry()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
