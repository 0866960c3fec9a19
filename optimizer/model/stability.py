"""Stable lists: ``rules.change_penalty`` (docs/contract.md, "Stable lists").

**Last week's lists** are the ``history`` rows of week ``week - 1`` (what ``--append-history``
wrote for the previous run), or, with ``--previous-run RUN_DIR``, that run folder's
assignments (its Parquet or, in a CSV-only folder, its CSV copy; IDs typed as everywhere).
Rows naming customers or offers that are gone are ignored.

**The penalty.** A *changed slot* is an offer of a customer's list last week that is not on her
list this week. The plan maximises ``sum of scores - change_penalty x changed slots``. Since
``changed slots = last week's slots - kept slots`` and last week's slots are a constant, this is
``sum of scores + change_penalty x kept slots`` up to that constant: each candidate pair that was
on the customer's list last week carries ``change_penalty`` more value in the solve. It is a
per-pair value, so the Lagrangian method, its bound and the exact model need nothing else.

**What is reported.** ``score`` and the manifest's ``objective`` stay the sum of the pairs' own
scores. The manifest's ``upper_bound`` is the bound of the penalised solve: every plan's
penalised value (scores plus the kept slots' bonus) is at least its sum of scores, so it bounds
both (the gap is then against it). ``stability`` in the manifest gives ``previous`` (where last
week's lists came from), ``previous_lists``, ``previous_slots``, ``kept_slots``,
``changed_slots``, ``changed_lists`` (customers whose set of offers differs from last week's,
new lists and emptied ones included), ``penalized_objective`` (objective minus
``change_penalty x changed_slots``) and ``penalized_upper_bound`` (its bound).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.core.errors import InputError, ScenarioError
from optimizer.io.runview import read_run_arm
from optimizer.model.problem import AssignmentProblem


@dataclass
class Previous:
    """Last week's lists as sorted pair keys ``c * n_offers + o``, and where they came from."""

    keys: np.ndarray
    n_offers: int
    source: str
    _originals: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)


def _keys(c: np.ndarray, o: np.ndarray, n_offers: int) -> np.ndarray:
    return np.unique(c.astype(np.int64) * max(n_offers, 1) + o.astype(np.int64))


def from_history(history: pl.DataFrame | None, week: int, n_offers: int) -> Previous:
    """Last week's lists from the validated ``history`` (``c``, ``o``, ``week``)."""
    rows = (history.filter(pl.col("week") == week - 1) if history is not None
            else pl.DataFrame(schema={"c": pl.Int32, "o": pl.Int32}))
    return Previous(_keys(rows.get_column("c").to_numpy(), rows.get_column("o").to_numpy(),
                          n_offers), n_offers, f"history week {week - 1}")


def from_run(run_dir: Path, customers: pl.DataFrame, offers: pl.DataFrame) -> Previous:
    """Last week's lists from a run folder's assignments (``.parquet``, else the ``.csv`` of a
    CSV-only folder), read by the one reader of a run's arms
    (:func:`optimizer.io.runview.read_run_arm`): IDs typed as the input tables type them, as
    everywhere (``"07"`` is not the integer 7); unknown ones ignored."""
    ids_int = {"customer_id": customers.schema["customer_id"].is_integer(),
               "offer_id": offers.schema["offer_id"].is_integer()}
    try:
        frame = read_run_arm(Path(run_dir), "assignments", ids_int)
    except InputError as exc:
        raise ScenarioError(f"--previous-run {run_dir}: {exc}; name a run folder of offeropt "
                            "run") from None
    joined = (frame.join(customers.select("customer_id", "c"), on="customer_id", how="inner")
              .join(offers.select("offer_id", "o"), on="offer_id", how="inner"))
    if frame.height and not joined.height:  # another shop's run, or another type's IDs
        raise ScenarioError(f"--previous-run {run_dir}: none of its {frame.height:,} "
                            "assignments names a customer and an offer of these inputs (e.g. "
                            f"{frame.row(0, named=True)}), so it holds no list of last week's; "
                            "name the run folder of last week's plan of these inputs")
    return Previous(_keys(joined.get_column("c").to_numpy(), joined.get_column("o").to_numpy(),
                          offers.height), offers.height, str(run_dir))


