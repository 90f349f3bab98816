"""Vectorisable ``exp``, ``log`` and ``log1p`` for the CPU kernels.

Since numba 0.62 there is no SVML: ``np.exp``/``np.log``/``math.log1p`` inside a ``prange`` loop
are scalar libm calls, and LLVM cannot vectorise a loop around an opaque call. These three
functions are written instead as plain float and integer arithmetic (range reduction, a minimax
polynomial, exponent bits set or read through a bitcast), which LLVM inlines and vectorises with
the rest of the loop body.

Usage, from any ``@njit`` function::

    from fastloss.kernels.vmath import exp, log, log1p

    @njit(**POINT_OPTIONS)
    def softplus(x):
        return log1p(exp(-abs(x))) + max(x, 0.0)

Types: a float32 argument gives a float32 result computed in float32 arithmetic (8 lanes per
256-bit register, the vector width LLVM prefers on AVX-512 machines); a float64 argument gives a
float64 result; an integer argument is converted to float64 first. Called from plain Python (as
the CUDA simulator runs device code) the functions return NumPy's value for the argument.
``kernels/cuda/vmath.py`` maps them to libdevice on the CUDA target.

Edge cases are NumPy's, never an exception: ``exp`` overflows to ``inf`` and underflows through
the subnormals to ``0``, ``exp(-inf) = 0``; ``log(0) = -inf``, ``log(x < 0) = nan``,
``log(inf) = inf``; ``log1p(-1) = -inf``, ``log1p(x < -1) = nan``, ``log1p(-0.0) = -0.0``; NaN in
gives NaN out.

Accuracy: largest error in ulps of the exact result, measured inside a fast-math ``prange``
kernel on an x86-64 machine with AVX-512 and FMA. float32: all 2**32 inputs, against the float64
libm functions rounded to float32 (which also agree with ours on every overflow, underflow, zero,
inf and NaN). float64: 14 million points (random bit patterns, uniform and log-uniform samples of
the interesting ranges, the thresholds), against ``np.longdouble``. ``tests/test_vmath.py``
asserts at most 1 ulp on a subset.

==========  ===============  ===========  ==================  ===========
function    float32 (ours)   float32      float64 (ours)      float64
                             (NumPy 2.4)                      (NumPy 2.4)
==========  ===============  ===========  ==================  ===========
``exp``     0.902            2.34         0.912               0.51
``log``     0.890            3.62         0.820               0.52
``log1p``   0.978            0.82         0.792               0.82
==========  ===============  ===========  ==================  ===========

(NumPy's float32 ``exp`` and ``log`` are its AVX-512 code; ours are closer to the exact result
than NumPy is, and at most 4 ulps from NumPy's float32 result, 1 ulp from its float64 result.)
Subnormal results of ``exp`` are within one ulp of the subnormal grid.

Numerical choices
-----------------
All functions are compiled with ``error_model="numpy"``, ``forceinline=True`` (LLVM's inliner
left the larger ``log1p`` as a call, which stops the loop from vectorising) and only the
``contract`` fast-math flag (FMA contraction), whatever flags the caller uses: the range
reductions depend on each operation being rounded as written, so ``reassoc`` must not touch
them. The fast-math flags are set per instruction, so inlining into a caller compiled with
``reassoc`` does not change these instructions. On a CPU without FMA the last bit can differ;
the bounds above hold with FMA, and the analysis below does not depend on it.

The polynomial coefficients are minimax for the relative error of the final result, derived
for this module with the Remez exchange algorithm in 60-digit ``mpmath`` arithmetic (weighted
equioscillation on a 4000-point Chebyshev grid, extrema refined by golden-section search), then
rounded to the working precision; the quoted bounds are the minimax errors before that
rounding (rounding the float32 coefficients raises them by at most 0.3 bits). For ``exp`` the
fitted function is ``(e**r - 1 - r) / r**2`` with weight ``r**2 / e**r``; for float32 ``log``,
``(log1p(f) - f + f**2/2) / f**3`` with weight ``f**3 / log1p(f)``; for float64 ``log``,
``T(z) = (2 atanh(s) - 2s) / s**3`` with weight ``s**3 / (2 atanh(s))``. Rounding errors of the
evaluation, not the approximations, dominate the figures above. The polynomials are evaluated
with Estrin's scheme (pairs ``c0 + c1 x`` combined with ``x**2``, ``x**4``) rather than Horner's:
the chain of dependent multiply-adds is about half as long, which is what limits a vectorised
loop here (measured in cache, one core: float64 ``exp`` 2.4 -> 1.9 ns per element, float32
``log`` 1.1 -> 0.9 ns).

``exp``
    ``n = rint(x / ln 2)`` is taken from the low bits of ``t = x * log2(e) + 1.5 * 2**p`` (``p``
    the mantissa width), which also gives ``n`` as an integer without a float-to-int conversion
    (undefined for NaN in LLVM). ``r = x - n ln 2`` uses ln 2 in two parts (Cody-Waite): the high
    part has few enough bits that ``n * ln2_hi`` is exact for every reachable ``n``, and
    ``x - n * ln2_hi`` is exact by Sterbenz's lemma; ``r`` is then rounded once, and what that
    rounding dropped (``r_lo``) is added back inside the polynomial. ``|r| <= 0.3466``.
    ``exp(r) = 1 + (r + (r**2 Q(r) + r_lo))`` with ``Q`` of degree 4 (float32; relative error
    ``2**-28.3``) or 9 (float64; ``2**-57.9``): the big term 1 is added last, so the rounding of
    the small part is scaled down. The result is ``p * 2**n1 * 2**n2`` with ``n1 = n >> 1``,
    ``n2 = n - n1``: both factors are normal numbers for every ``n`` from the underflow to the
    overflow threshold, so the first product is exact and the second rounds once, into the
    subnormals or to ``inf``, as IEEE arithmetic does. ``x`` is first clamped to a range a little
    wider than that of the finite results, so ``+-inf`` need no special case, and NaN passes
    through the arithmetic.
``log``
    Subnormal ``x`` is scaled by ``2**p`` first. ``x = 2**k m`` with ``m`` in
    ``[sqrt(1/2), sqrt(2))``: subtracting the bits of ``sqrt(1/2)`` from the bits of ``x`` and
    shifting gives ``k`` directly, and ``m`` is rebuilt from the bits; ``f = m - 1`` is exact,
    ``f`` in ``[-0.2929, 0.4142]``. ``log x = k ln 2 + log1p(f)`` is summed as
    ``hi + (small + k ln2_lo + e)``, where ``hi = k ln2_hi + f`` and ``e`` its rounding error
    (Fast2Sum: ``|k ln2_hi| > |f|`` unless ``k = 0``) and ``small = log1p(f) - f``, so the
    cancellation between ``k ln 2`` and ``f`` for ``k = +-1`` costs nothing and only ``small``
    and the final sum carry rounding errors.

    float32: ``small = f**2 (f P(f) - 1/2)``, ``P`` of degree 7 (relative error of ``log1p(f)``
    ``2**-27.4``). A pure polynomial avoids a division, which costs more than the extra
    multiply-adds.

    float64: a polynomial in ``f`` would need degree ~30, so ``s = f / (2 + f)`` (one division)
    and ``log1p(f) = 2 atanh(s) = 2s + s z T(z)``, ``z = s**2``, written with the identity
    ``2s = f - s f`` as ``f - (f**2/2 - s (f**2/2 + z T(z)))`` so that the exact ``f`` is the
    leading term; ``T`` of degree 6 on ``z <= 0.02944`` (relative error of ``log1p(f)``
    ``2**-59.5``).
``log1p``
    ``u = 1 + x`` rounded, with its rounding error ``c`` recovered exactly (Fast2Sum, larger
    operand first). ``u`` is reduced as in ``log`` (it is never subnormal for ``x > -1``). For
    ``k`` in ``{-1, 0, 1}`` (``x`` in ``[-0.65, 1.83)``) ``f = (1 + x) 2**-k - 1`` is computed
    from ``x`` itself as ``x s + (s - 1)``, ``s = 2**-k``: exact for ``k = 0`` (``f = x``: tiny
    ``x`` gives ``x`` back exactly) and ``k = -1``, and for ``k = 1`` its rounding error is kept
    (Fast2Sum); no correction for ``c`` is needed. Otherwise ``log1p(x) = log(u) + c / u``, the
    correction being ``c 2**-k / (1 + f)`` with ``1 / (1 + f)`` replaced by its Taylor
    polynomial of degree 3 (float32) or 4 (float64): ``|c 2**-k|`` is at most half an ulp of 1
    and ``|log1p(x)| > 1``, so that polynomial's relative error (under 2 %) costs under 0.02 ulp,
    and no division is needed.

Specialised variants
--------------------
For arguments known to lie in a range (the binary losses' ``log1p(exp(-|x|))``, log-cosh's
``exp(-2|d|)``):

``exp_nonpos``
    ``x <= 0``. float32 on the CPU: ``exp`` without the overflow and subnormal handling
    (one scaling by ``2**n``), ``x`` clamped at -80. float64 and the CUDA target: ``exp``.
``exp2_nonpos``
    ``2**y`` for ``y <= 0``. float32 on the CPU: ``n = round(y)`` by the shift trick,
    ``r = y - n`` exact, ``2**r`` by one polynomial of degree 6 on ``|r| <= 1/2`` (relative
    error ``2**-28.9``; no Cody-Waite reduction, since ``y`` needs no multiplication by
    ``log2 e``), ``y`` clamped at -115 (``2**-115``, never 0). Five operations fewer than
    ``exp_nonpos``: for a caller that forms ``y = -c x`` itself and needs ``e**(-c x)`` only to
    absolute accuracy (``1 + e``; log-cosh), the rounding of ``c x`` costing relative error
    ``|y| 2**-24``. float64 and the CUDA target: ``exp(y ln 2)``.
``log1p_unit``
    ``x`` in ``[0, 1]``. float32: ``x + x**2 U(x)``, ``U`` of degree 8 (relative error
    ``2**-27.5``; at most 1.85 ulps measured, near 1). float64: ``log1p``. A CPU-target
    overload like the others (an ``inline="always"`` one leaked into the CUDA target's typing
    in a process that had compiled it for the CPU).

N = 2*10**7 float32 log-cosh forward+backward, 2 cores (AVX2): about 35-39 ms with ``exp`` and
``log1p`` -> 21-26 ms with ``exp_nonpos`` and ``log1p_unit``; with ``exp2_nonpos`` and one log per
stage (``ElementwiseSpec.log_factor``) 16 ms.

Notes
-----
Compile-time options: see ``_IMPL_OPTIONS``. A caller with ``cache=True`` caches these functions
inside its own object code; numba does not track edits to this module (see NUMBA-NOTES.md,
``cache=True``), so bump the cache version after changing it.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

__all__ = ["exp", "exp2_nonpos", "exp_nonpos", "log", "log1p", "log1p_unit"]


# --------------------------------------------------------------------------------------------
# Python-level definitions: NumPy's scalar functions, without warnings. The CUDA simulator runs
# device code as Python and so lands here.


def exp(x):
    """Exponential of a scalar, ``e**x``; NumPy semantics (overflow gives ``inf``).

    Vectorisable inside ``@njit`` code for float32 and float64 (see the module docstring).
    """
    with np.errstate(all="ignore"):
        return np.exp(x)


def log(x):
    """Natural logarithm of a scalar; NumPy semantics (``log(0) = -inf``, ``log(x<0) = nan``).

    Vectorisable inside ``@njit`` code for float32 and float64 (see the module docstring).
    """
    with np.errstate(all="ignore"):
        return np.log(x)


def log1p(x):
    """``log(1 + x)`` of a scalar, accurate for small ``x``; NumPy semantics.

    Vectorisable inside ``@njit`` code for float32 and float64 (see the module docstring).
    """
    with np.errstate(all="ignore"):
        return np.log1p(x)


def exp_nonpos(x):
    """``e**x`` for ``x <= 0`` (or NaN); NumPy's value.

    Inside ``@njit`` code, float32 on the CPU: ``exp`` (same error) for ``x`` in ``[-80, 0]``
    without the overflow and subnormal handling, faster; below -80 (``-inf`` included) the
    result is ``exp(-80)`` (about ``2**-115.4``, never 0). Elsewhere ``exp``. For ``x > 0`` the
    result is unspecified.
    """
    with np.errstate(all="ignore"):
        return np.exp(x)


def exp2_nonpos(x):
    """``2**x`` for ``x <= 0`` (or NaN); NumPy's value.

    Inside ``@njit`` code, float32 on the CPU: one polynomial after an exact reduction, within
    1.5 ulps of ``2**x`` (1.12 measured) for ``x`` in ``[-115, 0]``; below -115 (``-inf``
    included) the result is ``2**-115`` (never 0). Elsewhere ``exp(x ln 2)``. For ``x > 0``
    the result is unspecified.
    """
    with np.errstate(all="ignore"):
        return np.exp2(x)


def log1p_unit(x):
    """``log(1 + x)`` for ``x`` in ``[0, 1]`` (e.g. ``x = exp(-y)``, ``y >= 0``); NumPy's value.

    Inside ``@njit`` code (CPU and CUDA), float32: one polynomial, no range reduction, no
    special cases, no bit manipulation (faster than ``log1p``; outside ``[0, 1]`` the result is
    unspecified, NaN gives NaN); float64: ``log1p``.
    """
    with np.errstate(all="ignore"):
        return np.log1p(x)


# --------------------------------------------------------------------------------------------
# Bit casts between a float and the signed integer of the same width.


@intrinsic
def _as_int(typingctx, x):
    """Reinterpret the bits of a float32/float64 as an int32/int64."""
    if x == types.float32:
        sig = types.int32(x)
    elif x == types.float64:
        sig = types.int64(x)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(signature.return_type.bitwidth))

    return sig, codegen


@intrinsic
def _as_float(typingctx, i):
    """Reinterpret the bits of an int32/int64 as a float32/float64."""
    if i == types.int32:
        sig = types.float32(i)
        lltype = ir.FloatType()
    elif i == types.int64:
        sig = types.float64(i)
        lltype = ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], lltype)

    return sig, codegen


@intrinsic
def held(typingctx, x):
    """``x`` itself, through ``llvm.arithmetic.fence``: the same bits, but a value LLVM does
    not fold back into a constant. A polynomial's coefficients held this way are computed once
    before a loop and kept in vector registers (or spilled beside it), instead of being
    rematerialised from the constant pool at every use: under the JIT's large code model each
    rematerialisation is an address load and a broadcast (measured: 13 broadcasts and 5
    address loads per 8 elements in the softmax numerators' loop)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        fence = builder.module.declare_intrinsic("llvm.arithmetic.fence", [value.type])
        return builder.call(fence, [value])

    return x(x), codegen


def order_key(v):
    """An integer whose signed order is the float ``v``'s order (a NaN with its sign bit clear
    above +inf, one with it set below -inf): integer max reductions vectorise, where a float
    max that lets NaN win does not."""
    raise NotImplementedError  # compiled only, see the overload


def from_order_key(k):
    """The float whose :func:`order_key` is ``k``."""
    raise NotImplementedError


_MAGNITUDE_32 = np.int32(0x7FFFFFFF)
_MAGNITUDE_64 = np.int64(0x7FFFFFFFFFFFFFFF)
_KEY_OPTIONS = {"error_model": "numpy", "fastmath": False, "forceinline": True}


@overload(order_key, target="cpu", jit_options=_KEY_OPTIONS)
def _order_key_overload(v):
    # a float's bits read as a signed integer order the non-negative floats; flipping the
    # magnitude bits of the negative ones reverses their order
    if v == types.float32:

        def key32(v):
            b = _as_int(v)
            return np.int32(b ^ np.int32((b >> np.int32(31)) & _MAGNITUDE_32))

        return key32
    if v == types.float64:
        return lambda v: _as_int(v) ^ ((_as_int(v) >> np.int64(63)) & _MAGNITUDE_64)
    return None


@overload(from_order_key, target="cpu", jit_options=_KEY_OPTIONS)
def _from_order_key_overload(k):
    if k == types.int32:
        return lambda k: _as_float(np.int32(k ^ np.int32((k >> np.int32(31)) & _MAGNITUDE_32)))
    if k == types.int64:
        return lambda k: _as_float(k ^ ((k >> np.int64(63)) & _MAGNITUDE_64))
    return None


# --------------------------------------------------------------------------------------------
# Constants. Every constant used in float32 code is a float32: numba would otherwise promote the
# arithmetic to float64. Integer arithmetic is promoted to int64 by numba whatever the operand
# types, so the float32 code casts each integer result back with np.int32 (_i4); LLVM then
# narrows the operation itself to 32 bits (twice the lanes). Computed in int64, the float32 code's
# integer operations cannot overflow (numba's signed arithmetic is `nsw`, overflow is poison);
# the float64 code is written so that they cannot either.

_f4 = np.float32
_i4 = np.int32

_LN2 = math.log(2.0)
_NAN = math.nan
_INF = math.inf

# float32
_F32_ZERO = _f4(0.0)
_F32_ONE = _f4(1.0)
_F32_HALF = _f4(0.5)
_F32_NAN = _f4(_NAN)
_F32_INF = _f4(_INF)
_F32_LOG2E = _f4(1.0 / _LN2)
_F32_LN2_HI = _f4(float.fromhex("0x1.62e4p-1"))  # 16 significant bits: n * hi exact, |n| < 256
_F32_LN2_LO = _f4(float.fromhex("0x1.7f7d1cp-20"))  # ln 2 - hi, rounded
_F32_SHIFT = _f4(1.5 * 2.0**23)
_F32_SHIFT_BITS = _i4(0x4B400000)  # bits of _F32_SHIFT
_F32_EXP_MAX = _f4(89.0)  # above log(FLT_MAX) = 88.72: exp overflows to inf
# The largest float32 whose exp is finite; every float32 above it overflows
_F32_EXP_OVERFLOW = _f4(88.72283172607422)
_F32_EXP_MIN = _f4(-104.0)  # below log(2**-150) = -103.97: exp rounds to 0
_F32_TINY = _f4(2.0**-126)  # smallest normal
_F32_TWO23 = _f4(2.0**23)
_F32_SQRT_HALF_BITS = _i4(0x3F3504F3)  # bits of sqrt(1/2) rounded to float32
_F32_MINUS_ONE = _f4(-1.0)
_I32_BIAS = _i4(127)
_I32_MANT = _i4(23)
_I32_ONE = _i4(1)
_I32_SUB_K = _i4(-23)
_I32_ZERO = _i4(0)
_I32_K_CLAMP = _i4(100)

# exp(r) = 1 + r + r**2 * Q(r), |r| <= 0.3466: minimax for the relative error, 2**-28.28.
_F32_EXP_Q0 = _f4(0.4999999403953552)
_F32_EXP_Q1 = _f4(0.1666652113199234)
_F32_EXP_Q2 = _f4(0.04166838899254799)
_F32_EXP_Q3 = _f4(0.008368715643882751)
_F32_EXP_Q4 = _f4(0.0013814602280035615)

# 2**r = 1 + r * P(r), |r| <= 1/2: minimax for the relative error (Lawson-weighted least squares
# on a Chebyshev grid), 2**-28.9.
_F32_EXP2_P1 = _f4(0.6931471824645996)
_F32_EXP2_P2 = _f4(0.24022647738456726)
_F32_EXP2_P3 = _f4(0.055503327399492264)
_F32_EXP2_P4 = _f4(0.009618427604436874)
_F32_EXP2_P5 = _f4(0.0013398817973211408)
_F32_EXP2_P6 = _f4(0.00015356125368271023)
_F32_EXP2_NONPOS_MIN = _f4(-115.0)  # 2**-115: normal, and 2**n below is too

# log1p(f) = f - f**2/2 + f**3 * P(f), f in [sqrt(1/2) - 1, sqrt(2) - 1]: minimax for the
# relative error, 2**-27.35.
_F32_LOG_P0 = _f4(0.3333333134651184)
_F32_LOG_P1 = _f4(-0.2500081956386566)
_F32_LOG_P2 = _f4(0.20001226663589478)
_F32_LOG_P3 = _f4(-0.16623356938362122)
_F32_LOG_P4 = _f4(0.14201757311820984)
_F32_LOG_P5 = _f4(-0.13160182535648346)
_F32_LOG_P6 = _f4(0.1276157796382904)
_F32_LOG_P7 = _f4(-0.07634499669075012)

# log1p(x) = x + x**2 * U(x), x in [0, 1]: minimax for the relative error (Lawson-weighted least
# squares on a Chebyshev grid), 2**-27.5.
_F32_L1U_0 = _f4(-0.4999993145465851)
_F32_L1U_1 = _f4(0.33330512046813965)
_F32_L1U_2 = _f4(-0.2495858520269394)
_F32_L1U_3 = _f4(0.1969539225101471)
_F32_L1U_4 = _f4(-0.15355369448661804)
_F32_L1U_5 = _f4(0.10680510848760605)
_F32_L1U_6 = _f4(-0.05766400322318077)
_F32_L1U_7 = _f4(0.020204348489642143)
_F32_L1U_8 = _f4(-0.003318420145660639)

# float64
_F64_LOG2E = 1.0 / _LN2
_F64_LN2_HI = float.fromhex("0x1.62e42fefa38p-1")  # 42 significant bits: n * hi exact, |n| < 2**11
_F64_LN2_LO = float.fromhex("0x1.ef35793c7673p-45")  # ln 2 - hi, rounded
_F64_SHIFT = 1.5 * 2.0**52
_F64_EXP_MAX = 710.0  # above log(DBL_MAX) = 709.78
# The largest float64 whose exp is finite; every float64 above it overflows
_F64_EXP_OVERFLOW = 709.782712893384
_F64_EXP_MIN = -746.0  # below log(2**-1075) = -745.13
_F64_TINY = 2.0**-1022
_F64_TWO54 = 2.0**54
_F64_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2) rounded to float64
_I64_K_CLAMP = 1000
_I64_ABS_MASK = 0x7FFFFFFFFFFFFFFF

