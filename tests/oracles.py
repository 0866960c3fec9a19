"""Numpy reference versions of the library's compiled kernels, kept as test oracles only: the
library runs the compiled ones (what ``run`` and ``explain`` use), the tests check them
against these plain array programs.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from optimizer.model.problem import CandidateBlock, block_from_pairs
from optimizer.scoring.propensity import KIND, Propensity


def block_from_candidates(customers: np.ndarray, offer: np.ndarray, p_redeem: np.ndarray,
                          value: np.ndarray, allowed: np.ndarray, discount: np.ndarray,
                          cap: np.ndarray, keep: int | None = None) -> CandidateBlock:
    """Pack a chunk's allowed candidates of positive value into a :class:`CandidateBlock`.

    With ``keep``, only each customer's ``keep`` best candidates by value are kept (the loss this
    causes is bounded by the solver's restricted problem, and reported). Slots must arrive in
    increasing offer order within each row; they keep that order, so the layout, and hence every
    tie-break, is independent of the chunking.
    """
    live = allowed & (value > 0) & (offer >= 0)
    if keep is not None and keep < offer.shape[1]:
        score = np.where(live, value, -np.inf)
        part = np.argpartition(-score, keep - 1, axis=1)[:, :keep]
        # among equal values keep the lower offer index, independent of argpartition's choice
        kth = np.take_along_axis(score, part, axis=1).min(axis=1, keepdims=True)
        above = score > kth
        tied = (score == kth) & live
        room = keep - above.sum(axis=1, keepdims=True)
        # slots arrive in offer order (scores are sorted by offer within customer, affinity
        # columns are offers), so a running count breaks ties by offer index
        tie_rank = np.cumsum(tied, axis=1)
        live = live & (above | (tied & (tie_rank <= room)))
    # row-major order lists each customer's kept candidates in their (offer) order
    rows, cols = np.nonzero(live)
    return block_from_pairs(customers, rows, offer[rows, cols], p_redeem[rows, cols],
                            value[rows, cols], discount, cap)


def propensity_predict(self: Propensity, columns: list[np.ndarray]) -> np.ndarray:
    """The numpy oracle of the compiled propensity scorers: ``rate * sigmoid(beta . x)`` over
    ``design`` columns; the customer terms and the offer terms (``KIND``) are
    summed on their own small shapes, then the pair terms are added in place, always in the
    same order, so a pair's value never depends on the chunk it is scored in."""
    parts: dict[str, Any] = {"customer": 0.0, "offer": 0.0}
    pair_terms = []
    for kind, beta, col in zip(KIND, self.coef_, columns):
        if beta == 0.0:
            continue
        if kind == "pair":
            pair_terms.append((beta, col))
        else:
            parts[kind] = parts[kind] + beta * np.asarray(col)
    full = np.broadcast_shapes(*(np.shape(col) for col in columns))
    eta = np.broadcast_to(parts["customer"] + parts["offer"], full).copy()
    for beta, col in pair_terms:
        eta += beta * col
    return self.rate * special.expit(eta, out=eta)


def target_bonus(group: np.ndarray, margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per group, the smallest bonus ``>= 0`` that brings ``target`` candidates to ``margin > 0``
    (the plain definition, over every candidate gathered; the solve reads it off the shards'
    tallies, :meth:`optimizer.solve.lagrangian.executor.ShardedCandidates.target_bonus`).

    ``margin`` is each candidate's reduced value minus its threshold; a bonus ``b`` selects it
    when ``margin + b > 0``. A group whose target is met (that many margins ``> 0``) needs none;
    one with fewer candidates that can come in (finite margins) than its target gets the bonus
    that selects all of them: :func:`~optimizer.solve.lagrangian.targets.bonus_at` its k-th
    largest finite margin, ``k = min(target, finite margins)``.
    """
    from optimizer.solve.lagrangian.targets import bonus_at

    bonus = np.zeros(target.shape[0])
    for g in range(target.shape[0]):  # a loop over groups: a reference, not the solve
        mine = margin[group == g]
        finite = np.sort(mine[np.isfinite(mine)])[::-1]
        k = min(int(target[g]), finite.size)
        if target[g] > 0 and (mine > 0).sum() < target[g] and k > 0:
            bonus[g] = bonus_at(finite[k - 1])
    return bonus
