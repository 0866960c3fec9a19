"""Nothing that rounds by CPU on the plan's path, measured with ``ast`` (docs/guarantees.md,
"Byte-identical reproducibility").

numpy picks its loops for ``exp``, ``log``, ``power``, ``tanh``, ``arctan``, ``cbrt``, ... by
CPU (AVX-512, AVX2, baseline) and they round otherwise in the last bit; BLAS products (``@``,
``np.dot``, ``np.linalg``, scipy's minimisers) follow the kernel OpenBLAS picks for the CPU. The
plan's path takes :mod:`optimizer.core.numerics` instead (the C library's scalar functions,
fixed-order products). This test walks every module of the package and flags:

- a numpy ufunc that is not exact or correctly rounded (``EXACT``: ``+ - * /``, ``sqrt``, which
  IEEE 754 rounds correctly on every CPU, ``square``, ``minimum``, ...). In a numba kernel
  numpy's ufuncs are numba's, which call the C library as core.numerics does (tested below):
  there only products are flagged;
- numpy's products and the functions built on flagged loops or BLAS (``PRODUCTS``),
  ``numpy.linalg``, ``emath``, ``fft`` and ``polynomial``; ``.dot()`` methods; ``@`` (BLAS for
  floats, in numba too);
- ``**`` and ``pow`` unless the exponent is the literal ``2``, ``-1`` or ``0.5`` (numpy's
  ``fast_scalar_power`` takes ``square``, ``reciprocal`` and ``sqrt`` for exactly these: an int
  ``3`` or a float ``2.0`` goes to the CPU-dependent ``power`` loop) or both operands are
  literals (Python arithmetic on constants); in numba kernels ``**`` is the C library's ``pow``;
- scipy outside ``scipy.sparse``'s matrices (compiled loops in a fixed order, no BLAS) and
  ``scipy.special``'s ufuncs (compiled scalar code); special's Python functions (``logsumexp``,
  ``softmax``) are numpy's ``exp`` and ``log``.

Every module is walked, none exempt: model, scoring and solve decide the plan; apps run them and
write the demo data the promises are tested on; check re-derives numbers and compares them with
tolerances (a last bit at a tolerance's edge would flip its verdict between CPUs, so it computes
the plan's bits); report, io and cli have no hit today and a new one is looked at. ``math`` (the
C library, as core.numerics) and polars' ``exp``, ``log``, ``log1p`` and ``pow`` (Rust's ``f64``
methods: calls of the C library, the same bits as core.numerics, tested below) pass.

``_ALLOWED`` lists each hit left, ``"module:function construct" -> (count, why)``: the test fails
for a new hit, for more of a listed one, and for a listed one that went away (so it shrinks).
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numba as nb
import numpy as np
import polars as pl
import scipy.special

from optimizer.core import numerics as nx
from tests.test_code_shape import PACKAGE, _compiled

# ufuncs that give the same bits on every CPU: IEEE 754's correctly rounded operations and exact ones
EXACT = frozenset("""
    add subtract multiply divide floor_divide remainder fmod divmod negative
    positive absolute fabs sqrt square reciprocal sign copysign minimum maximum fmin fmax floor
    ceil trunc rint heaviside ldexp frexp modf nextafter spacing signbit isnan isinf isfinite
    isnat equal not_equal less less_equal greater greater_equal logical_and logical_or
    logical_xor logical_not bitwise_and bitwise_or bitwise_xor invert bitwise_count left_shift
    right_shift gcd lcm conjugate
""".split())
# numpy's products (BLAS; in numba kernels too) and functions built on flagged loops
PRODUCTS = frozenset("""
    dot vdot inner tensordot einsum einsum_path matmul vecdot matvec vecmat cov corrcoef polyfit
    logspace geomspace sinc i0 kaiser