# exp(r) = 1 + r + r**2 * Q(r), |r| <= 0.3466: minimax for the relative error, 2**-57.94.
_F64_EXP_Q0 = 0.5000000000000011
_F64_EXP_Q1 = 0.16666666666666413
_F64_EXP_Q2 = 0.04166666666653018
_F64_EXP_Q3 = 0.008333333333494435
_F64_EXP_Q4 = 0.0013888888943622486
_F64_EXP_Q5 = 0.00019841269506617866
_F64_EXP_Q6 = 2.4801493107681896e-05
_F64_EXP_Q7 = 2.7557586356439826e-06
_F64_EXP_Q8 = 2.763024497312883e-07
_F64_EXP_Q9 = 2.500006144722566e-08

# 2 atanh(s) = 2s + s * z * T(z), z = s**2 <= 0.029437: minimax for the relative error of
# log1p(f), 2**-59.50. (The Taylor coefficients of T are 2/3, 2/5, 2/7, ...)
_F64_LOG_T0 = 0.6666666666666734
_F64_LOG_T1 = 0.39999999999416375
_F64_LOG_T2 = 0.2857142874201507
_F64_LOG_T3 = 0.22222198610832808
_F64_LOG_T4 = 0.18183562402444106
_F64_LOG_T5 = 0.153140989061743
_F64_LOG_T6 = 0.1479547444253339