def add_bonus(problem: AssignmentProblem, previous: Previous, penalty: float) -> None:
    """Add ``penalty`` to the value of every candidate pair on last week's lists (in place; the
    blocks' own values are kept for :func:`remove_bonus`)."""
    n = max(previous.n_offers, 1)
    for index, block in enumerate(problem.blocks):
        hit = on_previous(block.customers, block.offer, previous.keys, n)
        if hit.any():
            previous._originals.append((index, block.value))
            block.value = np.where(hit, block.value + penalty, block.value)


def remove_bonus(problem: AssignmentProblem, previous: Previous) -> None:
    """Put the blocks' own values back (after the solve and its bounds)."""
    for index, value in previous._originals:
        problem.blocks[index].value = value
    previous._originals.clear()


def on_previous(customers: np.ndarray, offer: np.ndarray, keys: np.ndarray, n: int
                ) -> np.ndarray:
    """Mask of a block's slots (``customers`` per row, ``offer`` per slot, -1 empty) whose pair
    is among the sorted pair ``keys`` ``c * n + o`` (last week's lists, :class:`Previous`)."""
    if keys.size == 0:
        return np.zeros(offer.shape, dtype=bool)
    key = customers.astype(np.int64)[:, None] * n + offer.astype(np.int64)
    at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    return (offer >= 0) & (keys[at] == key)


def settle(problem: AssignmentProblem, solution: Any, previous: Previous, penalty: float,
           caps: np.ndarray, candidates: dict[str, Any]) -> None:
    """After the solve and its bounds: the blocks' own values back, the solution's objective the
    sum of its pairs' own scores (the bound stays the penalised one, which bounds both), and the
    bound over all candidates (computed partly from unpenalised values) raised by
    :func:`bound_slack` so that it stays valid."""
    remove_bonus(problem, previous)
    # in one chunk-independent order (a sum of per-chunk sums moves with solver.chunk_size)
    solution.objective = problem.objective(solution.chosen)
    if "bound_all_candidates" in candidates:
        bound = candidates["bound_all_candidates"] + bound_slack(previous, caps, penalty)
        candidates["bound_all_candidates"] = bound
        candidates["gap_all_candidates"] = (max(0.0, (bound - solution.objective) / bound)
                                            if bound > 0 else 0.0)
        # against the kept candidates' bound at the same prices (penalised values: it bounds
        # the penalised plan already, without the slack)
        candidates["bound_increase"] = max(0.0, bound - candidates["bound_kept_candidates"])


def bound_slack(previous: Previous, caps: np.ndarray, penalty: float) -> float:
    """What the bonus can add to a customer's best response beyond her unpenalised one, summed:
    ``penalty x min(cap, her pairs on last week's list)``. Bounds computed from unpenalised
    values (over every candidate) stay valid with it added."""
    if previous.keys.size == 0:
        return 0.0
    c = previous.keys // max(previous.n_offers, 1)
    count = np.bincount(c, minlength=caps.shape[0])[:caps.shape[0]]
    return float(penalty * np.minimum(caps, count).sum())


def record(previous: Previous, assignments_c: np.ndarray, assignments_o: np.ndarray,
           penalty: float, objective: float, bound: float) -> dict[str, Any]:
    """The manifest's ``stability`` record (module docstring) for this week's pairs."""
    now = _keys(assignments_c, assignments_o, previous.n_offers)
    kept = np.intersect1d(now, previous.keys, assume_unique=True)
    n = max(previous.n_offers, 1)
    changed = np.union1d(np.setdiff1d(now, previous.keys, assume_unique=True),
                         np.setdiff1d(previous.keys, now, assume_unique=True))
    changed_slots = int(previous.keys.size - kept.size)
    return {"change_penalty": penalty, "previous": previous.source,
            "previous_lists": int(np.unique(previous.keys // n).size), "previous_slots": int(previous.keys.size),
            "kept_slots": int(kept.size), "changed_slots": changed_slots,
            "changed_lists": int(np.unique(changed // n).size),
            "penalized_objective": objective - penalty * changed_slots,
            "penalized_upper_bound": bound - penalty * int(previous.keys.size)}
