"""Shards resident on Dask workers: each shard is an actor pinned to one worker for the whole
solve (``pip install -e ".[dask]"``).

Without a scheduler address a ``LocalCluster`` of ``workers`` processes is started (and closed
after the solve), each with its share of the memory limit. Shard ``k`` lives on worker ``k mod
workers`` of the sorted worker addresses; the pass loop adds the shards' answers in shard order
(:class:`.executor.ShardExecutor`), so the plan does not depend on the number of workers. A lost
worker fails the solve with a :class:`ClusterError` (exit code 3, nothing is written); its shards
are not rebuilt elsewhere.

Given the inputs' :class:`~optimizer.model.build.WorkerInputs` (the ``scores`` path), each worker
builds its shards' blocks itself (:class:`~optimizer.solve.lagrangian.shard.BuiltShard`): the
driver sends the table's path, the scenario, the offers and rules once to every worker and each
shard its stretch of the customers and caps; no candidate crosses the network. Otherwise the
driver's blocks are scattered, each shard's to its worker.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

from optimizer.core.errors import ClusterError
from optimizer.model.build import WorkerInputs
from optimizer.model.problem import AssignmentProblem
from optimizer.solve.lagrangian.executor import ShardExecutor, payload_bytes
from optimizer.solve.lagrangian.shard import BuiltShard, Shard
from optimizer.solve.lagrangian.shards import (
    piece_pairs,
    shard_args,
    source_args,
)

try:  # the dask extra; without it _client says how to install it
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - the extra is not installed
    WorkerPlugin = object  # type: ignore[misc,assignment]

CONNECT_TIMEOUT = "20s"  # how long a scheduler address is tried before the run fails (exit 3)


def _peak_rss_gb() -> float:
    """This process's peak resident memory in GB (run on each worker)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)


def _rss_gb() -> float:
    """This process's resident memory now, in GB (run on each worker at the solve's end)."""
    import psutil

    return round(psutil.Process().memory_info().rss / 1e9, 3)