# --------------------------------------------------------------------------------------------
# Implementations. Plain functions, compiled by the overloads below with _IMPL_OPTIONS. Every
# `if` is a simple select that LLVM turns into a blend; there is no loop and no call.

# Only FMA contraction: the reductions rely on every other operation being rounded as written
# (``reassoc`` would fold ``(t + SHIFT) - SHIFT`` to ``t``).
_IMPL_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}, "forceinline": True}


def _exp_f32(x):
    xc = x
    if xc > _F32_EXP_MAX:
        xc = _F32_EXP_MAX
    if xc < _F32_EXP_MIN:
        xc = _F32_EXP_MIN
    t = xc * held(_F32_LOG2E) + held(_F32_SHIFT)
    n = _i4(_as_int(t) - _F32_SHIFT_BITS)
    nf = t - held(_F32_SHIFT)
    a = xc - nf * held(_F32_LN2_HI)  # exact
    r = a - nf * held(_F32_LN2_LO)
    r_lo = (a - r) - nf * held(_F32_LN2_LO)  # what the rounding of r dropped
    r2 = r * r
    q = (held(_F32_EXP_Q0) + r * held(_F32_EXP_Q1)) + r2 * (
        (held(_F32_EXP_Q2) + r * held(_F32_EXP_Q3)) + r2 * held(_F32_EXP_Q4)
    )
    p = held(_F32_ONE) + (r + (r2 * q + r_lo))
    n1 = _i4(n >> _I32_ONE)
    s1 = _as_float(_i4((n1 + _I32_BIAS) << _I32_MANT))
    s2 = _as_float(_i4((n - n1 + _I32_BIAS) << _I32_MANT))
    # Overflow chosen by a select, not left to the last multiply: a caller's `exp(x) - y` may
    # contract that multiply into an FMA whose exact product never overflows (-inf, not NaN,
    # for exp(inf) - inf). A select keeps `inf - y` exact and still vectorises.
    return _F32_INF if x > _F32_EXP_OVERFLOW else (p * s1) * s2


