"""Channels: each assignment goes out on one channel its customer consented to (the optional
``channels`` table: channel_id, capacity, cost_per_contact; ``customer_channels``: customer_id,
channel_id).

With the tables, the plan decides a channel per chosen pair besides the pair itself:

- ``channel_consent``: a pair's channel is one its customer consented to (a customer with no
  consented channel gets nothing: :func:`channel_caps` sets her cap to 0 at build time);
- ``channel_capacity``: per channel, ``sum x[i, j, c] <= capacity[c]``;
- ``contact_budget``: ``sum cost_per_contact[c] x[i, j, c] <= rules.contact_budget``;
- the objective pays each contact: ``sum (value[i, j] - cost_per_contact[c]) x[i, j, c]``.

A plan of a problem with channels is a :class:`ChannelPlan`: the chosen masks of every plan
plus, per block, each chosen slot's channel index. The channel's part of a pair's reduced value
depends on the customer only, so priced by the Lagrangian it is a per-customer charge
(:mod:`optimizer.solve.lagrangian.channels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

import numpy as np

from optimizer.core.errors import ScenarioError
from optimizer.core.numerics import fixed_dot

if TYPE_CHECKING:
    import polars as pl

    from optimizer.model.problem import CandidateBlock


_PATTERN_TABLE = 16  # channels up to which charges are read off a table of consent patterns


@dataclass(frozen=True)
class ChannelData:
    """names: each ``channel_id`` (as a string); capacity: ``(n_channels,)`` contacts at most
    (``inf``: no cap); cost: ``(n_channels,)`` cost per contact; consent: ``(n_customers,
    n_channels)`` whether customer ``c`` consented to channel ``k``; contact_budget: cap on the
    plan's total contact cost (``inf``: none)."""

    names: list[str]
    capacity: np.ndarray
    cost: np.ndarray
    consent: np.ndarray
    contact_budget: float = float("inf")

    @property
    def n_channels(self) -> int:
        return int(self.capacity.shape[0])

    @cached_property
    def patterns(self) -> np.ndarray:
        """Each customer's consent pattern, ``(n_customers,)`` ``int64``: bit ``k`` set when she
        consented to channel ``k`` (made once, read by every plan's channel assignment)."""
        return self.consent @ (1 << np.arange(self.n_channels, dtype=np.int64))

    def charges(self, customers: np.ndarray, channel_price: np.ndarray | None,
                contact_price: float) -> tuple[np.ndarray, np.ndarray]:
        """Per customer, every channel's charge ``(1 + contact_price) * cost + channel_price``
        (``inf`` where she did not consent), ``(len(customers), n_channels)``, and her cheapest
        channel (lowest index among ties; -1 without consent)."""
        per = self._per_contact(channel_price, contact_price)
        charge = np.where(self.consent[customers], per[None, :], np.inf)
        best = np.argmin(charge, axis=1) if self.n_channels else np.zeros(len(customers), int)
        if self.n_channels:
            best = np.where(np.isfinite(charge[np.arange(len(customers)), best]), best, -1)
        return charge, best.astype(np.int64)

    def least_charges(self, customers: np.ndarray, channel_price: np.ndarray | None,
                      contact_price: float) -> np.ndarray:
        """Per customer, her cheapest consented channel's charge (:meth:`charges`; 0.0 without
        consent), read off a table of every consent pattern when there are few channels."""
        if self.n_channels > _PATTERN_TABLE:
            charge, best = self.charges(customers, channel_price, contact_price)
            return np.where(best >= 0, charge[np.arange(len(customers)), np.maximum(best, 0)],
                            0.0)
        per = self._per_contact(channel_price, contact_price)
        bits = (np.arange(1 << self.n_channels)[:, None] >> np.arange(self.n_channels)) & 1
        table = np.where(bits.astype(bool), per[None, :], np.inf).min(axis=1, initial=np.inf)
        table[0] = 0.0  # no consent: no channel, no charge (her cap is 0)
        return table[self.patterns[customers]]

    def _per_contact(self, channel_price: np.ndarray | None, contact_price: float
                     ) -> np.ndarray:
        price = channel_price if channel_price is not None else np.zeros(self.n_channels)
        return (1.0 + contact_price) * self.cost + price


class ChannelPlan(list):
    """A plan's chosen masks (one per block, as every plan) with ``channel``: per block a signed
    integer array shaped like its ``offer`` (:func:`slot_dtype`), the channel index of each
    chosen slot (-1 elsewhere)."""

    def __init__(self, masks: Sequence[np.ndarray], channel: list[np.ndarray]) -> None:
        super().__init__(masks)
        self.channel = channel


