"""The greedy best response does not depend on how wide its chunk is padded."""
from __future__ import annotations

import numpy as np

from optimizer.solve.lagrangian.greedy import select, thresholds


def _customer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One customer, 30 candidates: 25 in category 0 (the best 20 and 5 weak ones), one each in
    categories 1-4 in the middle, and a weak second offer of category 1 ranked 27th."""
    category = np.array([0] * 25 + [1, 2, 3, 4, 1])
    value = np.concatenate([np.linspace(0.9, 0.7, 20), [0.3, 0.29, 0.04, 0.03, 0.02],
                            [0.5, 0.49, 0.48, 0.47], [0.05]])
    offer = np.arange(category.size)
    return offer, value, category[:, None]


def test_answer_and_thresholds_do_not_depend_on_the_chunk_width():
    """With one offer per category she takes the best of category 0, skips the other 19 and
    fills her cap from categories 1-4 (ranks 21-24), so she looks deeper than the first 13.
    What she examines must not follow the padded width of her chunk (a chunk holding a customer
    with more candidates is wider): the runner-up of her category-1 offer, ranked 27th, moved
    her thresholds, and so the prices, with the chunking."""
    offer, value, categories = _customer()
    own = offer.size
    cap, per_category = np.array([5]), 1
    answers = []
    for width in (own, 64, 120):  # her own candidates, or padded by wider neighbours
        pad = width - own
        wide_offer = np.pad(offer, (0, pad), constant_values=-1)[None, :]
        wide_value = np.pad(value, (0, pad), constant_values=-np.inf)[None, :]
        sel = select(wide_value, wide_offer, cap, categories, per_category, relaxed=True,
                     depth_cap=5)
        limits = thresholds(sel, wide_offer, cap, categories, per_category)
        answers.append((sel.chosen[0, :own].tolist(), limits[0, :own].tolist()))
    assert sorted(np.flatnonzero(answers[0][0])) == [0, 25, 26, 27, 28]
    assert all(a == answers[0] for a in answers[1:])
