"""Which (customer, offer) pairs the rules allow, and why the others were removed.

Rules, exactly as docs/contract.md reads them: the offer's eligibility window, the customer's
``exclude`` rows against every category of the offer, the sensitive policy (``opt_in`` needs an
opt-in row for every sensitive category of the offer), the cooldown from ``history``, and the
rules on customers' columns (``rules.eligibility``, :mod:`optimizer.model.attribute_rules`). The
frequency window lowers each customer's own cap (see :func:`customer_caps`).

Rules are compiled once into :class:`EligibilityRules` (offer-level masks and sorted pair keys) so
that a chunk of customers is filtered with a dense scatter and gather, never a loop over pairs.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 8d780dfcf572
from dataclasses import dataclass, field, replace

import numba as nb
import numpy as np
import polars as pl

from optimizer.core.config import Rules
from optimizer.core.schemas import normalize_category_name
from optimizer.io.validate import Inputs
from optimizer.model._eligibility_kernels import dense_cells, every_offer_in_order
from optimizer.model.attribute_rules import REASON as ATTRIBUTE_REASON
from optimizer.model.attribute_rules import AttributeRules, compile_attribute_rules
from optimizer.scoring.features import OfferCategories

REASONS = ("window", "exclude", "sensitive", "cooldown", "excluded_category")


@dataclass
class EligibilityRules:
    """The compiled rules. Pair keys are ``customer * n_offers + offer``, sorted.

    active: per offer, inside its eligibility window this week.
    forbidden_for_all: per offer, sensitive and the policy sends sensitive offers to nobody.
    excluded_category: per offer, has a category in ``rules.excluded_categories``.
    needs_opt_in: per offer, sensitive under the ``opt_in`` policy.
    excluded_keys, opted_in_keys, cooldown_keys: sorted pair keys.
    audit: pairs removed so far, by reason (each reason counted on its own, so a pair can count
        under several; ``removed`` counts each removed pair once).
    """

    n_offers: int
    active: np.ndarray
    forbidden_for_all: np.ndarray
    needs_opt_in: np.ndarray
    excluded_keys: np.ndarray
    opted_in_keys: np.ndarray
    cooldown_keys: np.ndarray
    excluded_category: np.ndarray
    audit: dict[str, int] = field(default_factory=lambda: {r: 0 for r in (*REASONS, "removed",
                                                                           "considered")})
    # rules on customers' columns (rules.eligibility), None without any
    attributes: AttributeRules | None = None

    def pair_keys(self, first: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The excluded, opted-in and cooldown pair keys of customers ``[first, end)`` (views):
        all that :meth:`allowed` reads of them for those customers."""
        lo, hi = first * self.n_offers, end * self.n_offers
        return (_in_range(self.excluded_keys, lo, hi), _in_range(self.opted_in_keys, lo, hi),
                _in_range(self.cooldown_keys, lo, hi))

    def with_pair_keys(self, keys: tuple[np.ndarray, np.ndarray, np.ndarray]
                       ) -> "EligibilityRules":
        """These rules with the pair keys ``keys`` (:meth:`pair_keys`' order) instead."""
        return replace(self, excluded_keys=keys[0], opted_in_keys=keys[1], cooldown_keys=keys[2])

    def allowed(self, customers: np.ndarray, offer: np.ndarray) -> np.ndarray:
        """Mask of the allowed candidates of a chunk and update the audit.

        ``customers``: ``(n,)`` customer indices in non-decreasing order; ``offer``: ``(n, slots)``
        offer indices, -1 in empty slots (never allowed, never counted).
        """
        out = np.zeros(offer.shape, dtype=bool)
        counts = np.zeros(len(REASONS) + 2, dtype=np.int64)  # reasons, removed, considered
        if offer.size:
            # one compiled pass over the cells: the masks of :meth:`reasons` and their sums
            # made 8 chunk-sized temporaries (1.3 s per 50,000 x 500 chunk, against 0.2 s)
            # Python ints: customer indices come as int32, and index x 500 offers passes 2**31
            # from 4.3 M customers on
            lo, hi = int(customers[0]) * self.n_offers, (int(customers[-1]) + 1) * self.n_offers
            keys = (_in_range(self.excluded_keys, lo, hi), _in_range(self.opted_in_keys, lo, hi),
                    _in_range(self.cooldown_keys, lo, hi))
            if every_offer_in_order(customers, offer, self.n_offers):  # the affinity chunks
                dense_cells(customers.astype(np.int64, copy=False), self.n_offers, self.active,
                            self.forbidden_for_all, self.needs_opt_in, self.excluded_category,
                            *keys, out, counts)
            else:
                _allowed_cells(customers.astype(np.int64, copy=False),
                               offer.astype(np.int64, copy=False), self.n_offers, self.active,
                               self.forbidden_for_all, self.needs_opt_in,
                               self.excluded_category, *keys, out, counts)
        for name, count in zip((*REASONS, "removed", "considered"), counts.tolist()):
            self.audit[name] += count
        if self.attributes is not None and offer.size:
            forbidden = self.attributes.forbidden(customers, offer)
            self.audit[ATTRIBUTE_REASON] += int(forbidden.sum())
            self.audit["removed"] += int((forbidden & out).sum())
            out &= ~forbidden
        return out

    def reasons(self, customers: np.ndarray, offer: np.ndarray) -> dict[str, np.ndarray]:
        """Per reason in :data:`REASONS`, the mask of the candidates it forbids (empty slots never
        forbidden); the audit is not touched. Arguments as in :meth:`allowed`."""
        present = offer >= 0
        safe = np.maximum(offer, 0)
        keys = customers[:, None].astype(np.int64) * self.n_offers + safe
        lo, hi = int(customers[0]) * self.n_offers, (int(customers[-1]) + 1) * self.n_offers
        masks = {
            "window": ~self.active[safe],
            "exclude": _member(keys, self.excluded_keys, lo, hi),
            "sensitive": self.forbidden_for_all[safe]
            | (self.needs_opt_in[safe] & ~_member(keys, self.opted_in_keys, lo, hi)),
            "cooldown": _member(keys, self.cooldown_keys, lo, hi),
            "excluded_category": self.excluded_category[safe],
        }
        if self.attributes is not None:
            masks[ATTRIBUTE_REASON] = self.attributes.forbidden(customers, offer)
        return {name: mask & present for name, mask in masks.items()}


