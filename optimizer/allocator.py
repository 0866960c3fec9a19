"""Keep memory the process frees for its own reuse instead of handing it back to the system.

numpy allocates every large array with ``mmap`` and returns it with ``munmap`` when freed, and
glibc trims the top of its heap after large frees. On virtual machines whose host reclaims the
guest's free memory (virtio-balloon free page reporting, common on cloud VMs), the next first
touch of such pages faults through the hypervisor: measured on the 2-core CI VM, touching 2 GB of
fresh pages took 4.5-6.8 s, against 0.13 s for pages the process kept. A solve pass allocates and
frees hundreds of MB of work arrays, so at a million customers this was a few seconds per run.

:func:`retain_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (large blocks come from the heap,
whose freed space is reused) and ``M_TRIM_THRESHOLD`` very high (the heap is not shrunk). Peak
memory is still what the run holds at its peak: freed blocks are reused, not added to. The
command line calls it once at start-up; library users choose for their own process. Set
``OFFEROPT_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_MAX = -4
_TRIM_ABOVE = 2 ** 31 - 1  # mallopt takes an int: 2 GB free at the heap's top is its most


def retain_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse; returns whether it took effect
    (``False`` off glibc, or when ``OFFEROPT_KEEP_FREED_MEMORY=0``)."""
    if os.environ.get("OFFEROPT_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = (mallopt(_M_MMAP_MAX, 0) == 1) & (mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE) == 1)
    if not done:
        log.info("mallopt refused: the allocator returns freed memory as before")
    return bool(done)
