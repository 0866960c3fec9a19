"""One hierarchy of errors. Every message says what is wrong, where, how many, and how to fix it.

The CLI prints the message of any error and exits with the code :func:`exit_code` gives it (the
one table of exit codes, documented in the README and ``offeropt --help``):

====  ===========================================================================================
0     success
1     ``offeropt check``: the run breaks a rule
2     bad input: a table, the scenario, a ``--set`` or a path given (:class:`OptimizerError`)
3     the environment refuses: a folder cannot be read or written, the disk is full, a file size
      limit is hit, an I/O error (:class:`AccessError` and any :class:`OSError`)
4     out of memory: the run's estimate exceeds the memory it may use, or an allocation failed
      (:class:`MemoryLimitError`, :class:`MemoryError`)
70    internal error: an exception that is none of the above, a bug (the traceback is printed on
      stderr before the message; ``EX_SOFTWARE`` of sysexits.h), never mistaken for ``check``'s 1
130   interrupted (Ctrl-C or SIGTERM; :mod:`optimizer.core.interrupt`)
====  ===========================================================================================

Library callers catch the class they care about.
"""
from __future__ import annotations

import errno
import re
from typing import Any, Sequence

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_OUT_OF_MEMORY = 0, 1, 2, 3, 4
EXIT_INTERNAL = 70  # a bug: an exception no class above maps (sysexits.h EX_SOFTWARE)


class OptimizerError(Exception):
    """Base class of every error the optimizer raises on purpose (exit code 2 unless a subclass
    says otherwise through ``exit_code``)."""

    exit_code = EXIT_BAD_INPUT


class AccessError(OptimizerError):
    """The environment refuses what the run needs: a folder cannot be read or written, the disk
    is full, a file size limit is reached (exit code 3)."""

    exit_code = EXIT_ENVIRONMENT


class ClusterError(AccessError):
    """The Dask cluster the solver runs on cannot be reached, lacks workers, or lost a worker
    mid-solve (exit code 3; nothing is written)."""


class ScenarioError(OptimizerError):
    """The scenario TOML is missing, malformed, or names an unknown or invalid knob."""


class MemoryLimitError(OptimizerError):
    """The run's estimated memory exceeds what it may use, or the process's limits leave it too
    little to start (exit code 4)."""

    exit_code = EXIT_OUT_OF_MEMORY


class InputError(OptimizerError):
    """A table of the input folder breaks the data contract.

    Parameters
    ----------
    table: the table's name (``customers``, ``offers``, ...).
    column: the offending column, or ``None`` when the problem is the table itself.
    problem: what is wrong, in words a user can act on.
    sample: a few offending rows (dicts or tuples) to show the user.
    count: how many rows are affected, when known.
    """

    def __init__(
        self,
        table: str,
        column: str | None,
        problem: str,
        sample: Sequence[Any] | None = None,
        count: int | None = None,
    ) -> None:
        self.table = table
        self.column = column
        self.problem = problem
        self.sample = list(sample or [])[:5]
        self.count = count
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        message = f"bad input in {where}: {problem}"
        if count is not None:
            message += f" ({count} row{'s' if count != 1 else ''})"
        if self.sample:
            rows = "\n".join(f"    {row}" for row in self.sample)
            message += f"\n  sample rows:\n{rows}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its arguments (a Dask worker's error reaches the driver so)."""
        return (type(self), (self.table, self.column, self.problem, self.sample, self.count))


class InfeasibleError(OptimizerError):
    """The scenario's hard rules admit no plan (for example a budget below zero after scaling)."""


class SolverError(OptimizerError):
    """A solver failed in a way that leaves no usable plan."""


# what an operating-system error means to the user, by errno (the rest: its own strerror)
_OS_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "a file size limit was reached (ulimit -f?)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error (failing disk or network file system?)",
    errno.ELOOP: "a symbolic link loop",
}


def os_error(exc: BaseException) -> OSError | None:
    """``exc`` as an :class:`OSError`: itself, or the operating-system error that a polars or
    pyarrow error wraps (they report it as text: "... File too large (os error 27)")."""
    if isinstance(exc, OSError):
        return exc
    if type(exc).__module__.split(".")[0] in ("polars", "pyarrow"):
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found:
            number = int(found.group(1))
            return OSError(number, errno.errorcode.get(number, str(exc)))
    return None


def exit_code(exc: BaseException) -> int | None:
    """The documented exit code for an error reaching the command line (module docstring), or
    ``None`` for one that is a bug: the command line shows its traceback and exits
    :data:`EXIT_INTERNAL`."""
    if isinstance(exc, OptimizerError):
        return exc.exit_code
    if isinstance(exc, MemoryError):
        return EXIT_OUT_OF_MEMORY
    if os_error(exc) is not None:
        return EXIT_ENVIRONMENT
    return None


def describe_internal(exc: BaseException) -> str:
    """The message printed (after its traceback) for an error :func:`exit_code` does not map."""
    from optimizer import __version__

    return (f"internal error (a bug in offeropt {__version__}, not a problem of the inputs): "
            f"{type(exc).__name__}: {exc} (exit code {EXIT_INTERNAL}); please report it with the "
            "traceback above and the command line")


def describe(exc: BaseException) -> str:
    """The message printed for an error that :func:`exit_code` maps."""
    if isinstance(exc, OptimizerError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return ("out of memory: an allocation failed (the machine, a container limit or ulimit -v "
                "leaves the run too little memory); nothing was written. Lower "
                "solver.chunk_size or affinity.candidates_per_customer, or give it more memory")
    found = os_error(exc)
    if found is not None:
        where = " ".join(f"'{p}'" for p in (found.filename, found.filename2) if p)
        return (f"cannot read or write {where or 'a file'}: {os_problem(found)}; the earlier "
                "outputs are left as they were")
    return str(exc)


def os_problem(exc: BaseException) -> str:
    """What an operating-system error (or one wrapped by polars) means, with its errno name:
    "the disk is full [ENOSPC]"."""
    found = os_error(exc)
    if found is None:
        return str(exc)
    what = _OS_HINTS.get(found.errno or -1, found.strerror or str(found))
    return f"{what} [{errno.errorcode.get(found.errno or -1, 'errno ' + str(found.errno))}]"
