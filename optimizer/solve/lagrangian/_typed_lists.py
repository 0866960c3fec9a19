"""Typed lists of 2-D arrays made by compiled code (the candidates' layout of :mod:`.critical`)."""
from __future__ import annotations

from typing import Sequence

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _list_of(first):  # pragma: no cover - compiled
    out = nb.typed.List()
    out.append(first)
    return out


@nb.njit(cache=True)
def _append(out, item):  # pragma: no cover - compiled
    out.append(item)


def typed_list(arrays: Sequence[np.ndarray], dtype: type) -> "nb.typed.List":
    """A typed List of 2-D C-contiguous ``arrays`` of ``dtype``, made by compiled code: a typed
    List built from Python compiles its methods in every process (1.2 s per solve for the two
    array types here), compiled code is cached."""
    if not arrays:  # no blocks: the rare case pays the compilation
        return nb.typed.List.empty_list(nb.types.Array(nb.from_dtype(np.dtype(dtype)), 2, "C"))
    out = _list_of(arrays[0])
    for item in arrays[1:]:
        _append(out, item)
    return out
