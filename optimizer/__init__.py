"""offeropt: customer-first weekly offer assignment under budgets, caps and privacy rules."""
import os as _os

__version__ = "0.1.0"

# polars allocates through its own jemalloc, which returns freed pages only while it is busy
# allocating: after loading ten million customers' history the process held 4.5 GB instead of
# 2.0 GB all through the solve, where polars is idle. A background thread returns them a second
# after they are freed. (Returning them at once, dirty_decay_ms:0, did too, but made loading a
# million customers' scores 1.3 s slower: freed pages are faulted back in at a cost.) jemalloc
# reads this when polars is first loaded, so it is set before any polars import; polars puts
# its own defaults in front, and a value set by the user wins.
# Under an address space limit (ulimit -v) the background thread cannot always be created, and
# jemalloc then printed "background thread creation failed" without end: no thread there.
try:
    import resource as _resource
    _limited = _resource.getrlimit(_resource.RLIMIT_AS)[0] != _resource.RLIM_INFINITY
except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
    _limited = False
_os.environ.setdefault("_RJEM_MALLOC_CONF", ("" if _limited else "background_thread:true,")
                       + "dirty_decay_ms:1000,muzzy_decay_ms:0")
