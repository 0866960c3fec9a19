"""A plan as its chosen pairs only, and the problem that holds nothing else (issue 21).

Every output of a run (the assignments, the offers' summary, the controls withheld, the
objective, the plan's use of each budget and its rule checks) reads only the pairs a plan
chose. So a plan kept on shards can come back as its chosen pairs (:class:`PlanPairs`, one
per shard, in customer order) rather than as masks over the driver's blocks, and the driver
holds no candidate pairs: :func:`chosen_problem` lays them out as an
:class:`~optimizer.model.problem.AssignmentProblem` whose blocks hold the chosen pairs only,
every slot chosen. Its pairs come in the whole problem's order (customer by customer, within a
customer in slot order), so the sums taken in that order (the budgets' use, the withheld
score) are the same bits as over the whole problem and its masks. A local run whose blocks hold
no ``p_redeem`` gives its plan so too (:func:`read_plan_again`), the pairs' ``p_redeem`` read
again from the table as a worker reads its shard's (:func:`reread_p_redeem`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import polars as pl

from optimizer.core.errors import InputError
from optimizer.io.scores_stream import scores_of_customers
from optimizer.model.layout import held_blocks
from optimizer.model.problem import AssignmentProblem, CandidateBlock, block_from_pairs

if TYPE_CHECKING:
    from optimizer.model.build import ScoresSource


@dataclass(frozen=True)
class PlanPairs:
    """A plan's chosen pairs of a run of customers, in customer order and, within a customer,
    in slot order: ``customers`` (those with at least one chosen pair, ascending), ``counts``
    (their chosen pairs) and ``cap`` (their caps); per pair ``offer``, ``value`` and
    ``p_redeem`` (its cost is ``p_redeem`` x the offer's discount, as every block makes it:
    :func:`chosen_block`)."""

    customers: np.ndarray
    counts: np.ndarray
    cap: np.ndarray
    offer: np.ndarray
    value: np.ndarray
    p_redeem: np.ndarray

    @property
    def c(self) -> np.ndarray:
        """Each pair's customer index."""
        return np.repeat(self.customers, self.counts)


