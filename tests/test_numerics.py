"""optimizer.core.numerics' exp, log, log1p, expm1, logaddexp and power: the C library's scalar
functions (CPython's ``math`` calls the same ones), whatever numpy's SIMD dispatch, with numpy's
answers at the edges (NaN, infinities, outside the domain)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.core import numerics as nx

EDGES = np.array([-np.inf, -1e308, -745.2, -2.0, -1.0, -0.5, -1e-300, -0.0, 0.0, 1e-300, 0.5,
                  1.0, 2.0, 709.8, 1e308, np.inf, np.nan])


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "expm1"])
def test_one_argument_functions_are_the_c_librarys(name):
    x = np.random.default_rng(3).uniform(-30, 30, 20_000)
    x = np.abs(x) if name in ("log", "log1p") else x
    got = getattr(nx, name)(x)
    want = np.array([getattr(math, name)(v) for v in x])
    assert got.tobytes() == want.tobytes()  # bit for bit, element by element
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(getattr(nx, name)(EDGES), getattr(np, name)(EDGES),
                                   rtol=4e-16)  # NaN and infinities where numpy has them
        np.testing.assert_allclose(got, getattr(np, name)(x), rtol=4e-16)


def test_logaddexp_and_power_match_numpy_at_the_edges():
    x, y = np.meshgrid(EDGES, EDGES)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(nx.logaddexp(x, y), np.logaddexp(x, y), rtol=4e-16)
        np.testing.assert_allclose(nx.power(x, y), np.power(x, y), rtol=4e-16)
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 50, 10_000), rng.uniform(-3, 3, 10_000)
    assert nx.power(a, b).tobytes() == np.array([math.pow(u, v) for u, v in zip(a, b)]).tobytes()
    assert nx.logaddexp(3.0, 3.0) == 3.0 + math.log(2.0)