def _in_range(sorted_keys: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The stretch of ``sorted_keys`` in ``[lo, hi)`` (a chunk's key range)."""
    start, stop = np.searchsorted(sorted_keys, [lo, hi])
    return sorted_keys[start:stop]


@nb.njit(inline="always")
def _walk(local, j, key):  # pragma: no cover - compiled
    """Advance ``j`` through sorted ``local`` to ``key``; (new j, whether ``key`` is there).
    Keys arrive almost sorted: a binary search only where they step back."""
    m = local.shape[0]
    if j > 0 and local[j - 1] >= key:
        j = np.searchsorted(local, key)
    while j < m and local[j] < key:
        j += 1
    return j, j < m and local[j] == key


@nb.njit(cache=True, nogil=True)
def _allowed_cells(customers, offer, n_offers, active, forbidden_for_all, needs_opt_in,
                   excluded_category, excluded, opted_in, cooldown, out,
                   counts):  # pragma: no cover - compiled
    """``out[i, s]``: whether the pair is allowed; ``counts``: each reason's pairs (in REASONS
    order, each counted on its own), then the pairs removed and the pairs considered."""
    j_excluded = j_opted = j_cooldown = 0
    for i in range(offer.shape[0]):
        base = customers[i] * n_offers
        for s in range(offer.shape[1]):
            o = offer[i, s]
            if o < 0:
                continue
            key = base + o
            window = not active[o]
            j_excluded, exclude = _walk(excluded, j_excluded, key)
            sensitive = forbidden_for_all[o]
            if needs_opt_in[o]:
                j_opted, opted = _walk(opted_in, j_opted, key)
                sensitive = sensitive or not opted
            j_cooldown, cooldown_hit = _walk(cooldown, j_cooldown, key)
            category = excluded_category[o]
            # in REASONS order, each reason counted on its own
            counts[0] += window
            counts[1] += exclude
            counts[2] += sensitive
            counts[3] += cooldown_hit
            counts[4] += category
            blocked = window or exclude or sensitive or cooldown_hit or category
            counts[5] += blocked
            counts[6] += 1
            out[i, s] = not blocked


def _member(keys: np.ndarray, sorted_keys: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Whether each key is in ``sorted_keys``, looking only at the chunk's key range."""
    local = _in_range(sorted_keys, lo, hi)
    if local.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    flat = np.ascontiguousarray(keys).ravel()
    out = np.empty(flat.size, dtype=bool)
    _merge_member(flat, local, out)
    return out.reshape(keys.shape)


@nb.njit(cache=True, nogil=True)
def _merge_member(keys, local, out):  # pragma: no cover - compiled
    # a chunk's keys arrive almost sorted (customers in order, offers in order within each)
    j = 0
    for i in range(keys.shape[0]):
        j, out[i] = _walk(local, j, keys[i])


def _keys(frame: pl.DataFrame, n_offers: int) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.int64)
    keys = (frame.get_column("c").cast(pl.Int64) * n_offers + frame.get_column("o").cast(pl.Int64))
    # a sort and a neighbour compare: numpy's hash-based unique is several times slower here
    ordered = np.sort(keys.to_numpy())
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def compile_rules(inputs: Inputs, rules: Rules, week: int, cats: OfferCategories
                  ) -> EligibilityRules:
    """Compile the scenario's rules against the validated inputs."""
    offers = inputs.offers
    n_offers = inputs.n_offers
    start = offers.get_column("start_week").fill_null(week).to_numpy()
    end = offers.get_column("end_week").fill_null(week).to_numpy()
    active = (start <= week) & (week <= end)

    sensitive = {normalize_category_name(c) for c in rules.sensitive_categories}
    sens_pairs = cats.pairs.filter(pl.col("category").is_in(list(sensitive)))
    is_sensitive = np.zeros(n_offers, dtype=bool)
    is_sensitive[sens_pairs.get_column("o").to_numpy()] = True
    policy = rules.sensitive_policy
    forbidden_for_all = is_sensitive if policy == "exclude" else np.zeros(n_offers, dtype=bool)
    needs_opt_in = is_sensitive if policy == "opt_in" else np.zeros(n_offers, dtype=bool)
    banned = {normalize_category_name(c) for c in rules.excluded_categories}
    excluded_category = np.zeros(n_offers, dtype=bool)
    excluded_category[cats.pairs.filter(pl.col("category").is_in(list(banned)))
                      .get_column("o").to_numpy()] = True

    empty = pl.DataFrame({"c": [], "o": []}, schema={"c": pl.Int32, "o": pl.Int32})
    excluded, opted = empty, empty
    if inputs.restrictions is not None:
        restr = inputs.restrictions.select("c", "category", "rule")
        excluded = (restr.filter(pl.col("rule") == "exclude")
                    .join(cats.pairs, on="category").select("c", "o"))
        need = sens_pairs.group_by("o").agg(pl.len().alias("need"))
        opted = (restr.filter(pl.col("rule") == "opt_in").unique(["c", "category"])
                 .join(sens_pairs, on="category")
                 .group_by(["c", "o"]).agg(pl.len().alias("have"))
                 .join(need, on="o").filter(pl.col("have") >= pl.col("need")).select("c", "o"))

    cooldown = empty
    if inputs.history is not None and rules.cooldown_weeks > 0:
        cooldown = inputs.history.filter(
            (pl.col("week") >= week - rules.cooldown_weeks) & (pl.col("week") < week)
        ).select("c", "o")

    compiled = EligibilityRules(
        n_offers=n_offers, active=active, forbidden_for_all=forbidden_for_all,
        needs_opt_in=needs_opt_in, excluded_keys=_keys(excluded, n_offers),
        opted_in_keys=_keys(opted, n_offers), cooldown_keys=_keys(cooldown, n_offers),
        excluded_category=excluded_category,
        attributes=compile_attribute_rules(inputs, rules, cats),
    )
    if compiled.attributes is not None:  # audited only where the scenario has such rules
        compiled.audit[ATTRIBUTE_REASON] = 0
    return compiled


def customer_caps(inputs: Inputs, rules: Rules, week: int) -> tuple[np.ndarray, dict[str, int]]:
    """Each customer's cap this week: ``max_offers_per_customer``, lowered by the frequency window.

    With ``max_offers_per_window = N`` over ``window_weeks = W``, her history rows in weeks
    ``week - W + 1 .. week - 1`` use up part of N. Returns the caps and an audit of how many
    customers the window limited.
    """
    caps = np.full(inputs.n_customers, rules.max_offers_per_customer, dtype=np.int64)
    audit = {"customers_limited_by_window": 0, "customers_at_window_cap": 0}
    if rules.max_offers_per_window is None:
        caps = np.minimum(caps, rules.max_offers_per_customer)
        return caps, audit
    window_room = np.full(inputs.n_customers, rules.max_offers_per_window, dtype=np.int64)
    if inputs.history is not None:
        recent = inputs.history.filter(
            (pl.col("week") > week - rules.window_weeks) & (pl.col("week") < week))
        sent = np.bincount(recent.get_column("c").to_numpy(), minlength=inputs.n_customers)
        window_room = np.maximum(window_room - sent, 0)
    limited = window_room < caps
    audit["customers_limited_by_window"] = int(limited.sum())
    audit["customers_at_window_cap"] = int((window_room == 0).sum())
    return np.minimum(caps, window_room), audit
