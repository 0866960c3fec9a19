"""The shard executor: the seam between the scale method's one pass loop
(:func:`.method._solve`) and where its shards live.

:class:`ShardExecutor` calls the methods of :class:`.shard.Shard` on every shard and combines
their answers in shard order (per-offer sums added, per-customer arrays joined), so the loop's
arithmetic is the same whatever holds the shards. :class:`LocalShards` holds them in this
process (the default: with one shard, the bits of a solve without shards);
:class:`optimizer.solve.backends.dask_shards.DaskShards` keeps each one resident on a Dask
worker. :class:`ShardedCandidates` is the critical-price update's view of every shard's
candidates: the driver's half of :meth:`.critical.Candidates.prices` is inherited, each pass
over candidates is one call to every shard, answered with O(offers) tallies.
"""
from __future__ import annotations

import pickle
from typing import Any, Sequence

import numpy as np

from optimizer.core.exact_sum import exact_rounded, exact_total
from optimizer.model.chosen import chosen_problem
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices
from optimizer.solve.lagrangian._kernels import Mapper
from optimizer.solve.lagrangian.critical import (
    _PARTS,
    Candidates,
    _crossing,
    tally_total,
)
from optimizer.solve.lagrangian.narrow import bucket_prices
from optimizer.solve.lagrangian.repair_shards import where
from optimizer.solve.lagrangian.sample_rows import joined_sample
from optimizer.solve.lagrangian.shards import (
    ShardSpec,
    joined,
    ordered_sum,
    ordered_total,
    shard_args,
    shard_specs,
    unpacked,
)
from optimizer.solve.lagrangian.sketch import merged_bounds
from optimizer.solve.lagrangian.targets import bonus_at

# the calls that make a plan (they move O(candidates) bits); the plan's repair (O(offers x
# buckets), its crossing buckets' pairs and the dropped pairs); the others price (O(offers))
PLAN_CALLS = frozenset({"plan_rows", "plan_rows_packed", "respond_plain", "plan_make",
                        "plan_apply", "plan_keep"})
# the best plan gathered once at the end of a solve whose plans stay on the shards
FINAL_CALLS = frozenset({"plan_best", "plan_best_packed", "plan_best_pairs"})
REPAIR_CALLS = frozenset({"repair_start", "repair_totals", "repair_points", "repair_tallies",
                          "repair_collect", "repair_best", "repair_values", "repair_done"})
REFILL_CALLS = frozenset({"refill_start", "refill_round", "refill_collect", "refill_done"})