def slot_dtype(n_channels: int) -> type:
    """The smallest signed integer type holding channel indices and -1 (a plan's per-slot
    channels are as large as its candidate blocks)."""
    return np.int8 if n_channels < 1 << 7 else np.int16 if n_channels < 1 << 15 else np.int64


def plan_channels(chosen: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """The channel arrays of ``chosen`` (``None``: a plan without channels)."""
    return chosen.channel if isinstance(chosen, ChannelPlan) else None


def carry(plan: Sequence[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    """``masks`` (a subset of ``plan``'s pairs) with ``plan``'s channels, when it has them."""
    channel = plan_channels(plan)
    if channel is None:
        return masks
    return ChannelPlan(masks, [np.where(m, ch, -1) for m, ch in zip(masks, channel)])


def contact_cost(channels: ChannelData | None, chosen: Sequence[np.ndarray]) -> float:
    """The plan's total contact cost (0.0 without channels)."""
    channel = plan_channels(chosen)
    if channels is None or channel is None:
        return 0.0
    return fixed_dot(channels_used(channels, chosen).astype(float), channels.cost)


def channels_used(channels: ChannelData, chosen: Sequence[np.ndarray]) -> np.ndarray:
    """Contacts per channel of the plan (chosen slots with a channel)."""
    channel = plan_channels(chosen) or []
    used = [ch[m & (ch >= 0)] for m, ch in zip(chosen, channel)]
    flat = np.concatenate(used) if used else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=channels.n_channels).astype(np.int64)


def violations(channels: ChannelData, blocks: Sequence["CandidateBlock"],
               chosen: Sequence[np.ndarray], rtol: float, atol: float) -> dict[str, int]:
    """``channel_consent`` (chosen slots without a consented channel), ``channel_capacity``
    (channels over capacity) and ``contact_budget`` (1 when the contact cost exceeds it)."""
    channel = plan_channels(chosen)
    bad = 0
    for k, (block, mask) in enumerate(zip(blocks, chosen)):
        if channel is None:
            bad += int(mask.sum())
            continue
        rows, slots = np.nonzero(mask)
        ch = channel[k][rows, slots]
        ok = ch >= 0
        ok[ok] = channels.consent[block.customers[rows[ok]], ch[ok]]
        bad += int((~ok).sum())
    used = channels_used(channels, chosen)
    cost = fixed_dot(used.astype(float), channels.cost)
    return {"channel_consent": bad,
            "channel_capacity": int((used > channels.capacity).sum()),
            "contact_budget": int(cost > channels.contact_budget * (1 + rtol) + atol)}


def channel_data(channels: "pl.DataFrame | None", consent: "pl.DataFrame | None",
                 n_customers: int, contact_budget: float | None) -> ChannelData | None:
    """:class:`ChannelData` from the validated ``channels`` table (channels in its row order) and
    ``customer_channels`` (with the customer index ``c`` and channel index ``k``); ``None``
    without the tables (where ``rules.contact_budget`` is refused: there is no contact cost)."""
    if channels is None:
        if contact_budget is not None:
            raise ScenarioError("rules.contact_budget caps the contact cost of channels: it needs "
                                "the channels and customer_channels tables in the input folder")
        return None
    n = channels.height
    matrix = np.zeros((n_customers, n), dtype=bool)
    if consent is not None and consent.height:
        matrix[consent.get_column("c").to_numpy(), consent.get_column("k").to_numpy()] = True
    capacity = channels.get_column("capacity").cast(float).fill_null(np.inf).to_numpy()
    return ChannelData(names=[str(x) for x in channels.get_column("channel_id").to_list()],
                       capacity=capacity.astype(float).copy(),
                       cost=channels.get_column("cost_per_contact").cast(float).to_numpy()
                       .astype(float).copy(),
                       consent=matrix,
                       contact_budget=float("inf") if contact_budget is None
                       else float(contact_budget))


def channel_caps(channels: ChannelData | None, caps: np.ndarray,
                 audit: dict[str, int]) -> np.ndarray:
    """Each customer's cap, 0 for customers who consented to no channel (counted in the caps'
    audit as ``no_channel_consent``); ``caps`` as given without channels."""
    if channels is None:
        return caps
    none = ~channels.consent.any(axis=1)
    audit["no_channel_consent"] = int((none & (caps > 0)).sum())
    return np.where(none, 0, caps)
