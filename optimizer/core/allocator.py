"""Keep memory the solver frees for its own reuse instead of handing it back to the system.

numpy allocates every large array with ``mmap`` and returns it with ``munmap`` when freed, and
glibc trims the top of its heap after large frees. On virtual machines whose host reclaims the
guest's free memory (virtio-balloon free page reporting, common on cloud VMs), the next first touch
of such pages faults through the hypervisor: measured on the 2-core development VM, touching 2 GB
of fresh pages took 4.5-6.8 s, against 0.13 s for pages the process kept. Each solver pass
allocates and frees hundreds of MB of work arrays of about the same sizes as the pass before, so at
a million customers this cost seconds per run.

:func:`reusing_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (large blocks come from the heap,
whose freed space the next pass reuses) and ``M_TRIM_THRESHOLD`` high (the heap is not shrunk) for
the duration of a ``with`` block, then sets both back to glibc's default values and releases what
is free (``malloc_trim``); glibc's dynamic adjustment of its mmap threshold stays off for the rest
of the process (any explicit ``mallopt`` turns it off). The pipeline runs its solve and its bound
over all candidates in it: their passes repeat allocations of the same sizes. Loading and fitting
allocate arrays of ever different sizes, which a heap that never gives memory back leaves as holes
(measured: 9.1 GB peak instead of 7.7 GB on the affinity path at a million customers), so they run
without it.
Set ``OFFEROPT_KEEP_FREED_MEMORY=0`` to leave the allocator alone.

:func:`configure_polars_allocator` sets polars' own allocator (jemalloc) to hand freed pages back
in the background; the command line calls it before polars is first imported.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

# glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_TRIM_ABOVE = 2 ** 31 - 1  # mallopt takes an int: keep up to 2 GB free at the heap's top


def _glibc() -> ctypes.CDLL | None:
    if os.environ.get("OFFEROPT_KEEP_FREED_MEMORY", "1") == "0":
        return None
    return _load_glibc()


@functools.cache  # find_library runs ldconfig in a subprocess: once per process, not per stage
def _load_glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


# jemalloc's setting for polars: freed pages handed back by a background thread a second after
# they are freed (module docstring of configure_polars_allocator)
POLARS_MALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def configure_polars_allocator() -> None:
    """Let polars' jemalloc return freed pages while polars is idle; call before polars loads.

    polars allocates through its own jemalloc, which returns freed pages only while it is busy
    allocating: after loading ten million customers' history the process held 4.5 GB instead of
    2.0 GB all through the solve, where polars is idle. A background thread returns them a second
    after they are freed. (Returning them at once, dirty_decay_ms:0, did too, but made loading a
    million customers' scores 1.3 s slower: freed pages are faulted back in at a cost.) jemalloc
    reads ``_RJEM_MALLOC_CONF`` when polars is first loaded, so this runs before any polars
    import (the command line's entry); polars puts its own defaults in front, and a value set by
    the user wins. A no-op once polars is loaded.
    """
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_MALLOC_CONF)


@contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """Within the block, glibc keeps freed memory for reuse (module docstring); yields whether
    that took effect (``False`` off glibc, or with ``OFFEROPT_KEEP_FREED_MEMORY=0``)."""
    libc = _glibc()
    if libc is None:
        yield False
        return
    kept = (libc.mallopt(_M_MMAP_MAX, 0) == 1) & (libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE) == 1)
    if not kept:
        log.info("mallopt refused: the allocator returns freed memory as before")
    try:
        yield bool(kept)
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)

