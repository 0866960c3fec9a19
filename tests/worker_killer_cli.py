"""``python tests/worker_killer_cli.py PASS ARGS...``: ``offeropt ARGS...`` on a Dask cluster whose
worker holding shard 0 is killed (SIGKILL) just before the price pass PASS, so that a test can
lose a worker mid-solve at a known point (tests/test_dask_backend.py). The library has no such
hook: the executor's ``respond`` is wrapped here.
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


def main(at_pass: int, args: list[str]) -> None:
    """Run the command line with shard 0's worker killed before pass ``at_pass``."""
    from optimizer import cli
    from optimizer.solve.backends.dask_shards import DaskShards

    respond = DaskShards.respond
    passes = [0]

    def killing_respond(self: DaskShards, prices: Any) -> Any:
        passes[0] += 1
        if passes[0] == at_pass:
            worker = self.addresses[0]  # shard k lives on worker k mod workers
            pid = self.client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)
            while not _gone(pid):
                time.sleep(0.05)
            print(f"killed worker {worker} before pass {at_pass}", file=sys.stderr, flush=True)
        return respond(self, prices)

    DaskShards.respond = killing_respond  # type: ignore[method-assign]
    sys.argv = ["offeropt", *args]
    cli.entry()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
