"""Each candidate's margin as a price pass leaves it for the critical prices: her value less the
reduced value she must beat to be (or stay) in her customer's best response, the thresholds of
Zhang et al., "Solving Billion-Scale Knapsack Problems" (WWW 2020), from which
:mod:`.critical` reads every price.

A margin is ``value - limit``. Without a category cap, offer groups or channels, a customer's
limits are two numbers: one for the candidates in her best response (the best runner-up's
reduced value), one for the others (her weakest pick's if she is full, else 0). Such blocks
keep **compact** margins, the two limits per customer (``(n, 2)``, 16 bytes a customer instead
of 8 a candidate slot: a tenth at 50 slots), and the margin is made where it is read, from the
block's values and the responses the limits were written with: the same float64 subtraction the
price pass would have stored, so the same bits. Other blocks keep one margin per slot
(**dense**, ``(n, slots)``): there a category, an enumerated exact response
(:mod:`.exact_margins`) or a group's greedy (:mod:`.groups`) gives each candidate its own limit,
and with channels the values a margin is made from change with every pass's charges.
"""
from __future__ import annotations

from typing import Sequence

import numba as nb
import numpy as np

from optimizer.model.problem import AssignmentProblem, CandidateBlock

LIMITS = 2  # a compact block's columns: the limit in her response, the limit outside it
_NO_CHOICE = np.zeros((0, 0), dtype=np.bool_)  # a dense block's responses, never read


def compact(problem: AssignmentProblem) -> bool:
    """Whether ``problem``'s blocks keep compact margins: every customer's limits are one for
    her responses and one for the rest (no category cap, no offer groups), and the values the
    margins are made from stay the blocks' own (no channels)."""
    return (problem.max_per_category is None and problem.groups is None
            and problem.channels is None)


def empty_margins(blocks: Sequence[CandidateBlock], compact_blocks: bool) -> list[np.ndarray]:
    """Each block's margins before the first pass writes them (zeros: pages not yet touched)."""
    return [np.zeros((b.offer.shape[0], LIMITS) if compact_blocks else b.offer.shape)
            for b in blocks]


def no_choice() -> np.ndarray:
    """The responses a dense block's margins are read with: none (an empty array)."""
    return _NO_CHOICE


@nb.njit(inline="always")  # called per candidate in the critical prices' loops
def margin_at(margin, value, chosen, compact_block, i, s):  # pragma: no cover - compiled
    """Candidate ``(i, s)``'s margin: stored (dense), or her value less her limit (compact)."""
    if compact_block:
        if chosen[i, s]:
            return value[i, s] - margin[i, 0]
        return value[i, s] - margin[i, 1]
    return margin[i, s]


def dense(margin: np.ndarray, value: np.ndarray, chosen: np.ndarray, compact_block: bool
          ) -> np.ndarray:
    """A block's margins one per slot (its compact limits made into margins as
    :func:`margin_at` makes them; a dense block's own array)."""
    if not compact_block:
        return margin
    return value - np.where(chosen, margin[:, :1], margin[:, 1:])
