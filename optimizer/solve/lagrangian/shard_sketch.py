"""A shard's answers about its flat candidate entries: the sketch it sends (the bounds placed
on a stride of its entries, :mod:`.sketch`) and the entries inside a crossing bucket."""
from __future__ import annotations

import numpy as np

from optimizer.solve.lagrangian import narrow
from optimizer.solve.lagrangian.sketch import STRIDE, WIDTH, sketch_of


def flat_sketch(entries: narrow.Entries, capacity: np.ndarray) -> tuple[np.ndarray, ...]:
    """The bounds placed on every ``STRIDE``-th of flat ``entries`` (key, weight, group) at
    ``capacity``, as sent (:func:`compact`); entries of a group without one are left out."""
    key, weight, group = entries
    picked = np.zeros(key.shape[0], dtype=bool)
    picked[::STRIDE] = True
    picked &= np.isfinite(key) & (weight > 0) & np.isfinite(capacity[group])
    return compact(sketch_of(group[picked], key[picked], weight[picked], capacity))


def in_bucket(entries: narrow.Entries, bucket: tuple[np.ndarray, np.ndarray, np.ndarray]
               ) -> narrow.Entries:
    """The flat ``entries`` in their group's crossing bucket ``[bottom, top)``, in order."""
    crossing, bottom, top = bucket
    key, weight, group = entries
    inside = (crossing[group] >= 0) & (bottom[group] <= key) & (key < top[group])
    return key[inside], weight[inside], group[inside]


def compact(sketch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """A :func:`.sketch.sketch_of` answer as sent: each group's points, flat (module docstring
    of :mod:`.sketch`)."""
    bounds, n_bounds, rank, before, members, total = sketch
    kept = np.arange(WIDTH) < n_bounds[:, None]
    return (n_bounds.astype(np.int32), bounds[kept], rank[kept].astype(np.int32),
            before[kept].astype(np.float32), members, total)


__all__ = ["compact", "flat_sketch", "in_bucket"]