_F32_EXP_NONPOS_MIN = _f4(-80.0)  # exp(-80) = 2**-115.4: normal, and 2**n below is too


def _exp_nonpos_f32(x):
    xc = x
    low = held(_F32_EXP_NONPOS_MIN)
    if xc < low:  # NaN passes
        xc = low
    shift = held(_F32_SHIFT)
    ln2_lo = held(_F32_LN2_LO)
    t = xc * held(_F32_LOG2E) + shift
    n = _i4(_as_int(t) - _F32_SHIFT_BITS)
    nf = t - shift
    a = xc - nf * held(_F32_LN2_HI)  # exact
    r = a - nf * ln2_lo
    r_lo = (a - r) - nf * ln2_lo
    r2 = r * r
    q01 = held(_F32_EXP_Q0) + r * held(_F32_EXP_Q1)
    q = q01 + r2 * ((held(_F32_EXP_Q2) + r * held(_F32_EXP_Q3)) + r2 * held(_F32_EXP_Q4))
    p = held(_F32_ONE) + (r + (r2 * q + r_lo))
    # n in [-116, 0] (a NaN x gives some n, and p NaN): 2**n is a normal number
    return p * _as_float(_i4(_i4(n + _I32_BIAS) << _I32_MANT))


def _exp2_nonpos_f32(x):
    xc = x
    if xc < _F32_EXP2_NONPOS_MIN:  # NaN passes
        xc = _F32_EXP2_NONPOS_MIN
    t = xc + _F32_SHIFT
    n = _i4(_as_int(t) - _F32_SHIFT_BITS)
    r = xc - (t - _F32_SHIFT)  # exact: |r| <= 1/2
    r2 = r * r
    p01 = held(_F32_EXP2_P1) + r * held(_F32_EXP2_P2)
    p23 = held(_F32_EXP2_P3) + r * held(_F32_EXP2_P4)
    p45 = held(_F32_EXP2_P5) + r * held(_F32_EXP2_P6)
    p = held(_F32_ONE) + r * (p01 + r2 * (p23 + r2 * p45))
    # n in [-115, 0] (a NaN x gives some n, and p NaN): 2**n is a normal number
    return p * _as_float(_i4(_i4(n + _I32_BIAS) << _I32_MANT))


