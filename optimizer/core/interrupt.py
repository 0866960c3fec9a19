"""Ctrl-C (SIGINT) or SIGTERM at any moment: the run stops, and what it had not committed is left
undone.

SIGTERM (``kill``, ``timeout``) is made to behave as Ctrl-C: while a command runs, the command
line installs :func:`terminate_as_interrupt`, whose handler raises :class:`Terminated` (a
KeyboardInterrupt), so everything below applies to it too and the command exits 130 as well.
Nothing is installed at import, and only on the main thread.

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
  A SIGTERM is held there likewise.
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
    """Ctrl-C (or SIGTERM) arrived while the run's outputs were being committed: they were
    committed whole."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (``kill``, ``timeout``): it unwinds the run as Ctrl-C does."""

    signum = signal.SIGTERM


def signal_name(exc: KeyboardInterrupt) -> str:
    """Which signal ended the run: "SIGTERM" or "Ctrl-C" (a plain KeyboardInterrupt)."""
    return "SIGTERM" if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM else "Ctrl-C"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the body, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
    thread, as Ctrl-C raises KeyboardInterrupt; the previous handler is put back afterwards. Off
    the main thread (where no handler can be installed) it does nothing."""
    if not _main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _held_signals() -> list[int]:
    """The signals an interrupt-holding section holds: SIGINT, and SIGTERM when it is turned into
    an interrupt (:func:`terminate_as_interrupt`; otherwise its handler is left alone)."""
    held: list[int] = [signal.SIGINT]
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        held.append(signal.SIGTERM)
    return held


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
    """Put the SIGINT and SIGTERM handlers back as they were if the body (a native library)
    replaced them."""
    if not _main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            if signal.getsignal(signum) is not handler and handler is not None:
                signal.signal(signum, handler)


@contextmanager
def deferred_interrupt(then_raise: type[KeyboardInterrupt] = InterruptedAfterCommit
                       ) -> Iterator[None]:
    """Hold a SIGINT (and a SIGTERM, while :func:`terminate_as_interrupt` is on) that arrives in
    the body until the body is done, then raise ``then_raise`` (the body's effects stand; its
    ``signum`` names the first signal held). A KeyboardInterrupt already raised before the body
    started is not affected."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    before = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum))
              for signum in _held_signals()}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if pending:
        exc = then_raise()
        exc.signum = pending[0]  # type: ignore[attr-defined]
        raise exc


def import_held(name: str) -> ModuleType:
    """Import module ``name`` with Ctrl-C held until the import is done: an interrupt inside a
    native extension's initialisation (CP-SAT's, imported when the polish starts) aborts the
    process or leaves the module broken, instead of unwinding the run."""
    if name in sys.modules:
        return sys.modules[name]
    with deferred_interrupt(KeyboardInterrupt):
        return importlib.import_module(name)


__all__ = ["EXIT_INTERRUPTED", "InterruptedAfterCommit", "Terminated", "deferred_interrupt",
           "import_held", "keep_sigint_handler", "run_interruptible", "signal_name",
           "terminate_as_interrupt"]
