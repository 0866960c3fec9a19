"""The one thread map: a function over items on a few threads, results in item order.

Every chunked stage (candidate blocks, the bound over all candidates) runs through
:func:`in_order`, and the solver's passes through :class:`ThreadMap` (the same map with one pool
kept for every pass), so each chunk's result depends on its chunk only and the outputs are the
same for any thread count.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from optimizer.core.allocator import usable_cpus

T = TypeVar("T")
R = TypeVar("R")


def thread_count(threads: int) -> int:
    """``threads`` as configured (``solver.threads``), 0 or less meaning every usable CPU."""
    return threads if threads > 0 else usable_cpus()


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds covering ``0 .. n - 1`` in pieces of ``size``."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def run_ranges(keys: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """About ``parts`` non-empty ``[start, stop)`` ranges of about equal size covering ``keys``,
    each cut where the key changes, so no run of equal keys (a customer's lines) is split;
    fewer when the runs are too few."""
    n = keys.shape[0]
    cuts = [0]
    for r in range(1, max(parts, 1)):
        at = max(n * r // parts, cuts[-1])
        while 0 < at < n and keys[at] == keys[at - 1]:  # to the end of one run only
            at += 1
        cuts.append(at)
    cuts.append(n)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def in_order(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``threads`` threads, results in item order, at most ``threads``
    items started and not yet taken (memory stays bounded by a few chunks). ``items`` may be
    a generator: it is advanced on the calling thread, while the started items run."""
    if threads <= 1 or (isinstance(items, list) and len(items) < 2):
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class ThreadMap:
    """:func:`in_order` for a solver's repeated passes: one pool kept for every call (a pass maps
    a function over the same blocks many times), results as a list in item order, so the answer
    is the same for any thread count. Close it when done (``with`` does)."""

    def __init__(self, threads: int) -> None:
        self.threads = thread_count(threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def __call__(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self.pool is None or len(items) < 2:
            return [fn(item) for item in items]
        return list(self.pool.map(fn, items))

    def close(self) -> None:
        """Shut the pool down (waits for running items)."""
        if self.pool is not None:
            self.pool.shutdown()

    def __enter__(self) -> "ThreadMap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ThreadMap", "chunks", "in_order", "run_ranges", "thread_count"]