def chosen_pairs_of(problem: AssignmentProblem, chosen: Sequence[np.ndarray]) -> PlanPairs:
    """The pairs ``chosen`` (one mask per block of ``problem``, blocks in customer order)
    picks, with their customers' caps (a loop over blocks, never pairs)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (
        "customers", "counts", "cap", "offer", "value", "p_redeem")}
    for block, mask in zip(problem.blocks, chosen):
        rows, slots = np.nonzero(mask)  # row-major: customer order, then slot order
        counts = np.count_nonzero(mask, axis=1)
        some = counts > 0
        parts["customers"].append(block.customers[some].astype(np.int64))
        parts["counts"].append(counts[some].astype(np.int64))
        parts["cap"].append(block.cap[some].astype(np.int64))
        parts["offer"].append(block.offer[rows, slots].astype(np.int32))
        for name in ("value", "p_redeem"):
            parts[name].append(getattr(block, name)[rows, slots].astype(np.float64))
    empty = {"customers": np.int64, "counts": np.int64, "cap": np.int64, "offer": np.int32}
    return PlanPairs(**{name: (np.concatenate(arrays) if arrays
                                 else np.zeros(0, dtype=empty.get(name, np.float64)))
                          for name, arrays in parts.items()})


def reread_p_redeem(pairs: PlanPairs, source: ScoresSource, customers: pl.DataFrame
                    ) -> PlanPairs:
    """``pairs`` with each pair's ``p_redeem`` read again from the ``scores`` table, as the
    worker's build read it (:func:`optimizer.model.build.source_blocks`: the checked rows of
    :func:`~optimizer.io.scores_stream.scores_of_customers`, their ``p_redeem`` column as a
    float64 block holds it): a shard built on a worker keeps none. Only the rows of the pairs'
    customers (of ``customers``, the shard's stretch of the customers table) are read, once,
    and joined on (customer, offer)."""
    if not pairs.offer.size:
        return pairs
    n = max(source.offers.height, 1)
    keys = pairs.c * n + pairs.offer  # ascending: customer order, slots in offer order
    mine = customers.filter(np.isin(customers.get_column("c").to_numpy(), pairs.customers))
    frame = scores_of_customers(source.path, mine, source.offers, source.trim_ids)
    listed = (frame.get_column("c").to_numpy().astype(np.int64) * n
              + frame.get_column("o").to_numpy())
    at = np.minimum(np.searchsorted(keys, listed), keys.size - 1)
    hit = keys[at] == listed
    found = np.bincount(at[hit], minlength=keys.size)
    if (found != 1).any():  # the table changed since the driver read it
        missing = np.flatnonzero(found != 1)
        ids = mine.select("c", "customer_id")
        sample = [{"customer_id": ids.filter(pl.col("c") == int(pairs.c[k]))
                   .get_column("customer_id").item(),
                   "offer_id": source.offers.get_column("offer_id")[int(pairs.offer[k])],
                   "rows": int(found[k])} for k in missing[:5]]
        raise InputError("scores", "p_redeem",
                         "a planned pair is not listed once in the scores table read again for "
                         "its p_redeem: the table changed during the run", sample=sample,
                         count=int(missing.size))
    p_redeem = np.empty(keys.size)
    p_redeem[at[hit]] = frame.get_column("p_redeem").to_numpy()[hit]
    return replace(pairs, p_redeem=p_redeem)


def chosen_block(pairs: PlanPairs, discount: np.ndarray) -> CandidateBlock:
    """``pairs`` as one block (a row per customer, her pairs from the left in offer order),
    packed as every block is (:func:`~optimizer.model.problem.block_from_pairs`: the cost
    ``p_redeem`` x ``discount`` of the pair's offer, the bits the shard's block held)."""
    row = np.repeat(np.arange(pairs.customers.shape[0]), pairs.counts)
    return block_from_pairs(pairs.customers, row, pairs.offer, pairs.p_redeem, pairs.value,
                            discount, pairs.cap)


def chosen_problem(problem: AssignmentProblem, parts: Sequence[PlanPairs]
                   ) -> tuple[AssignmentProblem, list[np.ndarray]]:
    """The plan whose chosen pairs are ``parts`` (in customer order: a shard's each, in shard
    order) as a problem of ``problem``'s offers, rules and customers whose blocks (one per
    part) hold only those pairs, and its masks (every live slot chosen). The plan's outputs
    read of it what they read of ``problem`` and the plan's masks, to the bit. A plan with
    channels (each pair's channel) is not one a shard keeps, and is refused."""
    if problem.channels is not None:
        raise ValueError("a plan with channels carries each pair's channel: not a chosen-only "
                         "problem's")
    blocks = [chosen_block(p, problem.offers.discount) for p in parts]
    order = np.concatenate([b.customers for b in blocks] or [np.zeros(0, dtype=np.int64)])
    if order.size > 1 and not bool((order[1:] > order[:-1]).all()):
        raise ValueError("the chosen pairs' parts are not in customer order")
    return replace(problem, blocks=blocks), [b.offer >= 0 for b in blocks]


def pairs_between(pairs: PlanPairs, lo: int, hi: int) -> PlanPairs:
    """The pairs of ``pairs`` whose customer is in ``[lo, hi)``."""
    first, end = np.searchsorted(pairs.customers, [lo, hi])
    at = np.r_[0, np.cumsum(pairs.counts)]
    a, b = int(at[first]), int(at[end])
    return PlanPairs(pairs.customers[first:end], pairs.counts[first:end], pairs.cap[first:end],
                     pairs.offer[a:b], pairs.value[a:b], pairs.p_redeem[a:b])


# planned customers whose rows of the scores table are read again at a time: their rows are
# held at once (a read of every planned customer's rows raised the run's peak), and each read
# costs the row groups of their customers' range (docs/distributed.md, "The local run without
# p_redeem")
REREAD_CUSTOMERS = 1 << 18


def reread_by_stretch(pairs: PlanPairs, source: ScoresSource, customers: pl.DataFrame
                      ) -> list[PlanPairs]:
    """``pairs`` (in customer order) with their ``p_redeem`` read again
    (:func:`reread_p_redeem`), in parts of at most ``REREAD_CUSTOMERS`` planned customers
    each, read one after the other: only one part's rows are held at a time. ``customers``:
    the customers table's IDs and ``c`` (ascending) over the pairs' customers."""
    planned, c = pairs.customers, customers.get_column("c").to_numpy()
    parts = []
    for first in range(0, planned.size, REREAD_CUSTOMERS):
        last = min(first + REREAD_CUSTOMERS, planned.size) - 1
        lo, hi = int(planned[first]), int(planned[last]) + 1
        a, b = (int(k) for k in np.searchsorted(c, [lo, hi]))
        parts.append(reread_p_redeem(pairs_between(pairs, lo, hi), source,
                                     customers.slice(a, b - a)))
    return parts


def read_plan_again(problem: AssignmentProblem, chosen: Sequence[np.ndarray],
                    source: ScoresSource, customers: pl.DataFrame
                    ) -> tuple[AssignmentProblem, list[np.ndarray]]:
    """The plan ``chosen`` of ``problem``, whose blocks hold no ``p_redeem`` (a local run's past
    the polish's reach: :func:`optimizer.model.layout.p_redeem_let_go`), as the problem of its
    chosen pairs (:func:`chosen_problem`: a block per ``REREAD_CUSTOMERS`` planned customers)
    with their ``p_redeem`` read again from the ``scores`` table of ``customers`` (the
    customers table's IDs and ``c``), those customers' rows at a time
    (:func:`reread_p_redeem`; a table changed since the build is refused as there), and its
    masks: the problem the workers' plan comes back as. It keeps ``problem``'s layout (its
    pairs' count and largest cap)."""
    pairs = chosen_pairs_of(problem, chosen)
    parts = reread_by_stretch(pairs, source, customers)
    _, layout = held_blocks(problem.blocks, -1)  # every block's shape, the pairs' count
    plan, masks = chosen_problem(replace(problem, layout=layout), parts or [pairs])
    again = replace(pairs, p_redeem=np.concatenate([np.zeros(0)] + [p.p_redeem for p in parts]))
    require_same_cost(built_cost(problem, chosen), built_cost(plan, masks), again, customers,
                      source.offers)
    return plan, masks


def built_cost(problem: AssignmentProblem, chosen: Sequence[np.ndarray]) -> np.ndarray:
    """The cost of each pair ``chosen`` picks, in :func:`chosen_pairs_of`'s order."""
    return np.concatenate([np.zeros(0)] + [b.cost[m] for b, m in zip(problem.blocks, chosen)])


def require_same_cost(cost: np.ndarray, again_cost: np.ndarray, again: PlanPairs,
                      customers: pl.DataFrame, offers: pl.DataFrame) -> None:
    """Refuse planned pairs ``again`` (their ``p_redeem`` read again) whose cost ``again_cost``
    is not ``cost``, the build's: each pair's cost is ``p_redeem`` x discount, as the build made
    it, so a ``p_redeem`` read again that gives another cost was changed in the table since (a
    pair gone is refused by :func:`reread_p_redeem`). ``customers``: the pairs' stretch of the
    customers table (IDs and ``c``); ``offers``: the offers' IDs."""
    changed = np.flatnonzero(cost != again_cost)
    if not changed.size:
        return
    first = int(customers.get_column("c")[0]) if customers.height else 0
    ids, c = customers.get_column("customer_id"), again.c
    sample = [{"customer_id": ids[int(c[k]) - first],
               "offer_id": offers.get_column("offer_id")[int(again.offer[k])],
               "p_redeem": float(again.p_redeem[k])} for k in changed[:5]]
    raise InputError("scores", "p_redeem",
                     "a planned pair's p_redeem read again from the scores table is not the "
                     "one the run read: the table changed during the run", sample=sample,
                     count=int(changed.size))


__all__ = ["PlanPairs", "built_cost", "chosen_block", "chosen_pairs_of", "chosen_problem",
           "pairs_between", "read_plan_again", "require_same_cost", "reread_by_stretch",
           "reread_p_redeem"]
