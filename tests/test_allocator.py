"""The allocator setting the command line applies at start-up (optimizer/allocator.py)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from optimizer.allocator import retain_freed_memory

_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_opt_out_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFEROPT_KEEP_FREED_MEMORY", "0")
    assert retain_freed_memory() is False


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_freed_memory_is_reused_not_returned() -> None:
    # in a fresh process: a freed 64 MB array (numpy: one malloc above glibc's mmap threshold)
    # stays in the heap, so the process's resident memory does not drop when it is freed
    code = (
        "import numpy as np\n"
        "from optimizer.allocator import retain_freed_memory\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "assert retain_freed_memory()\n"
        "a = np.ones(8 * 2**20); held = rss(); del a\n"
        "print(held - rss())\n")
    released = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                  text=True).stdout.split()[-1])
    assert released < 16 * 2**20
