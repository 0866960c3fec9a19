"""One shard's side of the scale method: its candidate blocks and every per-customer array of the
solve (margins, best responses) stay here for the whole solve, in this process or on a Dask worker,
and each call answers with per-offer sums or other small arrays.

The computations are :mod:`.method`'s own functions (``_responses``, ``plan_rows``, ``_respond``)
run on the shard's customers, so the driver (:func:`.method._solve` through a
:class:`.executor.ShardExecutor`), adding the shards' answers in shard order, gets the same bits
whatever holds the shards.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.core.exact_sum import Exact, exact_tally
from optimizer.model.chosen import PlanPairs, chosen_pairs_of
from optimizer.model.problem import AssignmentProblem, Prices
from optimizer.solve.lagrangian import channels as channel_rules
from optimizer.solve.lagrangian import funders as funder_rules
from optimizer.solve.lagrangian import groups as group_rules
from optimizer.solve.lagrangian import margins as margin_rules
from optimizer.solve.lagrangian import method, narrow
from optimizer.solve.lagrangian import refill_shards as rf
from optimizer.solve.lagrangian import repair_shards as rs
from optimizer.solve.lagrangian._kernels import Mapper, serial_map
from optimizer.solve.lagrangian.critical import Candidates, tally_total
from optimizer.solve.lagrangian.greedy import ExactChoice
from optimizer.solve.lagrangian.sample_rows import Piece, shard_sample
from optimizer.solve.lagrangian.shard_sketch import compact, flat_sketch, in_bucket
from optimizer.solve.lagrangian.shards import Packed, packed, unpacked
from optimizer.solve.lagrangian.sketch import STRIDE, WIDTH, flat_tallies

# The calls that leave state on a shard for the calls after them, all of it overwritten by the
# next call of the same name: ``respond`` (the margins, the priced view and the responses; the
# margins depend on nothing but the shard's blocks and the prices), ``respond_plain`` (the view
# and the responses), ``tallies`` (the parts' counts that ``collect`` reads), ``funder_sketch``
# (the funded candidates that ``funder_tallies`` and ``funder_collect`` read),
# ``target_counts`` (the targeted offers' candidates that ``target_sketch``, ``target_tallies``
# and ``target_collect`` read), ``collect``, ``funder_collect`` and ``target_collect`` (the
# candidates of the crossing buckets being narrowed, that the ``kept_*`` calls read:
# :mod:`.narrow`), ``plan_rows`` (the plan, that ``repair_start`` reads) and ``repair_start``
# (the plan's pairs that the ``repair_*`` calls read, each given every cut made so far:
# :mod:`.repair_shards`), ``refill_start`` (the refill's pool, from the plan and the cuts) and
# ``refill_round`` (the round's proposals, from the pool and every grant so far, that
# ``refill_collect`` reads: :mod:`.refill_shards`; ``refill_done`` lets the pool go). A shard
# rebuilt from its arguments holds what the lost one held once it has replayed the last
# ``respond`` and the last of each other stateful call since
# (:class:`.backends.dask_shards.DaskShards`): each of these reads only what the calls before
# it in that order left (a ``collect`` replayed before a later ``tallies``, its own state
# stale and never read again, finds no part counts and keeps nothing; a ``refill_round`` or
# ``refill_done`` of an earlier plan replayed before the last ``refill_start`` works on the
# empty pool of a rebuilt shard, and the start overwrites it). Where the plan stays on the
# shards, ``plan_make`` (the plan, as ``plan_rows``) and ``plan_apply`` (the plan repaired and
# refilled) are replayed as well, and ``plan_keep`` (the best plan) is kept across passes
# (:data:`KEPT`): the best plan may be an earlier pass's, so its call carries its own recipe.
# A ``plan_make`` makes the last ``plan_apply`` stale (:data:`STALE`): replayed before it, on a
# rebuilt shard, that one would find no plan to apply its cuts and grants to.
STATEFUL = ("respond", "respond_plain", "tallies", "funder_sketch", "collect", "funder_collect",
            "target_counts", "target_collect", "plan_rows", "plan_rows_packed", "repair_start",
            "refill_start", "refill_round", "refill_done", "plan_make", "plan_apply",
            "plan_keep")
KEPT = ("plan_keep",)  # the stateful calls a later ``respond`` does not make stale
STALE = {"plan_make": ("plan_apply",)}  # the stateful calls each call makes stale

Replay = list[tuple[str, Any]]  # (call, its arguments per shard), in the order to replay


def remembered(replay: Replay, method: str, args: Any) -> Replay:
    """What a rebuilt shard replays once ``method(args)`` has been answered: the last
    ``respond`` and, since it, the last call of each other stateful kind, after the last of
    each :data:`KEPT` kind (made first: the calls after it overwrite what it leaves), less
    those ``method`` makes stale (:data:`STALE`)."""
    if method == "respond":
        return [c for c in replay if c[0] in KEPT] + [(method, args)]
    if method in STATEFUL:
        stale = (method, *STALE.get(method, ()))
        return [c for c in replay if c[0] not in stale] + [(method, args)]
    return replay


def replayed(replay: Replay, method: str) -> Replay:
    """What a shard lost in a call to ``method`` replays before the call is made again (a
    ``respond`` overwrites every state but the :data:`KEPT` ones)."""
    return [c for c in replay if c[0] in KEPT] if method == "respond" else replay


class Shard:
    """The customers ``[lo, lo + problem.n_customers)`` of the whole problem: ``problem`` holds
    their pieces of the whole problem's blocks (``block_ids``: which block each comes from) and
    the whole problem's offers and rules (:func:`.shards.shard_problem`); ``cuts``: the critical
    prices' part boundaries inside the shard (customer positions from ``lo``)."""

    def __init__(self, problem: AssignmentProblem, block_ids: list[int], lo: int,
                 cuts: np.ndarray) -> None:
        self.problem, self.block_ids, self.lo = problem, block_ids, lo
        blocks = problem.blocks
        self.compact = margin_rules.compact(problem)  # each customer's two limits, not a slot's
        self.margins = margin_rules.empty_margins(blocks, self.compact)
        # every STRIDE-th customer of the whole problem is sampled: the shard's first one
        self.candidates = Candidates([b.offer for b in blocks], [b.cost for b in blocks],
                                     self.margins, cuts=cuts, first_sampled=(-lo) % STRIDE,
                                     values=[b.value for b in blocks] if self.compact else None)
        self.run: Mapper = serial_map  # over the shard's blocks (the local executor's threads)
        self.view = problem  # the problem priced for channels at the last responses' prices
        self._views = channel_rules.PricedViews(problem)  # the view's values, reused each pass
        self.relaxed: list[np.ndarray] = []
        self.exact: list[ExactChoice | None] = []
        self.grouped = False  # whether ``relaxed`` are the pass's responses (groups kept)
        self.at_risk: list[group_rules.RiskySlots | None] | None = None
        self._part_counts: list[np.ndarray] = []
        self._funded: funder_rules.Funded = narrow.no_entries()
        self._targets: narrow.Entries = narrow.no_entries()  # the targeted offers' candidates
        self._kept: narrow.Entries = narrow.no_entries()  # the crossing buckets being narrowed
        # the plans kept across calls, one bit a slot (:func:`.shards.packed`), made again
        # where read: the last plan_rows, the last plan_apply's and the best (plan_keep)
        self._plan: list[Packed] = []
        self._pairs = rs.entries_of(problem, [], lo)  # the plan's pairs (repair_start)
        self._cuts: tuple[bytes, np.ndarray] = (b"", np.zeros(0, dtype=bool))  # cuts made, kept
        self._pool = rf.empty_pool()  # the refill's pool (refill_start)
        self._left = rf.KeptLeft(problem.offers.n_offers)  # what is left (refill_start, _round)
        self._made: tuple[int, list[Packed]] = (-1, [])
        self._best: list[Packed] = []

    @property
    def plan(self) -> list[np.ndarray]:
        """The last plan (:meth:`plan_rows`), one new mask per piece."""
        return [unpacked(bits, shape) for bits, shape in self._plan]

    @plan.setter
    def plan(self, masks: list[np.ndarray]) -> None:
        self._plan = packed(masks)

    def ready(self) -> int:
        """The shard's number of candidate pairs (a cheap call that proves it was built)."""
        return self.problem.n_pairs

    def sample(self, share: float | None, seed: int) -> list[Piece]:
        """The shard's part of the start's sample (:func:`.sample_rows.shard_sample`)."""
        return shard_sample(self.problem.blocks, self.lo, share, seed)

    # -- the price passes ---------------------------------------------------------------------
    def respond(self, prices: Prices
                ) -> tuple[np.ndarray, np.ndarray, float, dict[str, np.ndarray]]:
        """Every customer's best response to ``prices`` (margins written for the price update,
        choices kept for the plan; with channels, on values less each customer's channel
        charge); returns the shard's (spend, count) per offer in the responses and its share of
        the dual function, each summed in one array, and what the channels' prices read of its
        responses (:func:`.channels.response_use`; empty without channels)."""
        self.view = self._views.at(prices)
        if self.at_risk is None:  # the rows that could break a group, found once
            self.at_risk = self.run(lambda b: group_rules.risky_slots(self.problem, b),
                                    self.problem.blocks)
        relaxed, dual_rows, exact = method._responses(self.view, prices, self.margins, self.run,
                                                      self.at_risk, self.compact)
        self.relaxed, self.exact, self.grouped = relaxed, exact, True
        self.candidates.responded(relaxed)  # what compact margins are read with
        used = self.problem.usage(relaxed, self.run)
        dual = float(np.concatenate(dual_rows).sum()) if dual_rows else 0.0
        return (used.spend, used.customers.astype(float), dual,
                channel_rules.response_use(self.problem, self.view, prices, relaxed))

    def respond_plain(self, prices: Prices) -> None:
        """The relaxed best responses to ``prices`` only (the plan of a pass that made none)."""
        problem = self.view = self._views.at(prices)
        self.relaxed = self.run(lambda block: method._respond(problem, block, prices, True)[0],
                                problem.blocks)
        self.exact, self.grouped = [None] * len(self.relaxed), False

    def sketch(self, mode: int, prices: tuple, capacity: np.ndarray
               ) -> tuple[np.ndarray, ...]:
        """The critical prices' bucket bounds the shard places on its sample at ``capacity``
        (the constraints' capacities scaled by its share of the customers), for the driver to
        merge (:func:`.sketch.merged_bounds`): the number of points per group, then each
        point's critical price, rank in its group's sorted sample (``int32``) and sample weight
        ranked before it (``float32``, an estimate's input), flat group by group, and each
        group's sample entries and weight: at most 62 points a group, whatever the customers."""
        return compact(self.candidates.sketch(mode, prices, capacity))

    def tallies(self, mode: int, prices: tuple, bounds: np.ndarray, capacity: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """The shard's (weight, count) per group and bucket, its parts added in order from zero
        (each part's counts kept for :meth:`collect`)."""
        parts = (self.candidates.tallies(mode, prices, bounds, capacity, self.run)
                 if self.candidates.parts else [])
        self._part_counts = [c for _, c in parts]
        return tally_total(parts, (capacity.shape[0], WIDTH))

    def collect(self, mode: int, prices: tuple, bucket: tuple, split: np.ndarray
                ) -> tuple[narrow.Entries, tuple[np.ndarray, np.ndarray] | None]:
        """The shard's candidates of each group's crossing bucket (``bucket``: crossing, bottom,
        top per group) as (critical price, weight, group), group by group, each in customer
        order: those of groups not ``split``, and the points of the split ones, whose
        candidates it keeps for the ``kept_*`` calls (:meth:`_keep`)."""
        crossing = bucket[0]
        n_groups = crossing.shape[0]
        if not self._part_counts:
            return self._keep(narrow.no_entries(), bucket, split)
        inside = np.stack([c[np.arange(n_groups), np.maximum(crossing, 0)]
                           for c in self._part_counts]) * (crossing >= 0)
        per_group = inside.sum(axis=0)
        start = np.r_[0, np.cumsum(per_group)]
        fills = start[:-1] + np.cumsum(inside, axis=0) - inside
        crits, weights = self.candidates.collect(mode, prices, bucket, fills, int(start[-1]),
                                                 self.run)
        return self._keep((crits, weights, np.repeat(np.arange(n_groups), per_group)), bucket,
                          split)

    def _keep(self, entries: narrow.Entries, bucket: tuple, split: np.ndarray
              ) -> tuple[narrow.Entries, tuple[np.ndarray, np.ndarray] | None]:
        """The ``entries`` of groups not ``split``; those of the split ones kept, with their
        points (:func:`.narrow.points`; ``None`` when none is split)."""
        found, self._kept = narrow.split_entries(entries, split)
        rows = np.flatnonzero(split)
        if not rows.size:
            return found, None
        return found, narrow.points(self._kept, rows, bucket[1][rows], bucket[2][rows])

    def kept_points(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The points of the kept candidates of groups ``rows`` in ``[lo, hi)``."""
        return narrow.points(self._kept, rows, lo, hi)

    def kept_tallies(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The kept candidates' (weight, count) per row of ``rows`` and bucket of ``bounds``."""
        return narrow.tallies(self._kept, rows, lo, hi, bounds)

    def kept_collect(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> narrow.Entries:
        """The kept candidates of groups ``rows`` in ``[lo, hi)``, in their order."""
        return narrow.collect(self._kept, rows, lo, hi)

    def targeted(self, targeted: np.ndarray, budget_price: np.ndarray, glob: float,
                 count_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offer and margin of the shard's candidates of ``targeted`` offers, customer order."""
        if not self.candidates.parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return self.candidates.targeted(targeted, budget_price, glob, count_price, self.run)

    def funded(self, prices: Prices, budget_price: np.ndarray, glob: float, target: np.ndarray
               ) -> funder_rules.Funded | None:
        """The shard's candidates counting against a funder's budget (:func:`.funders.funded`)."""
        c = self.candidates
        return funder_rules.funded(self.problem, list(c.offers), list(c.costs),
                                   c.dense_margins(),
                                   prices, budget_price, glob, target)

    def funder_sketch(self, prices: Prices, budget_price: np.ndarray, glob: float,
                      target: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray, ...]:
        """The funders' prices' first call: the shard's funded candidates (kept for
        :meth:`funder_tallies` and :meth:`funder_collect`), their cost per funder and the
        bucket bounds placed on every ``STRIDE``-th of them at ``capacity`` (the budgets scaled
        by the shard's share of the customers), as :meth:`sketch` sends them."""
        found = self.funded(prices, budget_price, glob, target)
        self._funded = found if found is not None else narrow.no_entries()
        key, weight, owner = self._funded
        spend = np.bincount(owner, weights=weight, minlength=capacity.shape[0])
        return (spend, *flat_sketch(self._funded, capacity))

    def funder_tallies(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The funded candidates' (cost, count) per funder and bucket of ``bounds``."""
        key, weight, owner = self._funded
        return flat_tallies(owner, key, weight, bounds)

    def funder_collect(self, bucket: tuple[np.ndarray, np.ndarray, np.ndarray],
                       split: np.ndarray
                       ) -> tuple[narrow.Entries, tuple[np.ndarray, np.ndarray] | None]:
        """The funded candidates in each funder's crossing bucket ``[bottom, top)``, in
        customer order, as :meth:`collect` answers (those of ``split`` funders kept)."""
        return self._keep(in_bucket(self._funded, bucket), bucket, split)

    # -- the target bonus (offers with ``min_customers``) ------------------------------------
    def target_counts(self, targeted: np.ndarray, budget_price: np.ndarray, glob: float,
                      count_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The target bonus's first call: the shard's candidates of ``targeted`` offers with a
        finite margin at these prices (kept, weight 1, for the ``target_*`` calls) and, per
        offer, how many have a finite margin and how many a positive one."""
        offer, margin = self.targeted(targeted, budget_price, glob, count_price)
        finite = np.isfinite(margin)
        self._targets = (margin[finite], np.ones(int(finite.sum())), offer[finite])
        n = targeted.shape[0]
        return (np.bincount(offer[finite], minlength=n),
                np.bincount(offer[margin > 0], minlength=n))

    def target_sketch(self, capacity: np.ndarray) -> tuple[np.ndarray, ...]:
        """The bucket bounds placed on every ``STRIDE``-th targeted candidate at ``capacity``
        (per offer, the shard's share of the rank sought), as :meth:`sketch` sends them."""
        return flat_sketch(self._targets, capacity)

    def target_tallies(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The targeted candidates' (count, count) per offer and bucket of ``bounds``."""
        key, weight, offer = self._targets
        return flat_tallies(offer, key, weight, bounds)

    def target_collect(self, bucket: tuple[np.ndarray, np.ndarray, np.ndarray],
                       split: np.ndarray
                       ) -> tuple[narrow.Entries, tuple[np.ndarray, np.ndarray] | None]:
        """The targeted candidates in each offer's crossing bucket, as :meth:`collect`."""
        return self._keep(in_bucket(self._targets, bucket), bucket, split)

    # -- the plan -----------------------------------------------------------------------------
    def plan_rows(self, prices: Prices) -> list[np.ndarray]:
        """Each piece's first plan (:func:`.method.plan_rows`) from the last best responses."""
        problem, grouped = self.view, self.grouped
        masks = self.run(lambda item: method.plan_rows(problem, prices, item[0], item[1],
                                                       item[2], grouped),
                         list(zip(problem.blocks, self.relaxed, self.exact)))
        self.plan = masks
        return masks

    def plan_rows_packed(self, prices: Prices) -> list[np.ndarray]:
        """:meth:`plan_rows` as packed bits (one bit per candidate slot on the wire: the bits
        kept)."""
        self.plan_rows(prices)
        return [bits for bits, _ in self._plan]

    # -- the repair (:mod:`.repair_shards`): every call gets the cuts made so far -------------
    def repair_start(self) -> None:
        """Take the last plan's pairs for the repair."""
        self._pairs = rs.entries_of(self.problem, self.plan, self.lo)
        self._cuts = (b"", np.zeros(0, dtype=bool))

    def _kept_after(self, applied: list) -> np.ndarray:
        """Which of the plan's pairs remain after ``applied`` (the last answer reused when the
        cuts are the same, bytes for bytes: a cut's single pairs may change, not its length)."""
        key = rs.cuts_key(applied)
        if self._cuts[0] != key or self._cuts[1].shape[0] != self._pairs.pos.shape[0]:
            self._cuts = (key, rs.kept_after(self._pairs, applied, self.problem.offers.n_offers))
        return self._cuts[1]

    def _groups(self, kind: int) -> int:
        return self.problem.offers.n_offers if kind != rs.GLOBAL else 1

    def repair_totals(self, applied: list, kind: int) -> Exact:
        """The kept pairs' exact weight per group of the cut ``kind``."""
        kept = self._kept_after(applied)
        group, _, weight = rs.keys(self._pairs, kind)
        return exact_tally(group[kept], weight[kept], self._groups(kind))

    def repair_points(self, applied: list, kind: int, rows: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to 63 priorities per row of ``rows`` in its ``[lo, hi)``
        (:func:`.repair_shards.points`)."""
        n = self.problem.offers.n_offers
        row, priority, _, _ = rs.in_rows(self._pairs, self._kept_after(applied), kind, rows,
                                         lo, hi, n)
        return rs.points(row, priority, rows.shape[0])

    def repair_tallies(self, applied: list, kind: int, rows: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, Exact]:
        """Count and exact weight per row and bucket of ``edges`` in each row's ``[lo, hi)``."""
        n = self.problem.offers.n_offers
        row, priority, weight, _ = rs.in_rows(self._pairs, self._kept_after(applied), kind,
                                              rows, lo, hi, n)
        return rs.tallies(row, priority, weight, edges)

    def repair_collect(self, applied: list, kind: int, rows: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """Row, priority, weight and position of the kept pairs in each row's ``[lo, hi)``."""
        n = self.problem.offers.n_offers
        row, priority, weight, idx = rs.in_rows(self._pairs, self._kept_after(applied), kind,
                                                rows, lo, hi, n)
        return row, priority, weight, self._pairs.pos[idx]

    def repair_best(self, applied: list, kind: int, rows: np.ndarray, limit: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row the most valuable kept pair that fits ``limit`` alone (value, position)."""
        inf = np.full(rows.shape[0], np.inf)
        row, _, weight, idx = rs.in_rows(self._pairs, self._kept_after(applied), kind, rows,
                                         -inf, inf, self.problem.offers.n_offers)
        return rs.best_single(row, self._pairs.value[idx], weight, self._pairs.pos[idx], limit,
                              rows.shape[0])

    def repair_values(self, applied: list, kind: int, rows: np.ndarray) -> Exact:
        """The kept pairs' exact value per row of ``rows``."""
        inf = np.full(rows.shape[0], np.inf)
        row, _, _, idx = rs.in_rows(self._pairs, self._kept_after(applied), kind, rows, -inf,
                                    inf, self.problem.offers.n_offers)
        return exact_tally(row, self._pairs.value[idx], rows.shape[0])

    def repair_done(self, applied: list, dropped: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Exact, np.ndarray]:
        """The pairs dropped (piece, row, slot; none sent unless ``dropped``) and the kept ones'
        exact spend and count per offer."""
        kept = self._kept_after(applied)
        e, n = self._pairs, self.problem.offers.n_offers
        gone = ~kept & dropped
        return (e.piece[gone], e.row[gone], e.slot[gone], exact_tally(e.offer[kept],
                e.cost[kept], n), np.bincount(e.offer[kept], minlength=n).astype(np.int64))

    # -- the refill (:mod:`.refill_shards`): each round's call gets the shard's grants so far ---
    def refill_start(self, applied: list, prices: Prices, left: rf.Left) -> int:
        """Build the refill's pool from the plan less the pairs the cuts ``applied`` dropped,
        at ``left`` (budgets, customers and global budget left); returns its size."""
        masks = self._repaired(applied)
        self._left.started(left)
        self._pool = rf.shard_pool(self.problem, masks, prices, left, self.lo, self.run)
        return int(self._pool.offer.shape[0])

    def _repaired(self, applied: list) -> list[np.ndarray]:
        """The last plan less the pairs the cuts ``applied`` dropped (new masks)."""
        masks = self.plan  # new masks
        gone = ~self._kept_after(applied)
        e = self._pairs
        for k, mask in enumerate(masks):  # a loop over the shard's pieces, never pairs
            sel = gone & (e.piece == k)
            mask[e.row[sel], e.slot[sel]] = False
        return masks

    def refill_round(self, granted: np.ndarray, changes: rf.Changes, global_left: float,
                     limit: int) -> tuple[int, rf.Batch]:
        """The round's proposals after the shard's grants ``granted`` (positions, every round's
        so far) at what is left (``changes`` since ``refill_start``'s, :class:`.refill_shards.
        KeptLeft`): how many, and the first ``limit`` in the grant order."""
        left = self._left.at_round(changes, global_left)
        n = rf.propose(self._pool, granted, left, self.problem.max_per_category)
        return n, rf.batch(self._pool, None, left, limit)

    def refill_collect(self, after: tuple[float, int], changes: rf.Changes,
                       global_left: float, limit: int) -> rf.Batch:
        """The round's next ``limit`` proposals past ``after`` (priority, customer) that fit
        what is left (``changes`` since the round's call)."""
        return rf.batch(self._pool, after, self._left.at_collect(changes, global_left), limit)

    def refill_done(self) -> None:
        """Let the refill's pool go."""
        self._pool = rf.empty_pool()

    # -- the plan kept on the shard (:func:`.planning.plan_pass` without the driver's masks) ---
    def plan_make(self, prices: Prices) -> None:
        """:meth:`plan_rows`, the plan kept here and nothing sent."""
        self.plan_rows(prices)

    def plan_apply(self, applied: list, granted: np.ndarray, plan_id: int
                   ) -> tuple[np.ndarray, Exact | None]:
        """The pass's plan made here: the last plan less the pairs the cuts ``applied`` drop,
        with the shard's refill grants ``granted`` (positions), then trimmed to the offer groups
        (per customer, as :func:`.planning.make_plan` trims the driver's masks), kept as plan
        ``plan_id``; its customers per offer and its exact value
        (:meth:`.AssignmentProblem.objective_exact`)."""
        masks = self._repaired(applied)
        rf.set_pairs(self.problem, masks, granted, self.lo)
        group_rules.trim_plan(self.view, masks)  # the refill knows no groups
        self._made = (plan_id, packed(masks))
        return (self.problem.usage(masks, self.run).customers,
                self.problem.objective_exact(masks, self.run))

    def plan_keep(self, plan_id: int, recipe: tuple) -> None:
        """Keep plan ``plan_id`` as the best. A shard that did not make it (rebuilt since)
        makes it again from ``recipe``: its prices, whether from the plain responses (a
        replanned pass), the cuts applied and the shard's grants (every step a function of
        these and the shard's blocks; the later replayed calls overwrite what this leaves)."""
        if self._made[0] != plan_id:
            prices, plain, applied, granted = recipe
            if plain:
                self.respond_plain(prices)
            else:
                self.respond(prices)
            self.plan_rows(prices)
            self.repair_start()
            self.plan_apply(applied, granted, plan_id)
        self._best = self._made[1]

    def plan_best(self) -> list[np.ndarray]:
        """The best plan kept (:meth:`plan_keep`), one new mask per piece."""
        return [unpacked(bits, shape) for bits, shape in self._best]

    def plan_best_packed(self) -> list[np.ndarray]:
        """:meth:`plan_best` as packed bits (the bits kept)."""
        return [bits for bits, _ in self._best]

    def plan_best_pairs(self) -> PlanPairs:
        """The best plan kept, as its chosen pairs in customer order
        (:func:`optimizer.model.chosen.chosen_pairs_of`)."""
        return chosen_pairs_of(self.problem, self.plan_best())
