"""The one reader of a run's ``manifest.json``: :func:`read_manifest` gives a typed
:class:`Manifest`, which ``check``, ``compare`` and the report (through
:class:`~optimizer.io.runview.RunView`), ``measure``, ``demo-outcomes``, the warm start and
``explain`` all read.

Reading errors keep their own types, so each command words them for its user:
``FileNotFoundError`` when the folder holds no manifest, ``OSError`` when it cannot be read,
``ValueError`` (``json.JSONDecodeError``, or :class:`ManifestError` when the JSON is not an
object) when it is not a manifest; a missing entry is a ``KeyError`` when it is asked for.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """The file is JSON, but not a manifest (not a JSON object)."""


@dataclass(frozen=True)
class DualPrices:
    """The manifest's ``dual_prices``: per offer (by ``offer_id`` as text) the price of its
    budget and of its ``max_customers``, and the global budget's price."""

    offer_id: tuple[str, ...]
    budget: tuple[float, ...]
    count: tuple[float, ...]
    global_budget: float = 0.0

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "DualPrices":
        """From the manifest's entry; ``KeyError`` when a list is missing, ``TypeError`` or
        ``ValueError`` when a price is not a number."""
        return cls(tuple(str(k) for k in saved["offer_id"]),
                   tuple(float(v) for v in saved["budget"]),
                   tuple(float(v) for v in saved["count"]),
                   float(saved.get("global_budget", 0.0)))

    def for_offers(self, offer_ids: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The budget and count prices of ``offer_ids`` (matched as text), in their order; an
        offer the run did not have gets 0."""
        by_id = dict(zip(self.offer_id, zip(self.budget, self.count)))
        pairs = [by_id.get(str(i), (0.0, 0.0)) for i in offer_ids]
        return (np.array([b for b, _ in pairs], dtype=float),
                np.array([c for _, c in pairs], dtype=float))


@dataclass(frozen=True)
class Manifest:
    """A run's manifest: ``data`` as written (docs/contract.md lists every entry), with typed
    access to what the tools read from it."""

    data: dict[str, Any]

    @property
    def scenario(self) -> dict[str, Any]:
        """The scenario the run used, as a dict (``KeyError`` when absent)."""
        scenario = self.data["scenario"]
        if not isinstance(scenario, dict):
            raise TypeError(f"'scenario' is {type(scenario).__name__}, not an object")
        return scenario

    @property
    def week(self) -> int:
        """The planning week."""
        return int(self.scenario["week"])

    @property
    def data_dir(self) -> Path:
        """The input folder the run read."""
        return Path(self.scenario["data"])

    @property
    def dual_prices(self) -> DualPrices:
        """The final prices (``KeyError`` when the manifest has none)."""
        return DualPrices.from_dict(self.data["dual_prices"])

    @property
    def customers_reached(self) -> int | None:
        """Customers the plan reached before the controls were withheld (the measurement's
        ``planned_customers_reached``), else the ones reached; None when neither is recorded."""
        reached = ((self.data.get("measurement") or {}).get("planned_customers_reached")
                   or self.data.get("customers_reached"))
        return None if reached is None else int(reached)


def read_manifest(run_dir: str | Path) -> Manifest:
    """The manifest of the run folder ``run_dir`` (errors: see the module docstring)."""
    data = json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST} does not hold a JSON object")
    return Manifest(data)


__all__ = ["MANIFEST", "DualPrices", "Manifest", "ManifestError", "read_manifest"]
