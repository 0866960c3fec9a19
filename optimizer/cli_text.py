"""What every command of the command line prints with: the error console, literal text (names,
IDs and paths never read as markup) and the one way a command fails (see :mod:`optimizer.cli`).
"""
from __future__ import annotations

import math
import sys
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from optimizer.core.errors import EXIT_INTERNAL, describe, exit_code

err_console = Console(stderr=True)


def _lit(value: Any, style: str = "") -> Text:
    """``value`` as literal terminal text: no markup, no emoji codes, no highlighting."""
    return Text(str(value), style=style)


def _fail(exc: BaseException) -> None:
    err_console.print(Text.assemble(("error:", "bold red"), " ", describe(exc)))
    sys.exit(exit_code(exc) or EXIT_INTERNAL)


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that refuses NaN and infinity as a usage error (exit 2):
    click's range lets NaN through every bound (NaN compares false) and infinity through an
    open upper one, and the command then failed deep inside with a traceback."""

    name = "float range"  # its metavar, FLOAT RANGE, as click's

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