def _exp_f64(x):
    xc = x
    if xc > _F64_EXP_MAX:
        xc = _F64_EXP_MAX
    if xc < _F64_EXP_MIN:
        xc = _F64_EXP_MIN
    t = xc * held(_F64_LOG2E) + held(_F64_SHIFT)
    # n from the low 12 bits of t (|n| < 2048), so that no integer operation below can overflow
    # (numba's signed arithmetic is `nsw`: an overflow, even for NaN, would be poison)
    n = ((_as_int(t) & 4095) ^ 2048) - 2048
    nf = t - held(_F64_SHIFT)
    a = xc - nf * held(_F64_LN2_HI)  # exact
    r = a - nf * held(_F64_LN2_LO)
    r_lo = (a - r) - nf * held(_F64_LN2_LO)  # what the rounding of r dropped
    # Q(r) by Estrin's scheme: a dependency chain of 4 multiply-adds instead of Horner's 9
    r2 = r * r
    r4 = r2 * r2
    q01 = held(_F64_EXP_Q0) + r * held(_F64_EXP_Q1)
    q23 = held(_F64_EXP_Q2) + r * held(_F64_EXP_Q3)
    q45 = held(_F64_EXP_Q4) + r * held(_F64_EXP_Q5)
    q67 = held(_F64_EXP_Q6) + r * held(_F64_EXP_Q7)
    q89 = held(_F64_EXP_Q8) + r * held(_F64_EXP_Q9)
    q = (q01 + r2 * q23) + r4 * ((q45 + r2 * q67) + r4 * q89)
    p = 1.0 + (r + (r2 * q + r_lo))
    n1 = n >> 1
    s1 = _as_float((n1 + 1023) << 52)
    s2 = _as_float((n - n1 + 1023) << 52)
    return _INF if x > _F64_EXP_OVERFLOW else (p * s1) * s2  # see _exp_f32


