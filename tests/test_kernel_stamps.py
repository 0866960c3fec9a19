"""numba's on-disk cache checks a cached kernel against its own module's file only: a compiled
kernel that calls (or inlines) a kernel of another module keeps the old code of that one after
it changes, in every process that loads the cache (an editable checkout, an upgrade that leaves
the cache files, a shared ``solver.kernel_cache``). So every module whose kernels compile in
another module's carries a stamp of those modules' text: a change there fails this test until
the stamp is renewed, and the renewed stamp changes the module's own text, which the cache sees.
"""
from __future__ import annotations

import hashlib
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from numba.core.dispatcher import Dispatcher

import optimizer

MARK = "kernels compiled in from other modules, as of"


def _modules() -> list[ModuleType]:
    return [importlib.import_module(m.name)
            for m in pkgutil.walk_packages(optimizer.__path__, "optimizer.")
            if not m.name.endswith("__main__")]  # __main__ runs the command line


def _kernel_deps(module: ModuleType) -> list[str]:
    """The other modules whose kernels ``module``'s own kernels may compile in."""
    kernels = [v for v in vars(module).values() if isinstance(v, Dispatcher)]
    if not any(k.py_func.__module__ == module.__name__ for k in kernels):
        return []
    return sorted({k.py_func.__module__ for k in kernels} - {module.__name__})


def stamp(deps: list[str]) -> str:
    """The stamp of ``deps``' text (their files, in name order)."""
    digest = hashlib.sha256()
    for name in deps:
        digest.update(Path(importlib.import_module(name).__file__ or "").read_bytes())
    return digest.hexdigest()[:12]


def test_every_module_stamps_the_kernels_it_compiles_in():
    stale = []
    for module in _modules():
        deps = _kernel_deps(module)
        if not deps:
            continue
        line = f"# {MARK} {stamp(deps)}"
        if line not in Path(module.__file__ or "").read_text():
            stale.append(f"{module.__name__} (from {', '.join(deps)}): put '{line}' in it, "
                         "in place of its old stamp")
    assert not stale, ("renew the kernel stamps (python tools/renew_kernel_stamps.py):\n"
                       + "\n".join(stale))


def test_a_changed_kernel_module_changes_the_stamp(tmp_path, monkeypatch):
    """The stamp follows the text: the test above can fail."""
    import optimizer.solve.lagrangian.margins as margins

    before = stamp(["optimizer.solve.lagrangian.margins"])
    copy = tmp_path / "margins.py"
    copy.write_text(Path(margins.__file__ or "").read_text() + "\n# changed\n")
    monkeypatch.setattr(margins, "__file__", str(copy))
    assert stamp(["optimizer.solve.lagrangian.margins"]) != before
