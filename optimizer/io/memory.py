"""Bounded memory: estimate what a run will hold and stop early, with the numbers, if it cannot fit.

Right after the inputs are loaded, :func:`check_memory` estimates the run's peak memory as

    inputs        the loaded tables (polars' estimated size) x INPUT_COPIES (features, joins)
  + candidates    kept candidate slots x BYTES_PER_SLOT (offer, p_redeem, value, cost, choice and
                  the solver's per-slot work arrays); slots = per customer
                  min(affinity.candidates_per_customer, offers) on the affinity path, and the
                  padded width of each chunk's ``scores`` rows on the scores path
  + working chunk solver.chunk_size x offers x BYTES_PER_DENSE_CELL (the dense scoring arrays of
                  one chunk; affinity path only)

(where the Dask workers hold every pair, :func:`workers_hold_pairs`, the driver's candidates are
those of the chunks it checks at a time, and those of every block while they hold at most
:func:`polish_reach` pairs; where the table has more rows than that reach, which the driver
then leaves to the workers, :func:`shards_report_layout`, at most that reach of slots: the
blocks it builds after all where the rules keep no more pairs; where a local run reads its plan's ``p_redeem`` again,
:func:`pairs_read_again`, its slots past that reach are counted without their ``p_redeem``,
``BYTES_OF_P_REDEEM`` less)

and compares it with ``solver.memory_limit_gb`` (default: the memory available when the run starts,
``MemAvailable`` in /proc/meminfo, else ``SC_AVPHYS_PAGES x SC_PAGE_SIZE``), held below the process's
own limits (``ulimit -v`` less what the libraries reserve, ``ulimit -d``, the cgroup's memory
limit). When the estimate exceeds the limit the run raises :class:`MemoryLimitError` (exit 4)
naming the numbers and the knobs
that shrink it, instead of being killed by the kernel half way; except that a ``scores`` table whose
every pair would not fit a ``solver.memory_limit_gb`` the scenario sets, with
``solver.scores_per_customer`` unset, keeps each customer's best pairs, as many as fit
(:func:`fit_scores_per_customer`). The constants are deliberately
generous (measured peaks stay below the estimate), so a run that starts does not run out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.core.allocator import process_memory_limits
from optimizer.core.config import Scenario, Solver
from optimizer.core.errors import MemoryLimitError
from optimizer.core.parallel import thread_count
from optimizer.io.load import parquet_rows, table_path
from optimizer.io.validate import Inputs

BYTES_PER_SLOT = 64
# of which a slot's p_redeem, which a local run on the scores path may not hold
# (pairs_read_again)
BYTES_OF_P_REDEEM = 8
# a scores row read whole: IDs, indices, p_redeem and value while checked, then the kept columns
BYTES_PER_SCORES_ROW = 64
BYTES_PER_DENSE_CELL = 160
INPUT_COPIES = 3
GB = 1024 ** 3


@dataclass(frozen=True)
class MemoryEstimate:
    inputs: int
    candidate_slots: int
    candidates: int
    working_chunk: int
    limit: int
    limit_source: str

    @property
    def total(self) -> int:
        return self.inputs + self.candidates + self.working_chunk

    def describe(self) -> dict[str, object]:
        """For the manifest (GB, rounded)."""
        return {"estimate_gb": round(self.total / GB, 4), "inputs_gb": round(self.inputs / GB, 4),
                "candidates_gb": round(self.candidates / GB, 4),
                "working_chunk_gb": round(self.working_chunk / GB, 4),
                "candidate_slots": self.candidate_slots,
                # the available memory varies from run to run: kept out of the manifest
                "limit_gb": (round(self.limit / GB, 4)
                             if self.limit_source == "solver.memory_limit_gb" else None),
                "limit_source": self.limit_source}


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable; else free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def memory_limit(scenario: Scenario) -> tuple[int, str]:
    """The bytes a run may use and where that figure comes from: ``solver.memory_limit_gb``, else
    the memory available now; either way at most what the process's limits allow (address space
    and data segment limits, the container's cgroup limit: :func:`~optimizer.core.allocator.
    process_memory_limits`), the host's free memory being no limit for a process held below it."""
    if scenario.solver.memory_limit_gb is not None:
        limits = [(int(scenario.solver.memory_limit_gb * GB), "solver.memory_limit_gb")]
    else:
        limits = [(available_memory(), "available memory (MemAvailable)")]
    return min(limits + process_memory_limits(), key=lambda item: item[0])


def stream_scores(scenario: Scenario) -> bool:
    """Whether to read the ``scores`` table in batches (``solver.stream_scores``; by default
    when the whole table would take more than a quarter of the memory limit; never for a table
    at a URL, ``scores_url``)."""
    if scenario.solver.stream_scores is not None:
        return scenario.solver.stream_scores
    if scenario.scores_url is not None:  # a table at a URL is read whole
        return False
    rows = parquet_rows(scenario.data, "scores")
    return rows is not None and rows * BYTES_PER_SCORES_ROW > memory_limit(scenario)[0] / 4


def _listed_per_customer(inputs: Inputs) -> np.ndarray | None:
    """Rows of a ``scores`` table held whole, per customer (``None`` for any other input)."""
    if inputs.scores is None:
        return None
    n = inputs.n_customers
    c = inputs.scores.get_column("c").to_numpy()
    if inputs.scores_sorted:  # rows by customer: counts from the run bounds, without a copy of c
        return np.diff(np.searchsorted(c, np.arange(n + 1, dtype=c.dtype)))
    # an int64 copy of c for bincount: 1.2 s of fresh pages at 43 M rows
    return np.bincount(c.astype(np.int64), minlength=n)


# the polish re-solves at most polish_pairs pairs; on a problem this many times larger it cannot
# move the objective measurably, and picking its core still ranks every customer (seconds at a
# million customers on the affinity path, for no change of the objective)
POLISH_REACH = 200


def polish_reach(settings: Solver) -> int:
    """The most candidate pairs a problem may have for the polish to run (it re-solves a core of
    them by CP-SAT on the driver, :func:`optimizer.solve._polished`): where the Dask workers
    could hold every pair, the driver still keeps them up to this many
    (:func:`~optimizer.model.layout.held_blocks`)."""
    return max(settings.polish_pairs, 0) * POLISH_REACH


def worker_scores(scenario: Scenario) -> Path | str | None:
    """The ``scores`` table as Dask workers can read it (a Parquet file, a dataset folder or an
    fsspec URL), or ``None`` (no such table, or a CSV file)."""
    path = scenario.scores_url or table_path(Path(scenario.data), "scores")
    return None if isinstance(path, Path) and path.suffix == ".csv" else path


def pairs_read_again(inputs: Inputs, scenario: Scenario) -> str | None:
    """Who may let the candidate pairs (or their ``p_redeem``) go and read them again from the
    ``scores`` table: ``"workers"`` where the Dask workers hold every candidate pair and the
    driver none (:mod:`optimizer.model.layout`: ``solver.backend = "dask"`` with ``solver.repair
    = "shards"``, the plans repaired and kept on the shards), ``"driver"`` where the local run's
    blocks hold no ``p_redeem`` past the polish's reach and the plan's chosen pairs read theirs
    again (:func:`optimizer.model.chosen.read_plan_again`), else ``None``. Either needs the
    ``scores`` path read from Parquet, every listed pair kept (no ``scores_per_customer``
    choice over every customer's pairs), no change penalty or pins (added to, or taken out of,
    built blocks) and no funders, group flights or channels (their cuts and assignment run over
    the driver's pairs, and the funders' report reads every chosen pair's ``p_redeem``)."""
    solver, rules, keep = scenario.solver, scenario.rules, scenario.solver.scores_per_customer
    if not (inputs.has_scores and (keep is None or keep >= inputs.n_offers)
            and rules.change_penalty == 0 and not rules.pin and inputs.funders is None
            and inputs.flights is None and inputs.channels is None
            and worker_scores(scenario) is not None):
        return None
    if solver.backend == "local":
        return "driver"
    return "workers" if solver.repair == "shards" else None


def workers_hold_pairs(inputs: Inputs, scenario: Scenario) -> bool:
    """Whether the Dask workers hold every candidate pair and the driver none
    (:func:`pairs_read_again` is ``"workers"``)."""
    return pairs_read_again(inputs, scenario) == "workers"


def shards_report_layout(inputs: Inputs, hold_up_to: int) -> bool:
    """Where the Dask workers hold every pair (:func:`workers_hold_pairs`), whether the driver
    leaves the ``scores`` table's rows to them (the workers check and audit their rows and
    report the blocks' layout) rather than reading every row through the build: when the table
    has more rows (its metadata's count) than the ``hold_up_to`` pairs the driver would keep
    for the polish. Where the rules keep no more pairs than that, the driver builds the blocks
    after all once the shards have reported them
    (:meth:`~optimizer.solve.backends.dask_shards.DaskShards._reported_layout`)."""
    return inputs.row_counts.get("scores", 0) > hold_up_to


def _candidate_slots(inputs: Inputs, scenario: Scenario, listed: np.ndarray | None) -> int:
    n, m = inputs.n_customers, inputs.n_offers
    keep = scenario.solver.scores_per_customer
    if not inputs.has_scores:
        return n * min(scenario.affinity.candidates_per_customer, m)
    if listed is None:  # streamed: the rows are not counted per customer up front
        rows = inputs.row_counts.get("scores", 0)
        # chunks are padded to their widest customer: allow a quarter more
        return int(min(rows, n * keep) * 1.25) if keep is not None else int(rows * 1.25)
    counts = listed
    size = scenario.solver.chunk_size
    if keep is not None:
        counts = np.minimum(counts, keep)
    slots = 0
    for start in range(0, n, size):  # each chunk is padded to its widest customer
        part = counts[start:start + size]
        slots += int(part.size) * int(part.max(initial=0))
    return slots


def estimate_memory(inputs: Inputs, scenario: Scenario,
                    listed: np.ndarray | None = None, threads: int | None = None
                    ) -> MemoryEstimate:
    """The run's memory estimate and limit (see the module docstring). ``listed``: the scores
    table's rows per customer when the caller has them (else counted here); ``threads``: the
    threads counted for a driver that holds no pair (default: ``solver.threads``'s, 0 being
    the machine's cores)."""
    tables = [inputs.customers, inputs.products, inputs.offers, inputs.transactions,
              inputs.offer_products, inputs.restrictions, inputs.history, inputs.redemptions,
              inputs.scores]
    size = sum(int(t.estimated_size()) for t in tables if t is not None)
    if listed is None:
        listed = _listed_per_customer(inputs)
    slots = _candidate_slots(inputs, scenario, listed)
    if workers_hold_pairs(inputs, scenario) and shards_report_layout(
            inputs, polish_reach(scenario.solver)):
        # the driver builds no block, unless the shards report at most the polish's reach of
        # pairs: it then builds them (counted a slot a pair, as below)
        slots = min(slots, polish_reach(scenario.solver))
    elif workers_hold_pairs(inputs, scenario):  # the driver holds the chunks being checked only
        threads = thread_count(scenario.solver.threads if threads is None else threads)
        held = min(inputs.n_customers, scenario.solver.chunk_size * (threads + 1) * 2)
        # and every block while they hold at most the polish's reach (counted a slot a pair)
        slots = min(slots, slots * held // max(inputs.n_customers, 1)
                    + polish_reach(scenario.solver))
    candidates = slots * BYTES_PER_SLOT
    if pairs_read_again(inputs, scenario) == "driver":  # no p_redeem past the polish's reach
        candidates -= max(slots - polish_reach(scenario.solver), 0) * BYTES_OF_P_REDEEM
    dense = 0
    if not inputs.has_scores:
        dense = min(scenario.solver.chunk_size, inputs.n_customers) * inputs.n_offers
    limit, source = memory_limit(scenario)
    return MemoryEstimate(size * INPUT_COPIES, slots, candidates,
                          dense * BYTES_PER_DENSE_CELL, limit, source)


def fit_scores_per_customer(inputs: Inputs, scenario: Scenario) -> tuple[Scenario, str | None]:
    """The scenario to run: as given, unless every listed pair of a ``scores`` table would not fit
    ``solver.memory_limit_gb`` and ``solver.scores_per_customer`` is unset; then with it set to
    the most pairs per customer that fit (the plan is still bounded over every listed pair, see
    :mod:`.selection`). Returns the scenario and, when it was changed, why (for the manifest).

    Only a limit the scenario sets counts: the memory available varies from run to run, and the
    same inputs must give the same plan. Without one, or when not even one pair per customer
    fits, the scenario is returned as given and :func:`check_memory` refuses the run.
    """
    if (not inputs.has_scores or scenario.solver.scores_per_customer is not None
            or scenario.solver.memory_limit_gb is None):
        return scenario, None
    # the scenario's own figure, not the process's limits: the same inputs give the same plan
    limit, source = int(scenario.solver.memory_limit_gb * GB), "solver.memory_limit_gb"
    listed = _listed_per_customer(inputs)  # counted once for every estimate below
    # nor the machine's cores (threads = 0: a driver holding no pair is counted at one thread
    # here, at its cores by check_memory, which may refuse the run but never changes its plan)
    threads = scenario.solver.threads or 1
    every = estimate_memory(inputs, scenario, listed, threads).total
    if every <= limit:
        return scenario, None

    def keeping(n: int) -> Scenario:
        return scenario.model_copy(update={
            "solver": scenario.solver.model_copy(update={"scores_per_customer": n})})

    fits, too_many = 0, inputs.n_offers  # a bisection over the count kept, never over customers
    while too_many - fits > 1:
        mid = (fits + too_many) // 2
        if estimate_memory(inputs, keeping(mid), listed, threads).total <= limit:
            fits = mid
        else:
            too_many = mid
    if fits == 0:
        return scenario, None
    return keeping(fits), (f"every listed pair would need about {every / GB:.3g} GB, more "
                           f"than the {limit / GB:.3g} GB allowed by {source}: each "
                           f"customer's best {fits} are kept")


def check_memory(inputs: Inputs, scenario: Scenario) -> MemoryEstimate:
    """Raise :class:`MemoryLimitError` when the estimate exceeds the limit; else return it."""
    est = estimate_memory(inputs, scenario)
    if est.total <= est.limit:
        return est
    gb = lambda b: f"{b / GB:.3g} GB"  # noqa: E731
    hints = []
    if not inputs.has_scores:
        hints.append(f"lower affinity.candidates_per_customer "
                     f"(now {scenario.affinity.candidates_per_customer}: {est.candidate_slots:,} "
                     f"candidate slots, {gb(est.candidates)})")
        hints.append(f"lower solver.chunk_size (now {scenario.solver.chunk_size:,}: "
                     f"{gb(est.working_chunk)} per chunk of dense scores)")
    elif workers_hold_pairs(inputs, scenario) and shards_report_layout(
            inputs, polish_reach(scenario.solver)):
        hints.append("the driver holds none of the scores table's pairs (the Dask workers do; "
                     "it builds the blocks only where the rules keep at most the polish's reach "
                     f"of pairs, solver.polish_pairs x {POLISH_REACH}): it needs its input "
                     "tables only")
    elif workers_hold_pairs(inputs, scenario):  # a choice of pairs puts them on the driver
        threads = scenario.solver.threads
        hints.append(f"lower solver.threads (now {threads}: {thread_count(threads)} threads) or "
                     f"solver.chunk_size (now {scenario.solver.chunk_size:,}): the driver, "
                     "leaving every pair to the Dask workers, checks about 2 x (threads + 1) "
                     f"chunks at a time ({est.candidate_slots:,} candidate slots, "
                     f"{gb(est.candidates)})")
    else:
        # every pair kept, a slot is counted without its p_redeem; a choice holds it
        bare = (f" without their p_redeem, which the plan's pairs read again; a choice holds "
                f"{BYTES_OF_P_REDEEM} bytes a slot more" if pairs_read_again(inputs, scenario)
                == "driver" else "")
        hints.append(f"keep fewer of the scores table's pairs per customer with "
                     f"solver.scores_per_customer (now "
                     f"{scenario.solver.scores_per_customer or 'all'}: {est.candidate_slots:,} "
                     f"candidate slots, {gb(est.candidates)}{bare}) or lower solver.chunk_size (now "
                     f"{scenario.solver.chunk_size:,}; chunks are padded to their widest customer)")
        if scenario.solver.memory_limit_gb is None and scenario.solver.scores_per_customer is None:
            hints.append("set solver.memory_limit_gb (with solver.scores_per_customer unset, the "
                         "run then keeps as many pairs per customer as fit that limit)")
    hints.append("run on a machine with more memory, or raise solver.memory_limit_gb if the "
                 "limit is set too low")
    raise MemoryLimitError(
        f"the run needs about {gb(est.total)} of memory (inputs {gb(est.inputs)}, candidates "
        f"{gb(est.candidates)}, working chunk {gb(est.working_chunk)}) for "
        f"{inputs.n_customers:,} customers x {inputs.n_offers:,} offers, more than the "
        f"{gb(est.limit)} allowed by {est.limit_source}; nothing was written. To fit: "
        + "; ".join(hints) + ".")
