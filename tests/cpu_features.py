"""The CPU features numpy detected (``AVX512F``, ``AVX2``, ``FMA3``...), from numpy 2's module
or numpy 1's (the floor CI step runs numpy 1.26)."""
from __future__ import annotations

try:
    from numpy._core._multiarray_umath import __cpu_features__ as CPU_FEATURES
except ImportError:  # numpy < 2
    from numpy.core._multiarray_umath import __cpu_features__ as CPU_FEATURES

__all__ = ["CPU_FEATURES"]
