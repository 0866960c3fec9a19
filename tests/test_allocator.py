"""The allocator settings (optimizer/core/allocator.py): the one the solve runs under, and polars'
allocator set by the command line's entry, never by importing the library."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from optimizer.core.allocator import (
    POLARS_MALLOC_CONF,
    release_freed_memory,
    reusing_freed_memory,
)

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


def test_release_opt_out_returns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFEROPT_KEEP_FREED_MEMORY", "0")
    assert release_freed_memory() is False


@pytest.mark.skipif(not _GLIBC, reason="malloc_trim is glibc's")
def test_release_hands_back_small_freed_arrays() -> None:
    # in a fresh process: every other one of 200 arrays of 1 MB freed (below glibc's mmap
    # threshold once it has risen, so from the heap), leaving holes between arrays still in use
    # that glibc never trims by itself, the way the fit's freed arrays stayed resident
    code = (
        "import numpy as np\n"
        "from optimizer.core.allocator import release_freed_memory\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "big = np.ones(16 * 2**20 // 8); del big\n"  # raises glibc's dynamic mmap threshold
        "arrays = [np.ones(2**20 // 8) for _ in range(200)]\n"
        "kept = arrays[1::2]; del arrays\n"
        "before = rss(); released = release_freed_memory()\n"
        "print(int(released), before - rss())\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    released, freed = map(int, out.stdout.split()[-2:])
    assert released == 1 and freed > 50 * 2**20


def _fresh(code: str) -> str:
    """stdout of ``code`` in a fresh interpreter without ``_RJEM_MALLOC_CONF`` set."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def test_importing_the_library_changes_no_setting() -> None:
    # the whole library imported, then polars' allocator setting read: polars' own defaults
    # only (polars writes them at its import), not ours
    code = ("import os\n"
            "import optimizer.apps.pipeline, optimizer.check, optimizer.cli\n"
            "print(os.environ.get('_RJEM_MALLOC_CONF'))\n")
    assert "background_thread" not in _fresh(code)


def test_cli_entry_sets_polars_allocator_before_polars_loads() -> None:
    # the command line module loads no polars, so its entry runs before polars reads the setting
    code = ("import os, sys\n"
            "from optimizer import cli\n"
            "assert 'polars' not in sys.modules, 'optimizer.cli imports polars'\n"
            "sys.argv = ['offeropt', '--version']\n"
            "try:\n"
            "    cli.entry()\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(os.environ.get('_RJEM_MALLOC_CONF'))\n")
    assert POLARS_MALLOC_CONF in _fresh(code).splitlines()[-1]