""".split())
NUMPY_MODULES = frozenset({"linalg", "emath", "fft", "polynomial", "lib"})
SAFE_EXPONENTS = {(int, 2), (int, -1), (float, 0.5)}

_SPARSE = "scipy.sparse products: _sparsetools' loops, row by row (no BLAS, no AVX, no cpuid)"
_EINSUM = ("the fixed-order product itself: einsum without optimize= is numpy's C loop at its "
           "build's baseline (no BLAS, not dispatched by CPU)")
_ALLOWED: dict[str, tuple[int, str]] = {
    "optimizer/core/numerics.py:fixed_dot numpy.einsum": (1, _EINSUM),
    "optimizer/core/numerics.py:fixed_matvec numpy.einsum": (1, _EINSUM),
    "optimizer/core/numerics.py:fixed_tdot numpy.einsum": (1, _EINSUM),
    "optimizer/apps/backtest.py:_bought @": (1, _SPARSE),
    "optimizer/scoring/affinity.py:AffinityModel._offer_price @": (1, _SPARSE),
    "optimizer/scoring/affinity.py:AffinityModel.components @": (3, _SPARSE),
    "optimizer/scoring/baselines.py:week_shares @": (2, _SPARSE),
    "optimizer/scoring/response.py:ResponseHistory.block_values @": (2, _SPARSE),
    "optimizer/scoring/response.py:response_history @": (2, _SPARSE),
    "optimizer/solve/lp.py:_dual_bound @": (1, _SPARSE),
    "optimizer/model/channels.py:ChannelData.patterns @": (
        1, "bool consent times int64 bits: an integer product, exact (numpy has no BLAS for ints)"),
    "optimizer/solve/lagrangian/channels.py:_transport_lp scipy.optimize.linprog": (
        1, "HiGHS: no BLAS linked; its .so has no AVX, FMA or cpuid: the same code on every CPU"),
    "optimizer/scoring/mle.py:_gradient.central **": (
        1, "a numpy float64 scalar: scalar maths calls the C library's pow, not the power loop"),
    "optimizer/check/base.py:<module> **": (
        1, "Python floats (a constant): CPython's float ** calls the C library's pow"),
    "optimizer/apps/simulate/report.py:_interval scipy.stats.t.ppf": (
        1, "the simulation summary's interval: printed, no plan or promised output reads it"),
}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Each imported name -> what it names (``np`` -> ``numpy``, ``linprog`` ->
    ``scipy.optimize.linprog``), local imports too."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _literal(node: ast.AST) -> tuple[type, object] | None:
    """``(type, value)`` of a number literal (``-1`` too), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand)
        return None if inner is None else \
            (inner[0], -inner[1] if isinstance(node.op, ast.USub) else inner[1])  # type: ignore
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return type(node.value), node.value
    return None


def _verdict(name: str, compiled: bool) -> str | None:
    """The construct to report for a reference to ``name`` (dotted), or None when it is safe."""
    parts = name.split(".")
    if parts[0] == "numpy" and len(parts) > 1:
        if parts[1] in NUMPY_MODULES:
            return name if parts[1] != "lib" or "scimath" in parts else None
        if parts[1] in PRODUCTS:
            return ".".join(parts[:2])
        if isinstance(ufunc := getattr(np, parts[1], None), np.ufunc):  # np.abs is absolute
            return None if ufunc.__name__ in EXACT or compiled else ".".join(parts[:2])
        return None
    if parts[0] == "scipy" and len(parts) > 2:
        if parts[1] == "sparse":
            return name if parts[2] in ("linalg", "csgraph") else None
        if parts[1] == "special":
            return None if isinstance(getattr(scipy.special, parts[2], None), np.ufunc) else name
        return name
    return None


class _Walker(ast.NodeVisitor):
    def __init__(self, aliases: dict[str, str]):
        self.aliases, self.scope, self.compiled = aliases, ["<module>"], [False]
        self.hits: Counter[str] = Counter()

    def _hit(self, what: str) -> None:
        self.hits[f"{'.'.join(self.scope[1:]) or self.scope[0]} {what}"] += 1

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        inside = self.compiled[-1] or (not isinstance(node, ast.ClassDef) and _compiled(node))
        self.compiled.append(inside)
        self.generic_visit(node)
        self.scope.pop()
        self.compiled.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

    def _dotted(self, node: ast.AST) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self._dotted(node)
        if name is None:
            if node.attr == "dot":
                self._hit(".dot()")
            self.generic_visit(node)
        elif (what := _verdict(name, self.compiled[-1])) is not None:
            self._hit(what)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.aliases and (what := _verdict(self.aliases[node.id],
                                                         self.compiled[-1])) is not None:
            self._hit(what)

    def _power(self, base: ast.AST, exponent: ast.AST) -> None:
        e = _literal(exponent)
        if not self.compiled[-1] and e not in SAFE_EXPONENTS and \
                (e is None or _literal(base) is None):
            self._hit("**")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.MatMult):
            self._hit("@")
        elif isinstance(node.op, ast.Pow):
            self._power(node.left, node.right)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.MatMult):
            self._hit("@")
        elif isinstance(node.op, ast.Pow):
            self._power(node.target, node.value)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "pow" and len(node.args) == 2 \
                and "pow" not in self.aliases:
            self._power(node.args[0], node.args[1])
        self.generic_visit(node)


def scan_with(root: Path, walker_of: Callable[[ast.Module], Any]) -> Counter[str]:
    """The hits of ``walker_of(tree)`` (an ``ast.NodeVisitor`` counting ``hits``) over every
    module under ``root``: ``"path:function construct"`` -> how many times."""
    hits: Counter[str] = Counter()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        walker = walker_of(tree)
        walker.visit(tree)
        name = path.relative_to(root.parent).as_posix()
        hits.update({f"{name}:{k}": v for k, v in walker.hits.items()})
    return hits


def scan(root: Path = PACKAGE) -> Counter[str]:
    """Every flagged construct of the modules under ``root``: ``"path:function construct"`` ->
    how many times (``<module>`` for module-level code; methods as ``Class.method``)."""
    return scan_with(root, lambda tree: _Walker(_aliases(tree)))


