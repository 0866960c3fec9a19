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

    Under an address space limit (ulimit -v) the background thread cannot always be created, and
    jemalloc then printed "background thread creation failed" without end: no thread there.
    """
    try:
        import resource
        limited = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        limited = False
    conf = POLARS_MALLOC_CONF
    if limited:
        conf = ",".join(p for p in conf.split(",") if not p.startswith("background_thread"))
    os.environ.setdefault("_RJEM_MALLOC_CONF", conf)


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


def release_freed_memory() -> bool:
    """Hand the memory glibc holds free back to the system (``malloc_trim``): after a stage
    that allocated arrays of ever different sizes (fitting), its freed small and mid-sized
    arrays stay in the heap and arenas, counted in the process's memory through every later
    stage. Returns whether anything was returned (False off glibc)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False



# --------------------------------------------------------------------------------------------------
# the limits the process runs under (light: read before polars or numba are imported)

# address space the process reserves before it reads any data: numba's LLVM, polars, OpenBLAS and
# the thread pools' stacks and malloc arenas (measured on 2 cores: 2.0 GB of ulimit -v failed in
# OpenBLAS, 2.5 GB ran a small demo; each further core adds a thread stack and an arena)
ADDRESS_SPACE_BASE = int(2.25 * 1024 ** 3)
ADDRESS_SPACE_PER_CPU = 160 * 1024 ** 2
# cgroup v2, then v1: the container's memory limit
CGROUP_MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
CGROUP_CPU_FILES = ("/sys/fs/cgroup/cpu.max",)  # v2 "QUOTA PERIOD"; v1 below
CGROUP_V1_CPU = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _rlimit(name: str) -> int | None:
    try:
        import resource
        soft = resource.getrlimit(getattr(resource, name))[0]
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def _read_number(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().split()
    except (OSError, UnicodeDecodeError):
        return None
    if not text or not text[0].isdigit():
        return None  # "max": no limit
    value = int(text[0])
    return value if value < (1 << 60) else None  # v1 writes a huge number for "no limit"


def cgroup_memory_limit() -> int | None:
    """The container's memory limit in bytes (cgroup v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``), ``None`` when there is none."""
    for path in CGROUP_MEMORY_FILES:
        value = _read_number(path)
        if value is not None:
            return value
    return None


def process_memory_limits() -> list[tuple[int, str]]:
    """Limits on the memory this process may use, in bytes, each with its source: the address
    space limit (``ulimit -v``) less what the process reserves before reading any data, the data
    segment limit (``ulimit -d``) and the container's cgroup limit."""
    limits = []
    address_space = _rlimit("RLIMIT_AS")
    if address_space is not None:
        floor = address_space_floor()
        limits.append((address_space - floor, f"the address space limit (ulimit -v "
                       f"{address_space // 1024}) less {floor / 1024 ** 3:.3g} GB reserved by "
                       "the libraries and threads"))
    data = _rlimit("RLIMIT_DATA")
    if data is not None:
        limits.append((data, f"the data segment limit (ulimit -d {data // 1024})"))
    cgroup = cgroup_memory_limit()
    if cgroup is not None:
        limits.append((cgroup, "the container's memory limit (cgroup)"))
    return limits


def address_space_floor() -> int:
    """Address space a run needs before it reads any data (see ``ADDRESS_SPACE_BASE``)."""
    return ADDRESS_SPACE_BASE + ADDRESS_SPACE_PER_CPU * usable_cpus()


def address_space_shortfall() -> str | None:
    """Why the address space limit (``ulimit -v``) is too small for any run, or ``None`` when it
    is not. Under a small limit the libraries abort the process (a Rust allocation failure) or
    print allocator warnings without end, so this is checked before they are loaded."""
    limit = _rlimit("RLIMIT_AS")
    floor = address_space_floor()
    if limit is None or limit >= floor:
        return None
    return (f"out of memory: the process's address space limit (ulimit -v {limit // 1024}, "
            f"{limit / 1024 ** 3:.3g} GB) is below the {floor / 1024 ** 3:.3g} GB that the "
            f"libraries and {usable_cpus()} threads reserve before any data is read; nothing was "
            "read or written. Raise or remove ulimit -v (to cap memory, use a cgroup limit or "
            "solver.memory_limit_gb, which count memory used, not address space reserved)")


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask (``taskset``, container cpusets), at most
    the cgroup's CPU quota (``cpu.max``, v1 ``cpu.cfs_quota_us``), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = None
    for path in CGROUP_CPU_FILES:
        try:
            with open(path, encoding="ascii") as handle:
                fields = handle.read().split()
            if len(fields) == 2 and fields[0] != "max":
                quota = float(fields[0]) / float(fields[1])
        except (OSError, ValueError, ZeroDivisionError):
            continue
    if quota is None:
        q, p = (_read_number(path) for path in CGROUP_V1_CPU)
        if q is not None and p:
            quota = q / p
    if quota is not None and quota > 0:
        cpus = min(cpus, max(1, int(-(-quota // 1))))  # a quota of 1.5 CPUs: 2 threads
    return max(1, cpus)