@register_jitable(**_IMPL_OPTIONS)
def _log_finish_f32(k, f, tail):
    """``k ln 2 + log1p(f) + tail``, float32, for ``f`` in [sqrt(1/2) - 1, sqrt(2) - 1].

    ``log1p(f) = f + f**2 (f P(f) - 1/2)``. The two large terms ``k ln2_hi`` and ``f`` are added
    with their rounding error kept (Fast2Sum: ``|k ln2_hi| > |f|`` unless ``k = 0``), so the
    cancellation between them for ``k = -1`` and ``f > 0`` (or ``k = 1``, ``f < 0``) costs
    nothing; the rest is small and is rounded once more at the end.
    """
    kf = _f4(k)
    f2 = f * f
    f4 = f2 * f2
    p01 = held(_F32_LOG_P0) + f * held(_F32_LOG_P1)
    p23 = held(_F32_LOG_P2) + f * held(_F32_LOG_P3)
    p45 = held(_F32_LOG_P4) + f * held(_F32_LOG_P5)
    p67 = held(_F32_LOG_P6) + f * held(_F32_LOG_P7)
    p = (p01 + f2 * p23) + f4 * (p45 + f2 * p67)
    rest = f2 * (f * p - held(_F32_HALF)) + (kf * held(_F32_LN2_LO) + tail)
    hi = kf * held(_F32_LN2_HI) + f
    rest = rest + (f - (hi - kf * held(_F32_LN2_HI)))
    return hi + rest


