"""Numeric conventions shared by every stage: when a dual price counts as positive.

One definition each, so the manifest, the report, compare, sweep and explain agree.
"""
from __future__ import annotations

import numpy as np

# a dual price above this is positive: below it, the price is the solver's rounding noise
BINDING_PRICE = 1e-9


def binding(shadow_price: np.ndarray) -> np.ndarray:
    """Which budgets are binding: the one definition that the manifest, the report, compare,
    sweep and explain share. A budget binds when its shadow price (the dual price of that
    budget: objective value of one more unit of it) is positive, i.e. more budget would raise
    the objective. How full the budget is does not decide it."""
    return np.asarray(shadow_price, dtype=float) > BINDING_PRICE
