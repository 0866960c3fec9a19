"""Ctrl-C (SIGINT) at any moment: the run stops, and what it had not committed is left undone.

Python turns SIGINT into :class:`KeyboardInterrupt` in the main thread, which unwinds the run and
lets every ``except BaseException``/``finally`` remove its temporary files. Two places need help:

- **Native solvers.** CP-SAT, by default, installs its own SIGINT handler for the length of a
  solve (the interrupt stops the search and is then forgotten) and resets SIGINT to the system
  default afterwards (the next Ctrl-C kills the process on the spot, leaving temporary folders).
  The polish turns that off (``catch_sigint_signal = False``) and runs the solve through
  :func:`run_interruptible`: the solve runs on a worker thread (it releases the GIL), the main
  thread waits for it, and a KeyboardInterrupt asks the solver to stop, waits for it, and goes on
  unwinding. :func:`keep_sigint_handler` puts back whatever handler a native call replaced, and
  :func:`import_held` imports a native module that is loaded mid-run with Ctrl-C held (an
  interrupt inside an extension's initialisation aborts the process).
- **The commit.** Swapping the run folder into place and replacing the history table are a few
  renames that must happen together or not at all. :func:`deferred_interrupt` holds a Ctrl-C that
  arrives meanwhile until they are done, then raises :class:`InterruptedAfterCommit` (a
  KeyboardInterrupt), so the run still exits 130 but says that its outputs were written.
"""
from __future__ import annotations

import importlib
import signal
import sys
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C arrived while the run's outputs were being committed: they were committed whole."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_interruptible(work: Callable[[], T], stop: Callable[[], Any]) -> T:
    """``work()`` on a worker thread, waited for by this one; on KeyboardInterrupt, ``stop()``
    is called, the worker is waited for, and the interrupt goes on. ``work`` must release the GIL
    in its long native call (CP-SAT's solve does) and end soon after ``stop()``."""
    if not _main_thread():  # only the main thread receives KeyboardInterrupt: nothing to gain
        return work()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            out["error"] = exc

    worker = threading.Thread(target=target, name="offeropt-solve", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except KeyboardInterrupt:
        stop()
        worker.join()
        # the interrupt's traceback keeps this frame: let go of the solver now, or it is
        # destroyed during interpreter exit, where CP-SAT's destructor aborts the process
        del work, stop
        raise
    if "error" in out:
        raise out["error"]
    return out["value"]


@contextmanager
def keep_sigint_handler() -> Iterator[None]:
    """Put the SIGINT handler back as it was if the body (a native library) replaced it."""
    if not _main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is not before and before is not None:
            signal.signal(signal.SIGINT, before)


@contextmanager
def deferred_interrupt(then_raise: type[KeyboardInterrupt] = InterruptedAfterCommit
                       ) -> Iterator[None]:
    """Hold a SIGINT that arrives in the body until the body is done, then raise
    ``then_raise`` (the body's effects stand). A KeyboardInterrupt already raised before the
    body started is not affected."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if pending:
        raise then_raise()


def import_held(name: str) -> ModuleType:
    """Import module ``name`` with Ctrl-C held until the import is done: an interrupt inside a
    native extension's initialisation (CP-SAT's, imported when the polish starts) aborts the
    process or leaves the module broken, instead of unwinding the run."""
    if name in sys.modules:
        return sys.modules[name]
    with deferred_interrupt(KeyboardInterrupt):
        return importlib.import_module(name)


__all__ = ["EXIT_INTERRUPTED", "InterruptedAfterCommit", "deferred_interrupt", "import_held",
           "keep_sigint_handler", "run_interruptible"]