@register_jitable(**_IMPL_OPTIONS)
def _log_finish_f64(k, f, tail):
    """``k ln 2 + log1p(f) + tail``, float64, for ``f`` in [sqrt(1/2) - 1, sqrt(2) - 1].

    ``log1p(f) = f - (f**2/2 - s (f**2/2 + z T(z)))``, ``s = f / (2 + f)``, ``z = s**2``; the
    terms are summed as in ``_log_finish_f32``.
    """
    kf = np.float64(k)
    s = f / (2.0 + f)
    z = s * s
    z2 = z * z
    t01 = held(_F64_LOG_T0) + z * held(_F64_LOG_T1)
    t23 = held(_F64_LOG_T2) + z * held(_F64_LOG_T3)
    t45 = held(_F64_LOG_T4) + z * held(_F64_LOG_T5)
    t = (t01 + z2 * t23) + (z2 * z2) * (t45 + z2 * held(_F64_LOG_T6))
    hfsq = 0.5 * (f * f)
    rest = (s * (hfsq + z * t) + (kf * held(_F64_LN2_LO) + tail)) - hfsq
    hi = kf * held(_F64_LN2_HI) + f
    rest = rest + (f - (hi - kf * held(_F64_LN2_HI)))
    return hi + rest


def _log_f32(x):
    xs = x
    k0 = _I32_ZERO
    if x < held(_F32_TINY):
        xs = x * held(_F32_TWO23)
        k0 = _I32_SUB_K
    ix = _as_int(xs)
    k = _i4(_i4(ix - _F32_SQRT_HALF_BITS) >> _I32_MANT)
    f = _as_float(_i4(ix - _i4(k << _I32_MANT))) - held(_F32_ONE)
    y = _log_finish_f32(_i4(k + k0), f, held(_F32_ZERO))
    if x == held(_F32_INF):
        y = x
    if not (x >= held(_F32_ZERO)):
        y = held(_F32_NAN)
    if x == held(_F32_ZERO):
        y = -held(_F32_INF)
    return y


