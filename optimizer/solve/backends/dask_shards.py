"""Shards resident on Dask workers: each shard is an actor pinned to one worker for the whole
solve (``pip install -e ".[dask]"``).

Without a scheduler address a ``LocalCluster`` of ``workers`` processes is started (and closed
after the solve), each with its share of the memory limit. Shard ``k`` lives on worker ``k mod
workers`` of the sorted worker addresses; the pass loop adds the shards' answers in shard order
(:class:`.executor.ShardExecutor`), so the plan does not depend on the number of workers. A lost
worker fails the solve with a :class:`ClusterError` (exit code 3, nothing is written); its shards
are not rebuilt elsewhere.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from optimizer.core.errors import ClusterError
from optimizer.model.problem import AssignmentProblem
from optimizer.solve.lagrangian.executor import ShardExecutor
from optimizer.solve.lagrangian.shard import Shard
from optimizer.solve.lagrangian.shards import shard_args

CONNECT_TIMEOUT = "20s"  # how long a scheduler address is tried before the run fails (exit 3)


def _peak_rss_gb() -> float:
    """This process's peak resident memory in GB (run on each worker)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)


def _client(scheduler: str | None, workers: int, memory_limit_gb: float | None
            ) -> tuple[Any, Any]:
    """A client of ``scheduler``, or of a new ``LocalCluster`` (returned to be closed)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # the extra is not installed
        raise ClusterError("solver.backend = \"dask\" needs Dask distributed: "
                           "pip install -e \".[dask]\"") from exc
    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), None
        except OSError as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    limit = f"{memory_limit_gb / workers:.3f}GB" if memory_limit_gb else "auto"
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           memory_limit=limit, dashboard_address=":0",
                           silence_logs=logging.WARNING)
    return Client(cluster), cluster


class DaskShards(ShardExecutor):
    """The shards of ``problem`` as actors on the workers of a Dask cluster (the cluster at
    ``scheduler``, or a new ``LocalCluster`` of ``workers`` processes)."""

    measure = True  # the bytes per pass go to the manifest
    packed = True  # the plans' first rows come back as bits

    def __init__(self, problem: AssignmentProblem, shard_customers: int, scheduler: str | None,
                 workers: int, memory_limit_gb: float | None = None) -> None:
        super().__init__(problem, shard_customers)
        self.worker_peaks: list[float] = []
        self.client, self.cluster = _client(scheduler, workers, memory_limit_gb)
        try:
            if scheduler is None:
                self.client.wait_for_workers(workers, timeout=120)
            addresses = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            if not addresses:
                raise ClusterError(f"the Dask cluster at {scheduler} has no workers")
            self.workers, self.addresses = len(addresses), addresses
            futures = [self._shard(shard_args(problem, spec), addresses[k % len(addresses)])
                       for k, spec in enumerate(self.specs)]
            self.actors = [f.result() for f in futures]
            self._futures = futures  # held: an actor lives as long as its future
            self.all("ready")
        except BaseException:
            self.close()
            raise

    def _shard(self, args: tuple, address: str) -> Any:
        """The future of an actor ``Shard(*args)`` on the worker at ``address``; its problem
        (the shard's candidate blocks) is scattered to that worker first, not sent in the task."""
        part, *rest = args
        sent = self.client.scatter(part, workers=[address], hash=False)
        return self.client.submit(Shard, sent, *rest, actor=True, workers=[address],
                                  allow_other_workers=False, pure=False)

    def map(self, method: str, args: Sequence[tuple]) -> list:
        try:
            calls = [getattr(actor, method)(*a) for actor, a in zip(self.actors, args)]
            out = [c.result() for c in calls]
        except ClusterError:
            raise
        except Exception as exc:  # a worker lost mid-solve: the shards it held are gone
            raise ClusterError(
                f"a Dask worker holding shards of the solve failed ({type(exc).__name__}: "
                f"{exc}); the solve stopped and no output was written") from exc
        self._count(method, args, out)
        return out

    def report(self) -> dict[str, Any]:
        """The executor's record, with each worker's peak memory (GB) while it held shards."""
        return {**super().report(), "worker_peak_gb": self.worker_peaks}

    def close(self) -> None:
        try:  # the workers' peak memory, read before they go (best effort: they may be gone)
            peaks = self.client.run(_peak_rss_gb)
            self.worker_peaks = [peaks[a] for a in sorted(peaks)]
        except Exception:  # noqa: BLE001 - a lost worker must not hide the solve's own error
            self.worker_peaks = []
        for name in ("_futures", "actors"):
            if hasattr(self, name):
                delattr(self, name)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