class KernelCache(WorkerPlugin):
    """A Dask worker plugin: the worker's numba caches its compiled kernels in ``folder``
    (``NUMBA_CACHE_DIR``), so workers sharing the folder compile each kernel once (the first
    start) and load it at every later start. The kernels already imported with the plugin
    (unpickling it imports the package) are pointed at the folder too; none has compiled yet."""

    name = "offeropt-kernel-cache"

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def setup(self, worker: Any) -> None:
        """Point the worker's numba, and its loaded kernels, at the folder."""
        os.makedirs(self.folder, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = self.folder
        from numba.core import config

        config.reload_config()
        for kernel in _cached_kernels():
            kernel.enable_caching()  # a new cache, located by the environment just set


def _cached_kernels() -> list[Any]:
    """The numba kernels of the package's loaded modules that cache (``cache=True``)."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    found: dict[int, Any] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("optimizer.") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, Dispatcher) and not isinstance(
                        getattr(value, "_cache", None), NullCache):
                    found[id(value)] = value
    return list(found.values())


def _kernel_counts() -> dict[str, int]:
    """Run on a worker: its cached kernels' signatures compiled in this process and loaded
    from a cache (numba's dispatcher statistics)."""
    kernels = _cached_kernels()
    return {"compiled": sum(sum(k.stats.cache_misses.values()) for k in kernels),
            "loaded": sum(sum(k.stats.cache_hits.values()) for k in kernels)}


def _client(scheduler: str | None, workers: int, memory_limit_gb: float | None,
            kernel_cache: str | None = None) -> tuple[Any, Any]:
    """A client of ``scheduler``, or of a new ``LocalCluster`` (returned to be closed); with
    ``kernel_cache``, every worker's numba caches its kernels there (:class:`KernelCache`)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # the extra is not installed
        raise ClusterError("solver.backend = \"dask\" needs Dask distributed: "
                           "pip install -e \".[dask]\"") from exc
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    else:
        limit = f"{memory_limit_gb / workers:.3f}GB" if memory_limit_gb else "auto"
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit=limit, dashboard_address=":0",
                               silence_logs=logging.WARNING)
        client = Client(cluster)
    if kernel_cache is not None:  # every worker, and every worker that joins later
        client.register_plugin(KernelCache(os.path.abspath(kernel_cache)))
    return client, cluster


class DaskShards(ShardExecutor):
    """The shards of ``problem`` as actors on the workers of a Dask cluster (the cluster at
    ``scheduler``, or a new ``LocalCluster`` of ``workers`` processes)."""

    measure = True  # the bytes per pass go to the manifest
    packed = True  # the plans' first rows come back as bits

    def __init__(self, problem: AssignmentProblem, shard_customers: int, scheduler: str | None,
                 workers: int, memory_limit_gb: float | None = None,
                 source: WorkerInputs | None = None, kernel_cache: str | None = None) -> None:
        super().__init__(problem, shard_customers)
        self.worker_peaks: list[float] = []
        self.worker_rss: list[float] = []
        self.kernels: list[dict[str, int]] = []
        self.built_by = "workers" if source is not None else "driver"
        self.setup_bytes = 0  # what the shards were sent to start: blocks, or inputs' stretches
        self.client, self.cluster = _client(scheduler, workers, memory_limit_gb, kernel_cache)
        try:
            if scheduler is None:
                self.client.wait_for_workers(workers, timeout=120)
            addresses = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            if not addresses:
                raise ClusterError(f"the Dask cluster at {scheduler} has no workers")
            self.workers, self.addresses = len(addresses), addresses
            where = [addresses[k % len(addresses)] for k in range(len(self.specs))]
            if source is None:
                futures = [self._shard(shard_args(problem, spec), at)
                           for spec, at in zip(self.specs, where)]
            else:
                futures = self._built(problem, source, where)
            self.actors = [f.result() for f in futures]
            self._futures = futures  # held: an actor lives as long as its future
            self._check(problem, self.all("ready"))
        except BaseException:
            self.close()
            raise

    def _built(self, problem: AssignmentProblem, source: WorkerInputs, where: list[str]
               ) -> list[Any]:
        """The futures of actors that build their own blocks (:class:`BuiltShard`): the shared
        inputs sent once to every worker, each shard its stretch of customers and caps."""
        shared = self.client.scatter(source.source, broadcast=True, hash=False)
        self.setup_bytes = payload_bytes(source.source) * len(set(where))
        futures = []
        for spec, at in zip(self.specs, where):
            args = (*source_args(problem, spec), shared, *source.rows(spec.lo, spec.hi))
            self.setup_bytes += payload_bytes((args[:6], args[7:]))
            futures.append(self.client.submit(BuiltShard, *args, actor=True, workers=[at],
                                              allow_other_workers=False, pure=False))
        return futures

    def _check(self, problem: AssignmentProblem, pairs: list[int]) -> None:
        """Each shard holds the pairs of its pieces of the driver's blocks (a shard that built
        its own blocks from other inputs would plan other customers: the run stops)."""
        for k, (spec, found) in enumerate(zip(self.specs, pairs)):
            expected = piece_pairs(problem, spec)
            if found != expected:
                raise ClusterError(
                    f"shard {k} (customers {spec.lo:,} to {spec.hi - 1:,}) built {found:,} "
                    f"candidate pairs on its worker where the driver has {expected:,}: the "
                    "workers read other inputs than the driver (is the scores table the same "
                    "file for both?); no output was written")

    def _shard(self, args: tuple, address: str) -> Any:
        """The future of an actor ``Shard(*args)`` on the worker at ``address``; its problem
        (the shard's candidate blocks) is scattered to that worker first, not sent in the task."""
        part, *rest = args
        self.setup_bytes += payload_bytes(part)
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
        return {**super().report(), "worker_peak_gb": self.worker_peaks,
                "worker_end_gb": self.worker_rss, "kernels": self.kernels,
                "shards_built_by": self.built_by, "setup_bytes": self.setup_bytes}

    def close(self) -> None:
        try:  # the workers' peak memory, read before they go (best effort: they may be gone)
            peaks = self.client.run(_peak_rss_gb)
            self.worker_peaks = [peaks[a] for a in sorted(peaks)]
            held = self.client.run(_rss_gb)
            self.worker_rss = [held[a] for a in sorted(held)]
            kernels = self.client.run(_kernel_counts)
            self.kernels = [kernels[a] for a in sorted(kernels)]
        except Exception:  # noqa: BLE001 - a lost worker must not hide the solve's own error
            self.worker_peaks, self.worker_rss, self.kernels = [], [], []
        for name in ("_futures", "actors"):
            if hasattr(self, name):
                delattr(self, name)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
