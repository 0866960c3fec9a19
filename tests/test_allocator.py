"""The allocator setting the solve runs under (optimizer/core/allocator.py)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from optimizer.core.allocator import reusing_freed_memory

_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_opt_out_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFEROPT_KEEP_FREED_MEMORY", "0")
    with reusing_freed_memory() as kept:
        assert kept is False


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_freed_memory_is_kept_inside_and_released_after() -> None:
    # in a fresh process: a freed 64 MB array (numpy: one malloc, above glibc's mmap threshold)
    # stays resident inside the block, and is handed back when the block ends
    code = (
        "import numpy as np\n"
        "from optimizer.core.allocator import reusing_freed_memory\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "with reusing_freed_memory() as kept:\n"
        "    assert kept\n"
        "    a = np.ones(8 * 2**20); held = rss(); del a\n"
        "    inside = held - rss()\n"
        "print(inside, held - rss())\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    released_inside, released_after = map(int, out.stdout.split()[-2:])
    assert released_inside < 16 * 2**20
    assert released_after > 48 * 2**20