def _log1p_f32(x):
    u = held(_F32_ONE) + x
    # the rounding error of 1 + x, exactly (Fast2Sum, larger operand first)
    c = x - (u - held(_F32_ONE))
    if not (x <= held(_F32_ONE)):
        c = held(_F32_ONE) - (u - x)
    iu = _as_int(u)
    k = _i4(_i4(iu - _F32_SQRT_HALF_BITS) >> _I32_MANT)
    f = _as_float(_i4(iu - _i4(k << _I32_MANT))) - held(_F32_ONE)
    # c / u = c 2**-k / (1 + f); past k = 100 the correction is far below an ulp
    kc = k
    if kc > _I32_K_CLAMP:
        kc = _I32_K_CLAMP
    s = _as_float(_i4(_i4(_I32_BIAS - kc) << _I32_MANT))  # 2**-k
    tail = (c * s) * (held(_F32_ONE) - f * (held(_F32_ONE) - f * (held(_F32_ONE) - f)))
    if k >= -1 and k <= 1:
        # f = (1 + x) 2**-k - 1 = x s + (s - 1) directly from x, with its rounding error
        # (nonzero only for x in [0.41, 0.5), where it is Fast2Sum with |s - 1| >= |x s|)
        xs = x * s
        f = xs + (s - held(_F32_ONE))
        tail = xs - (f - (s - held(_F32_ONE)))
    y = _log_finish_f32(k, f, tail)
    if x == held(_F32_INF):
        y = x
    if not (x >= held(_F32_MINUS_ONE)):
        y = held(_F32_NAN)
    if x == held(_F32_MINUS_ONE):
        y = -held(_F32_INF)
    if x == held(_F32_ZERO):
        y = x
    return y


def _log_f64(x):
    xs = x
    k0 = 0
    if x < _F64_TINY:
        xs = x * _F64_TWO54
        k0 = -54
    ix = _as_int(xs) & _I64_ABS_MASK  # sign dropped: no overflow below (x < 0 is nan anyway)
    k = (ix - _F64_SQRT_HALF_BITS) >> 52
    f = _as_float(ix - (k << 52)) - 1.0
    y = _log_finish_f64(k + k0, f, 0.0)
    if x == _INF:
        y = x
    if not (x >= 0.0):
        y = _NAN
    if x == 0.0:
        y = -_INF
    return y


def _log1p_f64(x):
    u = 1.0 + x
    c = x - (u - 1.0)
    if not (x <= 1.0):
        c = 1.0 - (u - x)
    iu = _as_int(u) & _I64_ABS_MASK
    k = (iu - _F64_SQRT_HALF_BITS) >> 52
    f = _as_float(iu - (k << 52)) - 1.0
    kc = k
    if kc > _I64_K_CLAMP:
        kc = _I64_K_CLAMP
    s = _as_float((1023 - kc) << 52)
    tail = (c * s) * (1.0 - f * (1.0 - f * (1.0 - f * (1.0 - f))))
    if k >= -1 and k <= 1:
        xs = x * s
        f = xs + (s - 1.0)
        tail = xs - (f - (s - 1.0))
    y = _log_finish_f64(k, f, tail)
    if x == _INF:
        y = x
    if not (x >= -1.0):
        y = _NAN
    if x == -1.0:
        y = -_INF
    if x == 0.0:
        y = x
    return y


# --------------------------------------------------------------------------------------------
# Overloads for the CPU target.


def _register(func, impl_f32, impl_f64):
    def via_float64(x):
        return func(np.float64(x))

    @overload(func, target="cpu", jit_options=_IMPL_OPTIONS)
    def _overload(x):
        if x == types.float32:
            return impl_f32
        if x == types.float64:
            return impl_f64
        if isinstance(x, types.Integer):
            return via_float64
        return None


_register(exp, _exp_f32, _exp_f64)
_register(log, _log_f32, _log_f64)
_register(log1p, _log1p_f32, _log1p_f64)


# log1p_unit: float32 by the polynomial; float64 (and other types) defer to log1p. The CUDA
# target maps both specialised functions to libdevice in kernels/cuda/vmath.py.


def _log1p_unit_f32(x):
    x2 = x * x
    x4 = x2 * x2
    u01 = held(_F32_L1U_0) + x * held(_F32_L1U_1)
    u23 = held(_F32_L1U_2) + x * held(_F32_L1U_3)
    u45 = held(_F32_L1U_4) + x * held(_F32_L1U_5)
    u67 = held(_F32_L1U_6) + x * held(_F32_L1U_7)
    u = (u01 + x2 * u23) + x4 * ((u45 + x2 * u67) + x4 * held(_F32_L1U_8))
    return x + x2 * u


def _log1p_unit_other(x):
    return log1p(x)


def _register_specialised(func, impl_f32, impl_other):
    """The CPU overload of a specialised variant: ``impl_f32`` for float32, ``impl_other`` (the
    general function) for other floats and integers."""

    @overload(func, target="cpu", jit_options=_IMPL_OPTIONS)
    def _overload(x):
        if x == types.float32:
            return impl_f32
        if isinstance(x, (types.Float, types.Integer)):
            return impl_other
        return None


def _exp_nonpos_other(x):
    return exp(x)


def _exp2_nonpos_other(x):
    return exp(x * _LN2)


_register_specialised(log1p_unit, _log1p_unit_f32, _log1p_unit_other)
_register_specialised(exp_nonpos, _exp_nonpos_f32, _exp_nonpos_other)
_register_specialised(exp2_nonpos, _exp2_nonpos_f32, _exp2_nonpos_other)