def test_scan_flags_what_rounds_by_cpu_and_nothing_else(tmp_path: Path) -> None:
    pkg = tmp_path / "optimizer"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "import numba as nb\nimport numpy as np\nimport scipy.optimize\n"
        "from numpy import log\nfrom scipy.special import logsumexp\n\n"
        "def f(x, a, b):\n"
        "    y = np.exp(x) + log(x) + np.tanh(x) + x ** 3 + x ** 2.0 + pow(x, 1.5) + 1.5 ** x\n"
        "    y **= 0.3\n"
        "    return a @ b + a.dot(b) + np.linalg.norm(y) + np.einsum('i,i->', a, b) + "
        "logsumexp(x) + scipy.optimize.minimize(f, x)\n\n"
        "@nb.njit\ndef k(x, a, b):\n    return np.exp(x) ** 1.7 + np.dot(a, b) + a @ b\n")
    (pkg / "good.py").write_text(
        "import math\nimport numpy as np\nimport polars as pl\nimport scipy.sparse as sp\n"
        "from scipy import special\nfrom optimizer.core import numerics as nx\n\n"
        "N = 2 ** 31 - 1024 ** 3\n\n"
        "def g(x, m):\n"
        "    y = np.sqrt(x) + x ** 2 + x ** 0.5 + x ** -1 + np.abs(x) + np.add.reduceat(x, [0])\n"
        "    y = y + math.exp(1.0) + nx.exp(x) + nx.power(x, 1.5) + special.expit(x)\n"
        "    return sp.csr_matrix(m).sum() + pl.col('v').exp().pow(1.5).log()\n")
    assert scan(pkg) == Counter({
        "optimizer/bad.py:f numpy.exp": 1, "optimizer/bad.py:f numpy.log": 1,
        "optimizer/bad.py:f numpy.tanh": 1, "optimizer/bad.py:f **": 5,
        "optimizer/bad.py:f @": 1, "optimizer/bad.py:f .dot()": 1,
        "optimizer/bad.py:f numpy.linalg.norm": 1, "optimizer/bad.py:f numpy.einsum": 1,
        "optimizer/bad.py:f scipy.special.logsumexp": 1,
        "optimizer/bad.py:f scipy.optimize.minimize": 1,
        # numba's exp and ** call the C library; its dot and @ call BLAS
        "optimizer/bad.py:k numpy.dot": 1, "optimizer/bad.py:k @": 1})


def test_nothing_on_the_plans_path_rounds_by_cpu() -> None:
    hits = scan()
    new = {k: n for k, n in hits.items() if k not in _ALLOWED}
    grown = {k: (n, _ALLOWED[k][0]) for k, n in hits.items() if k in _ALLOWED and n > _ALLOWED[k][0]}
    fewer = sorted(k for k, (n, _) in _ALLOWED.items() if hits.get(k, 0) < n)
    assert not new, (
        f"rounds by CPU: {new}; on the plan's path use optimizer.core.numerics (exp, log, log1p, "
        "expm1, logaddexp, power, fixed_dot, fixed_matvec, fixed_tdot), or, where provably off "
        "the path or exact, list it in _ALLOWED with why")
    assert not grown, f"listed constructs grew (now, listed): {grown}"
    assert not fewer, f"fewer than listed now, lower or drop them in _ALLOWED: {fewer}"


def _sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.uniform(-30, 30, 200_000), rng.uniform(1e-3, 50, 200_000)


def test_numba_kernels_call_the_c_library_as_core_numerics() -> None:
    # with Intel's SVML installed, numba lets LLVM vectorize these calls into SVML's own loops
    # (core.numerics' ufuncs too): the exemption of numba kernels above would not hold
    assert not nb.config.USING_SVML

    @nb.njit(cache=False)
    def kernel(x, y):  # pragma: no cover - compiled
        return np.exp(x), np.log(y), np.log1p(y), np.expm1(x), y ** (x / 10), y ** 1.7

    x, y = _sample()
    want = (nx.exp(x), nx.log(y), nx.log1p(y), nx.expm1(x), nx.power(y, x / 10), nx.power(y, 1.7))
    assert [a.tobytes() == b.tobytes() for a, b in zip(kernel(x, y), want)] == [True] * 6


def test_polars_transcendentals_are_the_c_librarys() -> None:
    x, y = _sample()
    # the exponent x / 10 made by numpy: polars divides by a literal as a product by its inverse
    frame = pl.DataFrame({"x": x, "y": y, "e": x / 10}).select(
        pl.col("x").exp().alias("exp"), pl.col("y").log().alias("log"),
        pl.col("y").log1p().alias("log1p"), pl.col("y").pow(pl.col("e")).alias("pow"),
        pl.col("y").pow(1.7).alias("pow_literal"))
    want = {"exp": nx.exp(x), "log": nx.log(y), "log1p": nx.log1p(y),
            "pow": nx.power(y, x / 10), "pow_literal": nx.power(y, 1.7)}
    assert {k: frame.get_column(k).to_numpy().tobytes() == v.tobytes()
            for k, v in want.items()} == dict.fromkeys(want, True)