def payload_bytes(obj: Any) -> int:
    """Bytes of ``obj`` as pickled for the wire (arrays out of band counted whole)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(memoryview(b).nbytes for b in buffers)


class ShardExecutor:
    """The shards of ``problem`` at ``shard_customers`` customers each, wherever they live.

    ``traffic``: bytes sent to and received from the shards per pass (counted on the pickled
    payloads when ``measure``), apart for the price passes and for the plans; ``workers``:
    processes holding shards (0: this one); ``packed``: the plans come back as packed bits.
    """

    workers = 0
    measure = False
    packed = False
    split_above: float | None = None  # None: :func:`.narrow.split_limit`'s default
    # the plans' repair on the shards (``solver.repair = "shards"``, :mod:`.repair_shards`)
    # rather than on the driver's pairs; set by :func:`.method.solve_lagrangian`
    repair_on_shards = False
    # with it, the refill on the shards too (:mod:`.refill_shards`: the driver's refill's pairs);
    # off, the driver's refill over a pool gathered from its blocks
    refill_on_shards = True
    plans = 0  # plans made on the shards (:meth:`plan_apply`), each numbered

    def __init__(self, problem: AssignmentProblem, shard_customers: int) -> None:
        self.problem = problem
        self.specs: list[ShardSpec] = shard_specs(problem, shard_customers, _PARTS)
        self.traffic: list[dict[str, int]] = []
        self.candidates = ShardedCandidates(self)

    # -- calls --------------------------------------------------------------------------------
    def all(self, method: str, *args: Any) -> list:
        """``method(*args)`` on every shard, results in shard order."""
        return self.map(method, [args] * len(self.specs))

    def map(self, method: str, args: Sequence[tuple]) -> list:
        """``method(*args[k])`` on shard ``k``, results in shard order."""
        raise NotImplementedError

    def _count(self, method: str, sent: Any, received: Any) -> None:
        if self.measure and self.traffic:  # from the first pass on (not the shards' setup)
            t = self.traffic[-1]
            kind = ("plan" if method in PLAN_CALLS else "repair" if method in REPAIR_CALLS
                    else "refill" if method in REFILL_CALLS else "final" if method in FINAL_CALLS
                    else "prices")
            t[kind] += payload_bytes(sent) + payload_bytes(received)
            t["calls"] += 1

    # -- what the pass loop asks --------------------------------------------------------------
    def respond(self, prices: Prices) -> tuple[dict[str, np.ndarray], float]:
        """Every shard's best responses to ``prices`` (kept on the shards): the constraints'
        use (``spend``, ``count`` per offer) and the customers' part of the dual function, each
        added over the shards in shard order. Opens a pass of the traffic record."""
        self.traffic.append({"prices": 0, "plan": 0, "repair": 0, "refill": 0, "final": 0,
                             "calls": 0})
        parts = self.all("respond", prices)
        use = {"spend": ordered_total(p[0] for p in parts),
               "count": ordered_total(p[1] for p in parts)}
        for key in parts[0][3] if parts else ():  # the channels' per-pair reads, customer order
            use[key] = np.concatenate([p[3][key] for p in parts])
        return use, ordered_sum(p[2] for p in parts)

    def respond_plain(self, prices: Prices) -> None:
        """The relaxed best responses to ``prices`` only, kept for :meth:`plan_rows`."""
        self.all("respond_plain", prices)

    def plan_rows(self, prices: Prices) -> list[np.ndarray]:
        """The plan's first choice of every customer from the last responses, one mask per
        block of the whole problem (:func:`.method.plan_rows` on the shards)."""
        return self._gathered("plan_rows", prices)

    def _gathered(self, method: str, *args: Any) -> list[np.ndarray]:
        """Every shard's masks from ``method`` (or its ``_packed`` twin, as bits on the wire),
        one mask per block of the whole problem."""
        if not self.packed:
            return joined(self.problem, self.specs, self.all(method, *args))
        blocks = self.problem.blocks
        masks = [[unpacked(bits, (e - f, blocks[b].offer.shape[1]))
                  for bits, (b, f, e) in zip(shard, spec.pieces)]
                 for shard, spec in zip(self.all(method + "_packed", *args), self.specs)]
        return joined(self.problem, self.specs, masks)

    def sample(self, share: float | None, seed: int) -> list[CandidateBlock]:
        """The start's sample drawn on the shards (every row when ``share`` is ``None``), in
        shard order, each block's pieces joined: the driver's draw over its blocks
        (:func:`.sample_rows.picked_blocks`) bar ``p_redeem``, which the LP does not read."""
        return joined_sample(self.specs, self.all("sample", share, seed))

    # -- a plan kept on the shards (:func:`.planning.plan_pass`) ------------------------------
    def plan_apply(self, applied: list, granted: Sequence[np.ndarray]
                   ) -> tuple[int, np.ndarray, float]:
        """Every shard's plan (its last ``plan_make``) less the cuts ``applied`` drop, with its
        refill grants ``granted[k]``, kept as a new plan: its number, customers per offer and
        objective (the shards' exact values added, rounded once: :meth:`.AssignmentProblem.
        objective`'s float)."""
        self.plans += 1
        found = self.map("plan_apply", [(applied, g, self.plans) for g in granted])
        counts = np.sum([f[0] for f in found], axis=0).astype(np.int64)
        parts = [f[1] for f in found]
        objective = (exact_rounded(exact_total(parts)) if all(p is not None for p in parts)
                     else float("nan"))  # a value not finite
        return self.plans, counts, objective

    def plan_keep(self, plan_id: int, recipes: Sequence[tuple]) -> None:
        """The shards keep plan ``plan_id`` as the best (``recipes[k]``: what makes it again
        on shard ``k`` rebuilt: :meth:`.shard.Shard.plan_keep`)."""
        self.map("plan_keep", [(plan_id, r) for r in recipes])

    def plan_best(self) -> list[np.ndarray]:
        """The best plan kept on the shards, gathered once: one mask per block."""
        return self._gathered("plan_best")

    def chosen_problem(self) -> tuple[AssignmentProblem, list[np.ndarray]]:
        """The best plan kept on the shards, gathered once as its chosen pairs (no candidate
        left out crosses the wire): the problem holding those pairs only and its masks
        (:func:`optimizer.model.chosen.chosen_problem`)."""
        return chosen_problem(self.problem, self.all("plan_best_pairs"))

    def close(self) -> None:
        """Let the shards go."""

    def report(self) -> dict[str, Any]:
        """Where the passes ran, for the manifest: shards, workers and bytes per pass."""
        passes = [t for t in self.traffic if t["calls"]]
        record: dict[str, int] = {"passes": len(passes),
                                  "final_gather": sum(t.get("final", 0) for t in self.traffic)}
        for kind, picked in (("", ("prices", "plan", "repair", "refill")),
                             ("prices_", ("prices",)), ("plan_", ("plan",)),
                             ("repair_", ("repair",)), ("refill_", ("refill",))):
            sizes = [sum(t[k] for k in picked) for t in passes]
            record[kind + "mean"] = int(np.mean(sizes)) if sizes else 0
            record[kind + "max"] = max(sizes, default=0)
        return {"shards": len(self.specs), "workers": self.workers, "bytes_per_pass": record,
                "repair": where(self.problem, self.repair_on_shards)}


class LocalShards(ShardExecutor):
    """Shards held in this process, their blocks mapped over by the solve's threads ``run``
    (each shard's pieces are views of the problem's blocks: nothing is copied)."""

    def __init__(self, problem: AssignmentProblem, shard_customers: int, run: Mapper) -> None:
        from optimizer.solve.lagrangian.shard import Shard  # it runs the method's functions

        super().__init__(problem, shard_customers)
        self.shards = [Shard(*shard_args(problem, spec)) for spec in self.specs]
        for shard in self.shards:
            shard.run = run

    def map(self, method: str, args: Sequence[tuple]) -> list:
        out = [getattr(shard, method)(*a) for shard, a in zip(self.shards, args)]
        self._count(method, args, out)
        return out


class ShardedCandidates(Candidates):
    """Every shard's candidates as the price update reads them (no arrays here: they stay on
    the shards). Tallies come one per shard (its parts added in order); each shard sends its
    candidates of the crossing buckets, group by group, joined in shard order, a large bucket
    narrowed first (:mod:`.narrow`)."""

    def __init__(self, ex: ShardExecutor) -> None:  # noqa: D107 - no arrays, no layout
        self.ex = ex

    def bounds(self, mode: int, prices: tuple, capacity: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's boundaries placed on its own sample at its share of the capacities
        (its customers over all), merged in shard order (:func:`.sketch.merged_bounds`): per
        shard O(groups) bytes, not its sample. One shard's are kept as they are."""
        found = self.ex.map("sketch", [(mode, prices, scaled)
                                       for scaled in self._shares(capacity)])
        return self._merged(found, capacity)

    def _shares(self, capacity: np.ndarray) -> list[np.ndarray]:
        """``capacity`` scaled by each shard's share of the customers (1.0 for one shard)."""
        total = sum(spec.hi - spec.lo for spec in self.ex.specs)
        return [capacity * ((spec.hi - spec.lo) / total if total else 1.0)
                for spec in self.ex.specs]

    @staticmethod
    def _merged(found: Sequence[Sequence[np.ndarray]], capacity: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """The shards' sketches (:meth:`.shard.Shard.sketch`, in shard order) merged."""
        counts = np.stack([f[0] for f in found]).astype(np.int64)
        crit, rank, before = (np.concatenate([f[i] for f in found]) for i in (1, 2, 3))
        members, weight = (np.stack([f[i] for f in found]) for i in (4, 5))
        return merged_bounds(counts, crit, rank, before, members, weight, capacity)

    def tallies(self, mode: int, prices: tuple, bounds: np.ndarray, capacity: np.ndarray,
                map_parts: Mapper) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.ex.all("tallies", mode, prices, bounds, capacity)

    def read_prices(self, mode: int, prices: tuple, found: tuple, tallies: list,
                    capacity: np.ndarray, map_parts: Mapper) -> np.ndarray:
        """The crossing buckets' candidates collected from the shards, a bucket of more than
        :func:`.narrow.split_limit` narrowed first (:func:`.narrow.bucket_prices`)."""
        return bucket_prices(self.ex, "collect", (mode, prices), found, capacity)

    def target_bonus(self, targeted: np.ndarray, budget_price: np.ndarray, glob: float,
                     count_price: np.ndarray, min_customers: np.ndarray) -> np.ndarray:
        """The bonus that brings each offer short of its ``min_customers`` to that many
        candidates with a positive margin at these prices (the tests hold it to the plain
        definition over every candidate gathered, ``tests/oracles.py``), found as the funders'
        prices are: the shards count their targeted candidates (keeping them), the offers short
        of their target seek the k-th largest margin (k: the target, or all their candidates if
        fewer) from the shards' sketches, tallies and crossing buckets (weight 1, ``k - 1/2``
        the capacity), and :func:`.targets.bonus_at` it: O(offers) bytes a shard."""
        found = self.ex.all("target_counts", targeted, budget_price, float(glob), count_price)
        finite = ordered_total(f[0] for f in found)
        positive = ordered_total(f[1] for f in found)
        bonus = np.zeros(min_customers.shape[0])
        k = np.minimum(min_customers, finite)
        wants = (min_customers > 0) & ~(positive >= min_customers) & (k > 0)
        if not wants.any():
            return bonus
        capacity = np.where(wants, k - 0.5, np.inf)
        sketches = self.ex.map("target_sketch", [(scaled,) for scaled in self._shares(capacity)])
        bounds, n_bounds = self._merged(sketches, capacity)
        mass, counts = tally_total(self.ex.all("target_tallies", bounds), bounds.shape)
        found_bucket = _crossing(mass, counts, n_bounds, bounds, capacity)
        kth = bucket_prices(self.ex, "target_collect", (), found_bucket, capacity)[wants]
        bonus[wants] = bonus_at(kth)
        return bonus

    def funder_prices(self, prices: Prices, budget_price: np.ndarray, glob: float,
                      target: np.ndarray) -> np.ndarray | None:
        """Each funder's price (:mod:`.funders`): the critical price per unit of cost at which
        the funded candidates still in at their offer's price fit its budget, found as the
        critical prices are: the shards' sketches of their funded candidates merged into
        boundaries, their tallies added in shard order, the crossing buckets' candidates
        (narrowed first when large: :mod:`.narrow`) collected and sorted. ``None`` without a
        funder budget."""
        funders = self.ex.problem.funders
        if funders is None or not np.isfinite(funders.budget).any():
            return None
        budget = funders.budget
        found = self.ex.map("funder_sketch", [(prices, budget_price, float(glob), target, scaled)
                                              for scaled in self._shares(budget)])
        mu = np.zeros(budget.shape[0])
        over = ordered_total(f[0] for f in found) > budget * (1 + 1e-12)
        if not over.any():
            return mu
        capacity = np.where(over, budget, np.inf)
        bounds, n_bounds = self._merged([f[1:] for f in found], capacity)
        mass, counts = tally_total(self.ex.all("funder_tallies", bounds), bounds.shape)
        found = _crossing(mass, counts, n_bounds, bounds, capacity)
        mu = bucket_prices(self.ex, "funder_collect", (), found, capacity)
        return np.where(np.isfinite(mu), np.maximum(mu, 0.0), 0.0)
