"""What every command of the command line prints with: the error console, literal text (names,
IDs and paths never read as markup) and the one way a command fails (see :mod:`optimizer.cli`).
"""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from optimizer.core.errors import describe, exit_code

err_console = Console(stderr=True)


def _lit(value: Any, style: str = "") -> Text:
    """``value`` as literal terminal text: no markup, no emoji codes, no highlighting."""
    return Text(str(value), style=style)


def _fail(exc: BaseException) -> None:
    err_console.print(Text.assemble(("error:", "bold red"), " ", describe(exc)))
    sys.exit(exit_code(exc) or 1)
