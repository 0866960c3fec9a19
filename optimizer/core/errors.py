"""One hierarchy of errors. Every message says what is wrong, where, how many, and how to fix it.

The CLI turns any :class:`OptimizerError` into exit code 2 and prints its message; library callers
catch the class they care about.
"""
from __future__ import annotations

from typing import Any, Sequence


class OptimizerError(Exception):
    """Base class of every error the optimizer raises on purpose."""


class ScenarioError(OptimizerError):
    """The scenario TOML is missing, malformed, or names an unknown or invalid knob."""


class InputError(OptimizerError):
    """A table of the input folder breaks the data contract.

    Parameters
    ----------
    table: the table's name (``customers``, ``offers``, ...).
    column: the offending column, or ``None`` when the problem is the table itself.
    problem: what is wrong, in words a user can act on.
    sample: a few offending rows (dicts or tuples) to show the user.
    count: how many rows are affected, when known.
    """

    def __init__(
        self,
        table: str,
        column: str | None,
        problem: str,
        sample: Sequence[Any] | None = None,
        count: int | None = None,
    ) -> None:
        self.table = table
        self.column = column
        self.problem = problem
        self.sample = list(sample or [])[:5]
        self.count = count
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        message = f"bad input in {where}: {problem}"
        if count is not None:
            message += f" ({count} row{'s' if count != 1 else ''})"
        if self.sample:
            rows = "\n".join(f"    {row}" for row in self.sample)
            message += f"\n  sample rows:\n{rows}"
        super().__init__(message)


class InfeasibleError(OptimizerError):
    """The scenario's hard rules admit no plan (for example a budget below zero after scaling)."""


class SolverError(OptimizerError):
    """A solver failed in a way that leaves no usable plan."""
