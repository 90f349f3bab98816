"""``exp``, ``log`` and ``log1p`` of ``fastloss.kernels.vmath`` on the CUDA target.

Importing this module registers CUDA implementations of the three functions (and of the CPU's
specialised ``exp_nonpos``, ``exp2_nonpos`` and ``log1p_unit``, which are the general functions
here, ``exp2_nonpos(y)`` being ``exp(y ln 2)``), so that a point function written once with
``from fastloss.kernels.vmath import exp, log, log1p`` compiles for both targets: the CPU
overloads in ``kernels/vmath.py`` are vectorisable polynomials, these are
``math.exp``/``math.log``/``math.log1p``, which numba-cuda lowers to libdevice
(``__nv_expf``, ``__nv_logf``, ``__nv_log1pf`` and their float64 versions; float32 stays
float32; CUDA documents at most 2 ulps for ``expf`` and 1 ulp for the others). The
implementations are compiled with ``fastmath=False`` whatever the caller's flags: with fast-math
numba-cuda would pick ``__nv_fast_expf``/``__nv_fast_logf`` for float32
(``ex2.approx``/``lg2.approx``, whose error grows with ``|x|``: ``2 + 1.17 |x|`` ulps for
``__expf`` per the CUDA documentation). Checked in the PTX: 80 instructions for ``exp(x) +
log(x)`` in float32 this way, 25 with fast-math.

Import it only on the GPU path: it imports ``numba.cuda``. Under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the import works and registers nothing that is used: the simulator
runs ``cuda.jit`` device code as Python (which calls the Python bodies of the functions, i.e.
NumPy) and calls ``@njit`` functions through their CPU dispatcher (the CPU overloads).
"""

import math

import numpy as np
from numba import cuda  # noqa: F401  (makes sure the CUDA target is registered)
from numba.cuda import types
from numba.cuda.extending import overload

from ..softmax import exp_shifted
from ..vmath import exp, exp2_nonpos, exp_nonpos, log, log1p, log1p_unit

__all__ = ["exp", "exp2_nonpos", "exp_nonpos", "exp_shifted", "log", "log1p", "log1p_unit"]


def _accepts(x):
    return isinstance(x, (types.Float, types.Integer))


_LN2 = math.log(2.0)

# precise libdevice functions even when the calling point function uses fast-math
_OPTIONS = {"fastmath": False}


@overload(exp, target="cuda", jit_options=_OPTIONS)
def _cuda_exp(x):
    if _accepts(x):
        return lambda x: math.exp(x)
    return None


@overload(log, target="cuda", jit_options=_OPTIONS)
def _cuda_log(x):
    if _accepts(x):
        return lambda x: math.log(x)
    return None


@overload(log1p, target="cuda", jit_options=_OPTIONS)
def _cuda_log1p(x):
    if _accepts(x):
        return lambda x: math.log1p(x)
    return None


# The CPU's specialised variants are the general functions here: libdevice has no cheaper ones.
@overload(exp_nonpos, target="cuda", jit_options=_OPTIONS)
def _cuda_exp_nonpos(x):
    if _accepts(x):
        return lambda x: math.exp(x)
    return None


@overload(exp2_nonpos, target="cuda", jit_options=_OPTIONS)
def _cuda_exp2_nonpos(x):
    if _accepts(x):
        ln2 = np.float32(_LN2) if x == types.float32 else _LN2  # float32 stays float32
        return lambda x: math.exp(x * ln2)
    return None


@overload(log1p_unit, target="cuda", jit_options=_OPTIONS)
def _cuda_log1p_unit(x):
    if _accepts(x):
        return lambda x: math.log1p(x)
    return None


# the softmax numerators exp(x - max): the CPU squares a half-range exp in float32 to reach 0
# below -104 without the general exp's range handling; libdevice's exp reaches it on its own
@overload(exp_shifted, target="cuda", jit_options=_OPTIONS)
def _cuda_exp_shifted(x):
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None
