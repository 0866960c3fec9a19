"""Code shape: no module of the package over 500 lines, no function over 80 lines outside
compiled (numba) kernels, measured with ``ast``.

``_KNOWN`` lists what is still over the limits today, each at its present size; the test fails
for anything new over a limit and for a listed item that grew, and tells when a listed item
fell under its limit (so the list only shrinks).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "optimizer"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

# module or "module:function" -> lines today (issue 18: split these)
_KNOWN: dict[str, int] = {
}


def _compiled(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated by numba (``nb.njit``, ``numba.njit``, ``njit``, ``nb.jit`` ...)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = ast.unparse(target)
        if name.split(".")[-1] in {"njit", "jit", "vectorize", "guvectorize", "cfunc"}:
            return True
    return False


def measure(root: Path = PACKAGE) -> dict[str, int]:
    """Every module over ``MAX_MODULE_LINES`` and every non-compiled function over
    ``MAX_FUNCTION_LINES``, with its line count (a function's lines run from its ``def`` to
    its last line, decorators excluded)."""
    over: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            over[name] = lines
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _compiled(node):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    over[f"{name}:{node.name}"] = length
    return over


def test_measure_sees_long_modules_and_functions_but_not_kernels(tmp_path: Path) -> None:
    pkg = tmp_path / "optimizer"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (pkg / "long.py").write_text(f"def long():\n{body}\n" + "\n" * MAX_MODULE_LINES)
    (pkg / "kernel.py").write_text(f"import numba as nb\n\n@nb.njit(cache=True)\ndef k():\n{body}\n")
    (pkg / "short.py").write_text("def short():\n    return 1\n")
    assert measure(pkg) == {"optimizer/long.py": MAX_FUNCTION_LINES + 1 + MAX_MODULE_LINES,
                            "optimizer/long.py:long": MAX_FUNCTION_LINES + 1}


def test_no_module_or_function_over_the_limits() -> None:
    over = measure()
    new = {k: v for k, v in over.items() if k not in _KNOWN}
    grown = {k: (v, _KNOWN[k]) for k, v in over.items() if k in _KNOWN and v > _KNOWN[k]}
    fixed = sorted(k for k in _KNOWN if k not in over)
    assert not new, f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per " \
                    f"function: {new}"
    assert not grown, f"known long items grew (now, listed): {grown}"
    assert not fixed, f"now within the limits, take them off _KNOWN: {fixed}"
