"""Renew the kernel stamps that tests/test_kernel_stamps.py checks: each module whose numba
kernels compile in another module's gets the stamp of those modules' text (repeated until no
stamp moves, since a renewed stamp changes its module's text, which another may stamp).

    python tools/renew_kernel_stamps.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import test_kernel_stamps as stamps  # noqa: E402


def renew() -> list[str]:
    """Renew every stale stamp; returns the modules renewed, in order."""
    renewed: list[str] = []
    moved = True
    while moved:
        moved = False
        for module in stamps._modules():
            deps = stamps._kernel_deps(module)
            if not deps:
                continue
            line = f"# {stamps.MARK} {stamps.stamp(deps)}"
            path = Path(module.__file__ or "")
            text = path.read_text()
            if line in text:
                continue
            if stamps.MARK in text:
                text = re.sub(r"# " + re.escape(stamps.MARK) + r" [0-9a-f]{12}", line, text)
            else:
                text = text.replace("from __future__ import annotations\n\n",
                                    f"from __future__ import annotations\n\n{line}\n", 1)
            path.write_text(text)
            renewed.append(module.__name__)
            moved = True
    return renewed


if __name__ == "__main__":
    for name in renew():
        print("renewed", name)
