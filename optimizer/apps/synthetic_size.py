"""``demo-data``'s arguments checked before anything is written: each a whole number in its range,
and the sizes they ask for within what the machine can hold.

The generator works in chunks of customers (``CHUNK_CUSTOMERS``), so its memory does not grow
with the number of customers but with what one chunk and the catalogue hold: a chunk's purchase
lines (its customers x ``weeks``, about a line a week), its ``scores`` rows (its customers x
``scores_per_customer``) and the catalogue (ten products an offer). :func:`demo_sizes` estimates
that peak and the bytes the folder takes on disk from the figures measured on demo folders
(:data:`BYTES`); :func:`check_sizes` refuses sizes whose peak exceeds the memory the process may
use or whose folder exceeds the free space where it is written, with a ``ValueError`` that the
command line turns into a usage error (exit 2, nothing written).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from optimizer.apps.synthetic_world import _ensure_counts
from optimizer.core.allocator import process_memory_limits
from optimizer.core.config import MAX_WEEK
from optimizer.io.memory import available_memory

GB = 1024 ** 3
# bytes, measured on demo folders (the peak resident memory of `offeropt demo-data` and the size
# of its folder) and rounded up: the process before any table (230 MB measured); a customer-week
# of a chunk's purchase lines (about one line a week; the generator holds about a dozen arrays of
# them: 206 to 263 measured), a scores row of a chunk (49), a product of the catalogue (its
# tables and the offers' lists: 500); on disk, a customer-week of purchases (9), a scores row (15)
BYTES = {"base": 256 * 2 ** 20, "customer_week": 300, "score": 60, "product": 600,
         "customer_week_on_disk": 10, "score_on_disk": 16, "customer_on_disk": 50}


def demo_sizes(customers: int, offers: int, scores_per_customer: int | None, weeks: int,
               chunk: int) -> tuple[int, int]:
    """The generator's peak memory and the folder's size on disk, in bytes, about."""
    in_chunk = min(customers, chunk)
    scores = scores_per_customer or 0
    weeks_of_lines = 0 if scores else weeks  # a scores folder has no purchase lines
    memory = (BYTES["base"] + BYTES["customer_week"] * in_chunk * weeks_of_lines
              + BYTES["score"] * in_chunk * scores + BYTES["product"] * max(2000, 10 * offers))
    disk = customers * (BYTES["customer_week_on_disk"] * weeks_of_lines
                        + BYTES["score_on_disk"] * scores + BYTES["customer_on_disk"])
    return int(memory), int(disk)


def _free_disk(out_dir: Path) -> int:
    """Free bytes on the file system the folder is (or will be) on."""
    place = Path(out_dir).resolve()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free
    except OSError:
        return 1 << 62  # unknown: do not refuse


def check_sizes(customers: int, offers: int, scores_per_customer: int | None, weeks: int,
                chunk: int, out_dir: Path | None = None) -> None:
    """Refuse (``ValueError``) sizes the machine cannot hold (module docstring): the estimated
    peak memory over the memory the process may use, or, given ``out_dir``, the folder over the
    free disk space there."""
    memory, disk = demo_sizes(customers, offers, scores_per_customer, weeks, chunk)
    limit, source = min([(available_memory(), "the memory available")]
                        + process_memory_limits(), key=lambda item: item[0])
    asked = (f"--customers {customers:,} --offers {offers:,} --weeks {weeks:,}"
             + (f" --scores-per-customer {scores_per_customer:,}" if scores_per_customer else ""))
    if memory > limit:
        raise ValueError(f"{asked} needs about {memory / GB:,.1f} GB of memory to generate "
                         f"(the catalogue: ten products an offer; a chunk of "
                         f"{min(customers, chunk):,} customers' purchase lines or scores), more "
                         f"than {source} ({limit / GB:,.1f} GB): ask for fewer offers, weeks or "
                         "scores per customer")
    if out_dir is not None:
        free = _free_disk(out_dir)
        if disk > free:
            raise ValueError(f"{asked} writes about {disk / GB:,.1f} GB into {out_dir}, more "
                             f"than the {free / GB:,.1f} GB free there: ask for fewer customers "
                             "or write elsewhere")


def checked_arguments(customers: int, offers: int, scores_per_customer: int | None, weeks: int,
                      planning_week: int, file_format: str, seed: int, chunk: int,
                      out_dir: Path | None) -> tuple[int, int, int | None, int, int]:
    """``write_demo_data``'s arguments checked: customers, offers, scores per customer, weeks
    and planning week as integers (returned as such), and sizes the machine can hold at
    ``chunk`` customers a chunk (:func:`check_sizes`); a bad one is a ValueError naming it."""
    N = _ensure_counts("customers", customers, 1)
    M = _ensure_counts("offers", offers, 1)
    weeks = _ensure_counts("weeks", weeks, 1)
    planning_week = _ensure_counts("planning_week", planning_week, -10**6)
    K = None
    if scores_per_customer is not None:
        K = _ensure_counts("scores_per_customer", scores_per_customer, 1)
        if K > M:
            raise ValueError(f"scores_per_customer ({K}) cannot exceed offers ({M})")
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"file_format must be 'parquet' or 'csv', got {file_format!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_sizes(N, M, K, weeks, chunk, out_dir)
    # a folder whose weeks no scenario can plan (week knobs are at most MAX_WEEK in absolute value)
    if planning_week > MAX_WEEK or planning_week - weeks < -MAX_WEEK:
        raise ValueError(f"planning week {planning_week:,} with {weeks:,} weeks of history: "
                         f"the weeks must lie within -{MAX_WEEK:,}..{MAX_WEEK:,}, the range of the "
                         "scenario's week knobs")
    return N, M, K, weeks, planning_week


__all__ = ["check_sizes", "checked_arguments", "demo_sizes"]
