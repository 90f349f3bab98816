"""Scalar helpers for point functions, usable on the CPU and CUDA targets.

Numba types a Python float literal as float64, and float32 op float64 gives float64, which
would silently turn a float32 loss into float64 arithmetic. ``const(x, c)`` gives ``c`` in the
precision of ``x`` so point functions stay in their input's dtype.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss.kernels._jit import POINT_OPTIONS


def const(x, value):
    """Return ``value`` as a scalar of the same floating type as ``x``."""
    return type(x)(value) if isinstance(x, np.floating) else float(value)


@overload(const, target="generic", inline="always")
def _const_overload(x, value):
    if isinstance(x, types.Float):
        dtype = np.dtype(x.name)
        if dtype == np.float32:
            return lambda x, value: np.float32(value)
        return lambda x, value: np.float64(value)
    return None


@njit(**POINT_OPTIONS)
def sign(d):
    """torch's sign: -1, 0 or 1 in the precision of ``d``; 0 for NaN, as ``torch.sign``."""
    one = const(d, 1.0)
    return one if d > 0 else (-one if d < 0 else const(d, 0.0))
