"""Rows of the CP-SAT polish's model (:mod:`optimizer.solve.polish`,
:mod:`optimizer.solve.polish_campaign`): a linear row, runs of equal keys, and a capacity row
scaled to integers, conservatively or as a relaxation."""
from __future__ import annotations

from typing import Any

import numpy as np

SCALE = 1e9  # the largest coefficient of a row after integer scaling
ROUND_SLACK = 1e-14  # relative: what a float product x scale may be off by, with room

# the relaxation's slack on every capacity: covers what `offeropt check` allows (1e-9 relative,
# 1e-6 absolute) and a MIP solver's feasibility tolerance (SCIP: 1e-6 relative)
RELAX_RTOL, RELAX_ATOL = 1e-6, 1e-6


def row(proto: Any, variables: np.ndarray, coeffs: np.ndarray, low: int, high: int) -> None:
    """Add ``low <= sum coeffs x[variables] <= high`` to the CP-SAT model proto."""
    c = proto.constraints.add()
    c.linear.vars.extend(variables.tolist())
    c.linear.coeffs.extend(coeffs.tolist())
    c.linear.domain.extend([int(low), int(high)])


def runs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort ``key``; the order, and each group's start and end in it."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if key.size else \
        np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], key.size] if key.size else np.zeros(0, dtype=np.int64)
    return order, starts, ends


def capacity_row(proto: Any, idx: np.ndarray, cost: np.ndarray, capacity: float,
                  relax: bool) -> None:
    """``sum cost x <= capacity`` over the pairs ``idx`` in integers: conservative (costs up,
    capacity down) or, with ``relax``, a relaxation (costs down, capacity up, plus the slack the
    checker allows)."""
    if idx.size == 0:
        return
    if relax:
        capacity = capacity * (1 + RELAX_RTOL) + RELAX_ATOL
    top = max(float(cost.max()), capacity, 1e-300)
    scale = SCALE / top
    if relax:
        coeff = np.floor(cost * scale * (1 - 1e-12))
        cap_int = float(np.ceil(capacity * scale * (1 + 1e-12))) + 1
    else:
        # rounded up (the 1e-14 only absorbs the product's own rounding, so a cost exactly at the
        # capacity still fits); a plan feasible in integers spends at most capacity x (1 + 2e-14),
        # inside the float re-check's tolerance (1e-12, that of repair) and `offeropt check`'s
        coeff = np.ceil(cost * scale * (1 - ROUND_SLACK))
        cap_int = float(np.floor(capacity * scale * (1 + ROUND_SLACK))) if capacity >= 0 else -1.0
    if cap_int < 0:
        # the fixed pairs already fill it (cannot happen for a feasible plan): nothing may enter
        positive = idx[cost > 0]
        if positive.size:
            row(proto, positive, np.ones(positive.size, dtype=np.int64), 0, 0)
        return
    coeff = coeff.astype(np.int64)
    if int(coeff.sum()) <= int(cap_int):
        return  # never binds
    row(proto, idx, coeff, 0, int(cap_int))
