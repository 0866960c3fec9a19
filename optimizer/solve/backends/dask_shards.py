"""Shards resident on Dask workers: each shard is an actor pinned to one worker for the whole
solve (``pip install -e ".[dask]"``).

Without a scheduler address a ``LocalCluster`` of ``workers`` processes is started (and closed
after the solve), each with its share of the memory limit. Shard ``k`` lives on worker ``k mod
workers`` of the sorted worker addresses; the pass loop adds the shards' answers in shard order
(:class:`.executor.ShardExecutor`), so the plan does not depend on the number of workers.

A worker lost mid-solve takes its shards' actors with it: they are rebuilt from their arguments
on the workers left (or the lost one's replacement), replay the calls whose state the later
calls read (:data:`~optimizer.solve.lagrangian.shard.STATEFUL`) and answer the call again, so
the solve goes on to the same plan. A worker lost while the shards are first built has its shards
started again on the workers left (:meth:`DaskShards._built`; an actor's future cancelled while
it is built counts as its worker lost: Dask may cancel it before the scheduler drops the worker).
A shard lost twice in one call or twice in the first build, no worker to rebuild on within
:data:`REPLACE_TIMEOUT`, or a worker lost while a lost shard is rebuilt on it mid-solve, fails the
solve with a :class:`ClusterError` (exit code 3, nothing is written).

Given the inputs' :class:`~optimizer.model.build.WorkerInputs` (the ``scores`` path), each worker
builds its shards' blocks itself (:class:`~optimizer.solve.lagrangian.built_shard.BuiltShard`):
the driver sends the table's path, the scenario, the offers and rules once to every worker and each
shard its stretch of the customers and caps; no candidate crosses the network. Where the driver
read none of the table's rows (the problem's layout pending), the shards' reports of what they
built give it (:meth:`DaskShards._reported_layout`); where those show no more pairs than the
polish's reach, the driver then builds the blocks itself (the local run's, for the polish).
Otherwise the driver's blocks are scattered, each shard's to its worker.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import CancelledError
from typing import Any, Sequence

from optimizer.core.errors import ClusterError, InputError
from optimizer.model.build import WorkerInputs
from optimizer.model.problem import AssignmentProblem
from optimizer.solve.lagrangian.built_shard import (
    BuiltShard,
    added_audits,
    driver_blocks,
    merged_layout,
    piece_widths,
)
from optimizer.solve.lagrangian.executor import ShardExecutor, payload_bytes
from optimizer.solve.lagrangian.shard import Shard, remembered, replayed
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
REPLACE_TIMEOUT = 30.0  # seconds a lost worker's shards wait for a worker to be rebuilt on
_POLL = 0.5  # seconds between looks at the workers while shards are built
_WAITING = ("pending", "lost")  # the statuses of an actor's future not built (yet, or again)
_log = logging.getLogger(__name__)


def _peak_rss_gb() -> float:
    """This process's peak resident memory in GB (run on each worker).

    Linux's ``VmHWM``, the high-water mark of this process's own memory: ``getrusage``'s
    ``ru_maxrss`` keeps, across the fork and exec that start a worker, the RSS of the process it
    was started from, so a worker started by a driver holding GBs of pairs would report the
    driver's size. Elsewhere ``ru_maxrss`` (bytes on macOS, KB on Linux and BSD)."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) * 1024 / 1e9, 3)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9, 3)


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
    ``scheduler``, or a new ``LocalCluster`` of ``workers`` processes).

    ``rebuilt``: how many shards were rebuilt after their worker was lost; ``hold_up_to``: the
    polish's reach, within which the driver holds the blocks (:meth:`_reported_layout`)."""

    measure = True  # the bytes per pass go to the manifest
    packed = True  # the plans' first rows come back as bits

    def __init__(self, problem: AssignmentProblem, shard_customers: int, scheduler: str | None,
                 workers: int, memory_limit_gb: float | None = None,
                 source: WorkerInputs | None = None, kernel_cache: str | None = None,
                 hold_up_to: int | None = None) -> None:
        super().__init__(problem, shard_customers)
        self.stretch, self.hold_up_to = shard_customers, hold_up_to
        self.worker_peaks: list[float] = []
        self.worker_rss: list[float] = []
        self.kernels: list[dict[str, int]] = []
        self.source = source
        self.built_by = "workers" if source is not None else "driver"
        self.scores_pass = source.scores_pass if source is not None else "blocks"
        self.setup_bytes = 0  # what the shards were sent to start: blocks, or inputs' stretches
        self.rebuilt = 0
        self.lost: set[str] = set()  # the addresses of the workers lost
        self._replay: list[tuple[str, Sequence[tuple]]] = []  # (call, args): see STATEFUL
        self.client, self.cluster = _client(scheduler, workers, memory_limit_gb, kernel_cache)
        try:
            if scheduler is None:
                self.client.wait_for_workers(workers, timeout=120)
            addresses = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            if not addresses:
                raise ClusterError(f"the Dask cluster at {scheduler} has no workers")
            self.workers, self.addresses = len(addresses), addresses
            self.where = [addresses[k % len(addresses)] for k in range(len(self.specs))]
            self._shared = None if source is None else self._broadcast(addresses)
            self._futures = [self._started(k, at) for k, at in enumerate(self.where)]
            self.actors: list[Any] = [None] * len(self.specs)  # each lives as its future
            self._built(range(len(self.specs)), first=True)
            self._reported_layout()
            self._check(problem, range(len(self.specs)), self.all("ready"))
        except ClusterError:
            self.close()
            raise
        except InputError:  # a worker's rows broke the contract: exit 2, the local run's error
            self.close()
            if source is not None and source.recheck is not None:
                source.recheck()
            raise
        except Exception as exc:  # a shard's build failed on its worker
            self.close()
            raise ClusterError(
                f"the shards could not be started on the Dask workers ({type(exc).__name__}: "
                f"{exc}); no output was written") from exc
        except BaseException:
            self.close()
            raise

    def _reported_layout(self) -> None:
        """Where the driver read none of the table's rows (a pending layout): the blocks' layout
        from the shards' reports of what they built (in shard order,
        :func:`~optimizer.solve.lagrangian.built_shard.merged_layout`), their audits added
        into the run's, and each shard's pieces widened to their blocks' slots. The rows the
        shards read must be the table's (where the driver checks no shard's pairs). Where the
        layout holds no more pairs than ``hold_up_to`` (the polish's reach), the driver builds
        the blocks after all (:func:`~optimizer.solve.lagrangian.built_shard.driver_blocks`)
        and drops the layout: the problem is then the local run's, polished as there, and the
        shards' pairs are checked against the blocks."""
        layout, source = self.problem.layout, self.source
        if source is None or layout is None or layout.complete:
            return
        reports = self.all("layout_report")
        read = sum(report.rows for report in reports)
        if read != source.table_rows:
            raise ClusterError(
                f"the Dask workers read {read:,} rows of the scores table where the driver "
                f"counted {source.table_rows:,}: the workers read other inputs than the driver "
                "(is the scores table the same file for both?); no output was written")
        self.problem.layout = merged_layout(layout, self.specs, reports)
        if source.audit is not None:
            added_audits(source.audit, reports)
        self.map("widen", [(piece_widths(self.problem.layout, spec),) for spec in self.specs])
        if self.hold_up_to is not None and self.problem.layout.n_pairs <= self.hold_up_to:
            self.problem.blocks = driver_blocks(source, layout.bounds, self.stretch)
            self.problem.layout, self.scores_pass = None, "blocks_after_layout"

    def _broadcast(self, addresses: list[str]) -> Any:
        """The worker-built shards' shared inputs, scattered once to each of ``addresses``."""
        assert self.source is not None
        shared = self.source.shared()  # each shard is sent its own pair keys (_start)
        self.setup_bytes += payload_bytes(shared) * len(addresses)
        return self.client.scatter(shared, workers=addresses, broadcast=True, hash=False)

    def _start(self, k: int, at: str) -> Any:
        """The future of shard ``k``'s actor on the worker at ``at``: a :class:`BuiltShard`
        sent its stretch of the inputs, or a :class:`Shard` whose blocks (the driver's pieces)
        are scattered to that worker first, not sent in the task."""
        spec, problem = self.specs[k], self.problem
        if self.source is None:
            part, *rest = shard_args(problem, spec)
            self.setup_bytes += payload_bytes(part)
            sent = self.client.scatter(part, workers=[at], hash=False)
            return self.client.submit(Shard, sent, *rest, actor=True, workers=[at],
                                      allow_other_workers=False, pure=False)
        args = (*source_args(problem, spec), self._shared, *self.source.rows(spec.lo, spec.hi))
        self.setup_bytes += payload_bytes((args[:6], args[7:]))
        return self.client.submit(BuiltShard, *args, actor=True, workers=[at],
                                  allow_other_workers=False, pure=False)

    def _started(self, k: int, at: str) -> Any:
        """:meth:`_start`, or ``None`` when the worker at ``at`` was lost before shard ``k``
        could be sent to it (:meth:`_built` starts it again)."""
        try:
            return self._start(k, at)
        except Exception:  # a driver-built shard's blocks scattered to a worker gone
            if at in self.client.scheduler_info(n_workers=-1)["workers"]:
                raise
            return None

    def _built(self, shards: Sequence[int], first: bool = False) -> None:
        """``self.actors[k]`` for each of ``shards`` once its actor is built. An actor is pinned
        to its worker: if that worker is lost while the actor is built, its task waits for it
        forever, so the scheduler's workers are looked at every :data:`_POLL` seconds. At the
        solve's ``first`` build such shards start again on the workers left (:meth:`_place`),
        each at most once; a shard lost so again, or while it is rebuilt mid-solve, fails the
        solve (:class:`ClusterError`)."""
        from distributed import wait

        pending, restarted, failed = list(shards), set[int](), list[int]()
        while pending:
            futures = [self._futures[k] for k in pending if self._futures[k] is not None]
            try:
                wait(futures, timeout=_POLL)
            except (TimeoutError, CancelledError):  # cancelled: its worker, or its inputs, lost
                pass
            gone = self._gone(pending)
            for k in [k for k in pending if k not in gone
                      and self._futures[k].status not in _WAITING]:
                if self._futures[k].status == "error":
                    failed.append(k)
                else:
                    self.actors[k] = self._futures[k].result()
                pending.remove(k)
            if failed and all(k > min(failed) for k in pending):
                # the lowest shard's error (its rows come first), once every shard before it
                # is built: the same error whichever worker fails first
                self._futures[min(failed)].result()
            if not gone:
                continue
            self.lost.update(self.where[k] for k in gone)
            if not first or restarted.intersection(gone):
                raise ClusterError(
                    f"the Dask worker {self.where[gone[0]]} was lost while shard {gone[0]} was "
                    f"built on it{' again' if first else ''}; the solve stopped and no output "
                    "was written")
            _log.warning("shards %s: their Dask workers were lost while they were built; they "
                         "start again", gone)
            self._place(gone)
            restarted.update(gone)
            self.rebuilt += len(gone)

    def _gone(self, pending: list[int]) -> list[int]:
        """The shards of ``pending`` not built whose worker the scheduler no longer has (their
        task waits for it, or was cancelled with the blocks scattered to it), and those whose
        actor's future was cancelled though the scheduler still lists the worker (Dask may
        cancel it before the scheduler has removed the worker it was lost with)."""
        if not pending:
            return []
        workers = set(self.client.scheduler_info(n_workers=-1)["workers"])
        return [k for k in pending if (self.where[k] not in workers and (
            self._futures[k] is None or self._futures[k].status != "finished"))
            or (self._futures[k] is not None and self._futures[k].status == "cancelled")]

    def _check(self, problem: AssignmentProblem, shards: Sequence[int], pairs: list[int]
               ) -> None:
        """Each shard holds the pairs of its pieces of the driver's blocks (a shard that built
        its own blocks from other inputs would plan other customers: the run stops; nothing
        to check while the layout waits for the shards' reports)."""
        layout = problem.layout
        if layout is not None and not layout.complete:
            return
        for k, found in zip(shards, pairs):
            spec = self.specs[k]
            expected = piece_pairs(problem, spec)
            if found != expected:
                raise ClusterError(
                    f"shard {k} (customers {spec.lo:,} to {spec.hi - 1:,}) built {found:,} "
                    f"candidate pairs on its worker where the driver has {expected:,}: the "
                    "workers read other inputs than the driver (is the scores table the same "
                    "file for both?); no output was written")

    def map(self, method: str, args: Sequence[tuple]) -> list:
        out: list[Any] = [None] * len(self.specs)
        todo, rebuilt = list(range(len(self.specs))), set[int]()
        while todo:  # each shard is rebuilt at most once per call
            lost = self._call(method, args, todo, out)
            if not lost:
                break
            again = sorted(lost & rebuilt)
            if again:
                raise ClusterError(
                    f"shards {again} of the solve were lost again after being rebuilt (workers "
                    f"{sorted(self.lost)} lost); the solve stopped and no output was written")
            todo = sorted(lost)
            self._rebuild(todo, replayed(self._replay, method))
            rebuilt |= lost
        self._remember(method, args)
        self._count(method, args, out)
        return out

    def _call(self, method: str, args: Sequence[tuple], shards: list[int], out: list) -> set:
        """``method`` on ``shards``, their answers into ``out``; returns the shards lost with
        their worker (every shard of a worker that one of them was lost with: those that
        answered lost their state with it)."""
        calls: list[tuple[int, Any]] = []
        gone: set[str] = set()
        for k in shards:
            try:  # an actor whose worker the scheduler knows lost refuses the call at once
                calls.append((k, getattr(self.actors[k], method)(*args[k])))
            except Exception as exc:  # noqa: BLE001 - sorted out by _lost
                self._lost(k, exc, gone)
        for k, call in calls:
            try:
                out[k] = call.result()
            except Exception as exc:  # noqa: BLE001 - sorted out by _lost
                self._lost(k, exc, gone)
        self.lost |= gone
        return {k for k in range(len(self.specs)) if self.where[k] in gone}

    def _lost(self, k: int, exc: Exception, gone: set[str]) -> None:
        """Shard ``k``'s call failed with ``exc``: its worker, added to ``gone``, is lost if the
        scheduler says so (the actor's task erred with it) or it cannot be reached; any other
        failure is the shard's own and stops the solve (an :class:`InputError`, its rows
        breaking the contract, as it is: exit 2, as the local run's)."""
        if isinstance(exc, InputError):
            raise exc
        if not (isinstance(exc, OSError) or self._futures[k].status != "finished"):
            raise ClusterError(
                f"shard {k} of the solve failed on its Dask worker ({type(exc).__name__}: "
                f"{exc}); the solve stopped and no output was written") from exc
        gone.add(self.where[k])
        _log.warning("shard %d: its Dask worker %s is lost (%s: %s)", k, self.where[k],
                     type(exc).__name__, exc)

    def _remember(self, method: str, args: Sequence[tuple]) -> None:
        """Keep what a rebuilt shard must replay: the last ``respond`` and, since it, the last
        call of each other stateful kind (:data:`.shard.STATEFUL`), after the best plan's
        (:func:`.shard.remembered`)."""
        self._replay = remembered(self._replay, method, args)

    def _place(self, shards: list[int]) -> None:
        """New actors for ``shards``, started from their arguments as at the solve's start on
        the workers left, in shard order round their sorted addresses (waiting up to
        :data:`REPLACE_TIMEOUT` for one: none is a :class:`ClusterError`)."""
        deadline = time.monotonic() + REPLACE_TIMEOUT
        while True:
            try:
                alive = sorted(set(self.client.scheduler_info(n_workers=-1)["workers"])
                               - self.lost)
            except Exception:  # noqa: BLE001 - the scheduler itself is gone
                alive = []
            if alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not alive:
            raise ClusterError(
                f"the Dask workers {sorted(self.lost)} holding shards {shards} of the solve were "
                f"lost and no worker was left to rebuild them on (waited {REPLACE_TIMEOUT:g} s); "
                "the solve stopped and no output was written")
        if self.source is not None:  # the lost worker may have held the only copy
            self._shared = self._broadcast(alive)
        for i, k in enumerate(shards):
            self.where[k] = alive[i % len(alive)]
            self._futures[k] = self._start(k, self.where[k])

    def _rebuild(self, shards: list[int], replay: list[tuple[str, Sequence[tuple]]]) -> None:
        """New actors for ``shards`` on the workers left (:meth:`_place`), each checked and
        brought to the lost one's state by replaying ``replay``."""
        try:
            self._place(shards)
            self._built(shards)
            ready = [self.actors[k].ready() for k in shards]
            self._check(self.problem, shards, [r.result() for r in ready])
            for method, args in replay:
                for call in [getattr(self.actors[k], method)(*args[k]) for k in shards]:
                    call.result()
        except (ClusterError, InputError):  # bad rows found again: exit 2, as in the first build
            raise
        except Exception as exc:  # noqa: BLE001 - the new workers failed as well
            raise ClusterError(
                f"shards {shards} of the solve, lost with Dask workers {sorted(self.lost)}, "
                f"could not be rebuilt ({type(exc).__name__}: {exc}); the solve stopped and no "
                "output was written") from exc
        self.rebuilt += len(shards)
        _log.warning("shards %s rebuilt on Dask workers %s", shards,
                     [self.where[k] for k in shards])

    def report(self) -> dict[str, Any]:
        """The executor's record, with each worker's peak memory (GB) while it held shards and
        the driver's own peak so far (the load, the build or its layout, the solve)."""
        return {**super().report(), "driver_peak_gb": _peak_rss_gb(),
                "worker_peak_gb": self.worker_peaks,
                "worker_end_gb": self.worker_rss, "kernels": self.kernels,
                "shards_built_by": self.built_by, "setup_bytes": self.setup_bytes,
                "driver_scores_pass": self.scores_pass,
                "rebuilt_shards": self.rebuilt, "workers_lost": len(self.lost)}

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
