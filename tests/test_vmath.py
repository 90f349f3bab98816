"""Tests of ``fastloss.kernels.vmath``: accuracy, special values, types, vectorisation, CUDA.

Every accuracy test calls the functions the way the kernels do: inside an
``@njit(**KERNEL_OPTIONS, parallel=True)`` ``prange`` loop, fast-math flags on. Errors are measured
in ulps of the exact result, taken from a reference that is far more precise than the result:
NumPy's float64 functions for float32, ``np.longdouble`` (x87, 64-bit mantissa) for float64. The
distance to NumPy's own result of the same dtype is checked too.
"""

import math
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings
import zlib

import numba
import numpy as np
import pytest
from numba import njit, prange

from fastloss.kernels import vmath
from fastloss.kernels._jit import KERNEL_OPTIONS, POINT_OPTIONS
from fastloss.kernels.vmath import exp, log, log1p

FUNCS = {"exp": exp, "log": log, "log1p": log1p}
NUMPY = {"exp": np.exp, "log": np.log, "log1p": np.log1p}

# Largest error against the exact result allowed, in ulps; the measured maxima are in the
# module docstring of vmath.py (float32 over all 2**32 inputs: at most 0.978).
MAX_ULPS = 1.0
# Largest distance to NumPy's result of the same dtype, in ulps: NumPy's own error plus ours.
# NumPy's float32 exp and log (its AVX-512 code) are up to 2.3 and 3.6 ulps off themselves;
# measured distance over 44 million float32 points: 3 (exp), 4 (log), 1 (log1p); float64: 1.
MAX_ULPS_FROM_NUMPY = {np.float32: 4.5, np.float64: 2.0}

# numba's disk cache does not see edits to vmath.py (a callee in another module): closing the
# kernels over a hash of its source gives them a new cache entry whenever it changes.
_VMATH_TOKEN = zlib.crc32(pathlib.Path(vmath.__file__).read_bytes())


def _make_map(fn, token):
    @njit(**KERNEL_OPTIONS, parallel=True)
    def kernel(x, out):
        _ = token
        for i in prange(x.size):
            out[i] = fn(x[i])

    return kernel


KERNELS = {name: _make_map(fn, _VMATH_TOKEN) for name, fn in FUNCS.items()}


def apply(name, x):
    out = np.empty_like(x)
    KERNELS[name](x, out)
    return out


# --------------------------------------------------------------------------------------------
# Reference and ulp measure


def _reference(name, x):
    ref_dtype = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        return NUMPY[name](x.astype(ref_dtype))


def ulp_errors(y, exact, dtype):
    """|y - exact| in ulps of ``dtype`` at ``exact`` (the subnormal ulp below the normals).

    Zero where ``exact`` is not finite or rounds out of ``dtype``'s finite range; those points
    are checked for the exact special value instead.
    """
    fi = np.finfo(dtype)
    _, e = np.frexp(exact)
    ulp = np.ldexp(np.ones_like(exact), np.maximum(e - (fi.nmant + 1), fi.minexp - fi.nmant))
    with np.errstate(all="ignore"):
        err = np.abs(y.astype(exact.dtype) - exact) / ulp
        finite = np.isfinite(exact) & np.isfinite(exact.astype(dtype))
    return np.where(finite, err, 0.0)


def check_against_numpy(name, x):
    """Assert the ulp bounds and identical non-finite and zero results; return the max error."""
    dtype = x.dtype.type
    y = apply(name, x)
    assert y.dtype == x.dtype
    exact = _reference(name, x)
    with np.errstate(all="ignore"):
        npy = NUMPY[name](x)
    err = ulp_errors(y, exact, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULPS, (
        f"{name}({x[worst]!r}) = {y[worst]!r}, exact {exact[worst]!r}: {err[worst]:.3f} ulps"
    )
    # points where NumPy's answer is nan, inf or zero: the same answer, sign of zero included
    special = ~np.isfinite(npy) | (npy == 0)
    assert np.array_equal(y[special], npy[special], equal_nan=True), x[special][
        (y[special] != npy[special]) & ~(np.isnan(y[special]) & np.isnan(npy[special]))
    ][:10]
    zero = npy == 0
    assert np.array_equal(np.signbit(y[zero]), np.signbit(npy[zero]))
    assert np.all(np.isfinite(y[~special])) and np.all(y[~special] != 0)
    fine = ~special
    dist = ulp_errors(y[fine], npy[fine].astype(exact.dtype), dtype)
    assert dist.max(initial=0.0) <= MAX_ULPS_FROM_NUMPY[dtype]
    return err[worst]


# --------------------------------------------------------------------------------------------
# Samples


def f32_bits(lo, hi, n=None):
    """float32 values from ``lo`` to ``hi`` evenly spaced in bit patterns: all of them, or about
    ``n``. A range across zero is taken as its two halves."""
    if lo < 0 < hi:
        half = None if n is None else n // 2
        return np.concatenate([f32_bits(lo, -0.0, half), f32_bits(0.0, hi, half)])
    negative = np.signbit(np.float32(lo)) or np.signbit(np.float32(hi))
    a, b = sorted(int(v) for v in np.abs(np.array([lo, hi], np.float32)).view(np.int32))
    step = 1 if n is None else max(1, (b - a) // n)
    x = np.arange(a, b + 1, step, dtype=np.int64).astype(np.int32).view(np.float32)
    return -x if negative else x


def f32_all(n):
    """About ``n`` float32 bit patterns evenly spaced over all of them, finite values only."""
    x = np.arange(0, 2**32, 2**32 // n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return x[np.isfinite(x)]


F32_SPECIAL = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0**-149, -(2.0**-149), 2.0**-126,
     np.finfo(np.float32).max, -np.finfo(np.float32).max],
    np.float32,
)  # fmt: skip
F64_SPECIAL = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0**-1074, -(2.0**-1074), 2.0**-1022,
     np.finfo(np.float64).max, -np.finfo(np.float64).max],
)  # fmt: skip


def f32_samples(name):
    big = np.finfo(np.float32).max
    parts = [f32_all(2_000_000), F32_SPECIAL]
    if name == "exp":
        parts += [
            f32_bits(88.0, 89.0),  # overflow threshold log(FLT_MAX) = 88.7228
            f32_bits(-87.0, -104.0, 500_000),  # subnormal results, underflow to 0 at -103.97
            f32_bits(-(2.0**-10), -1.0, 300_000),
            f32_bits(2.0**-10, 1.0, 300_000),
            f32_bits(-(2.0**-20), 2.0**-20, 200_000),
        ]
    elif name == "log":
        parts += [
            f32_bits(2.0**-149, 2.0**-126, 200_000),  # subnormal inputs
            f32_bits(0.5, 2.0, 1_000_000),
            f32_bits(0.70, 0.72),  # the reduction's boundary sqrt(1/2)
            f32_bits(1.40, 1.43),  # and sqrt(2)
            f32_bits(big / 2, big, 100_000),
            f32_bits(-(2.0**-149), -big, 10_000),  # negative: nan
        ]
    else:
        parts += [
            f32_bits(-1.0, -0.99),  # near the pole
            f32_bits(-0.99, -0.5, 200_000),
            f32_bits(-0.5, -(2.0**-10), 500_000),  # where the reduction is exact (k = -1, 0, 1)
            f32_bits(2.0**-10, 2.0, 500_000),
            f32_bits(-(2.0**-20), 2.0**-20, 200_000),  # log1p(x) = x, subnormals included
            f32_bits(1e30, big, 100_000),
            f32_bits(-1.0, -big, 10_000),  # below -1: nan
        ]
    return np.concatenate(parts).astype(np.float32)


def f64_samples(name):
    rng = np.random.default_rng(12345)
    x = rng.integers(0, 2**64, 500_000, dtype=np.uint64).view(np.float64)
    parts = [x[np.isfinite(x)], F64_SPECIAL]

    def uniform(lo, hi, n=200_000):
        return rng.uniform(lo, hi, n)

    def loguniform(lo_exp, hi_exp, n=200_000):
        return np.exp2(rng.uniform(lo_exp, hi_exp, n))

    if name == "exp":
        t_over, t_sub, t_zero = 709.782712893384, -708.3964185322641, -745.1332191019411
        parts += [
            uniform(-746.0, 710.0),
            uniform(709.0, 710.0),
            uniform(-746.0, -708.0),  # subnormal results, underflow
            uniform(-1.0, 1.0),
            loguniform(-60, -10),
            -loguniform(-60, -10),
            np.array([t_over, np.nextafter(t_over, 800), t_sub, np.nextafter(t_sub, -800), t_zero,
                      np.nextafter(t_zero, -800), np.nextafter(t_zero, 0)]),
        ]  # fmt: skip
    elif name == "log":
        parts += [
            loguniform(-1074, -1022),  # subnormal inputs
            uniform(0.5, 2.0),
            uniform(0.70, 0.72, 50_000),
            uniform(1.40, 1.43, 50_000),
            loguniform(1000, 1024),
            -loguniform(-10, 10, 10_000),
        ]
    else:
        parts += [
            -1.0 + loguniform(-53, -7),  # near the pole
            uniform(-1.0, -0.5),
            uniform(-0.5, 2.0),
            loguniform(-1074, -20),
            -loguniform(-1074, -20),
            loguniform(100, 1024),
            -1.0 - loguniform(-52, 10, 10_000),  # below -1: nan
        ]
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Accuracy


@pytest.mark.parametrize("name", FUNCS)
def test_float32_accuracy(name):
    check_against_numpy(name, f32_samples(name))


@pytest.mark.parametrize("name", FUNCS)
def test_float64_accuracy(name):
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is not extended precision here: no float64 reference")
    check_against_numpy(name, f64_samples(name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    """Edge cases give NumPy's answer exactly (nan, +-inf, +-0), never an exception."""
    fi = np.finfo(dtype)
    cases = {
        "exp": [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e6, -1e6, fi.max, -fi.max],
        "log": [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, -fi.smallest_subnormal, -fi.max],
        "log1p": [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -2.0, np.nextafter(dtype(-1), -2),
                  -np.inf, fi.smallest_subnormal, -fi.smallest_subnormal, -fi.max],
    }  # fmt: skip
    expected = {
        "exp": [np.nan, np.inf, 0.0, 1.0, 1.0, np.inf, 0.0, np.inf, 0.0],
        "log": [np.nan, np.inf, np.nan, -np.inf, -np.inf, 0.0, np.nan, np.nan, np.nan],
        "log1p": [np.nan, np.inf, np.nan, 0.0, -0.0, -np.inf, np.nan, np.nan, np.nan,
                  fi.smallest_subnormal, -fi.smallest_subnormal, np.nan],
    }  # fmt: skip
    for name, xs in cases.items():
        x = np.array(xs, dtype)
        y = apply(name, x)
        want = np.array(expected[name], dtype)
        with np.errstate(all="ignore"):
            assert np.array_equal(want, NUMPY[name](x), equal_nan=True)  # the table is NumPy's
        assert np.array_equal(y, want, equal_nan=True), (name, x, y)
        assert np.array_equal(np.signbit(y[y == 0]), np.signbit(want[want == 0])), (name, x, y)


def test_exact_values():
    for dtype in (np.float32, np.float64):
        assert apply("exp", np.zeros(3, dtype)).tolist() == [1.0] * 3
        assert apply("log", np.ones(3, dtype)).tolist() == [0.0] * 3
        tiny = np.array([1e-30, -1e-30, 2.0**-60], dtype)
        assert np.array_equal(apply("log1p", tiny), tiny)  # log1p(x) rounds to x


# --------------------------------------------------------------------------------------------
# Types, plain Python, use from point functions


@njit(**POINT_OPTIONS)
def _all_three(x):
    return exp(x), log(x), log1p(x)


@njit(**POINT_OPTIONS)
def _softplus(x):
    # the way a loss's point function uses them: log(1 + e**x), stable for large |x|
    return log1p(exp(-abs(x))) + (x if x > 0 else x - x)


@njit(**KERNEL_OPTIONS, parallel=True)
def _softplus_kernel(x, out):
    for i in prange(x.size):
        out[i] = _softplus(x[i])


@pytest.mark.parametrize(
    "value, result_type",
    [(np.float32(0.5), "float32"), (np.float64(0.5), "float64"), (np.int64(2), "float64")],
)
def test_result_types(value, result_type):
    """float32 in, float32 out (no float64 on the way); float64 and integers give float64."""
    got = _all_three(value)
    sig = next(s for s in _all_three.nopython_signatures if s.args[0] == numba.typeof(value))
    assert str(sig.return_type) == f"UniTuple({result_type} x 3)"
    for y, name in zip(got, FUNCS, strict=True):
        ref = NUMPY[name](np.float64(value))
        assert y == pytest.approx(ref, rel=1e-6 if result_type == "float32" else 1e-15)
    _softplus(value)
    sig = next(s for s in _softplus.nopython_signatures if s.args[0] == numba.typeof(value))
    assert str(sig.return_type) == result_type


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_point_function(dtype):
    x = np.linspace(-100, 100, 100_001).astype(dtype)
    out = np.empty_like(x)
    _softplus_kernel(x, out)
    ref = np.logaddexp(0.0, x.astype(np.float64 if dtype == np.float32 else np.longdouble))
    assert ulp_errors(out, ref, dtype).max() <= 3.0


def test_plain_python_calls():
    """As ordinary Python (the CUDA simulator's view): NumPy's values, no warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vmath.exp(np.float32(1.0)) == np.exp(np.float32(1.0))
        assert type(vmath.exp(np.float32(1.0))) is np.float32
        assert vmath.exp(1000.0) == math.inf and vmath.exp(-1000.0) == 0.0
        assert vmath.log(0.0) == -math.inf and math.isnan(vmath.log(-1.0))
        assert vmath.log1p(-1.0) == -math.inf and math.isnan(vmath.log1p(-2.0))
        assert vmath.log1p(1e-20) == 1e-20 and vmath.log(math.e) == 1.0


def test_integer_argument_promotes_to_float64():
    e, lg, l1 = _all_three(np.int64(1))
    assert e == math.exp(1.0) and lg == 0.0 and l1 == math.log(2.0)


# --------------------------------------------------------------------------------------------
# Vectorisation: no libm call left, vector arithmetic in the loop


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loop_is_vectorised(dtype):
    options = dict(KERNEL_OPTIONS, cache=False)  # inspect_llvm needs a compiled, not cached, one

    @njit(**options)
    def all_three(x, a, b, c):
        for i in range(x.size):
            a[i] = exp(x[i])
            b[i] = log(x[i])
            c[i] = log1p(x[i])

    x = np.ones(64, dtype)
    all_three(x, x.copy(), x.copy(), x.copy())
    llvm_ir = all_three.inspect_llvm(all_three.signatures[0])
    scalar = "float" if dtype == "float32" else "double"
    calls = [ln for ln in llvm_ir.splitlines() if " call " in ln and "kernels5vmath" in ln]
    assert not calls, "an implementation was not inlined: " + calls[0]
    for libm in ("@llvm.exp.", "@llvm.log.", "@expf", "@logf", "@log1p", "@exp(", "@log("):
        assert libm not in llvm_ir
    lanes = [f"<{n} x {scalar}>" for n in (2, 4, 8, 16)]
    assert any(lane in llvm_ir for lane in lanes), "the loop was not vectorised"


# --------------------------------------------------------------------------------------------
# CUDA target, under the simulator (in a subprocess: the simulator must be chosen before numba
# is imported)

_SIM_SCRIPT = """
import numpy as np
from numba import config, cuda, njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.vmath import exp, exp2_nonpos, log, log1p
import fastloss.kernels.cuda.vmath  # noqa: F401  (registers the CUDA overloads)

assert config.ENABLE_CUDASIM


@njit(**POINT_OPTIONS)
def point(x):
    return exp(x) + log(x) * log1p(x) + exp2_nonpos(-x)


@cuda.jit(device=True)
def device_point(x):
    return exp(x) + log(x) * log1p(x) + exp2_nonpos(-x)


@cuda.jit
def kernel(x, out, out_dev):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = point(x[i])
        out_dev[i] = device_point(x[i])


for dtype in (np.float32, np.float64):
    x = np.linspace(0.01, 20.0, 24).astype(dtype)
    out = np.zeros_like(x)
    out_dev = np.zeros_like(x)
    kernel[2, 16](x, out, out_dev)
    ref = np.exp(x) + np.log(x) * np.log1p(x) + np.exp2(-x)
    rtol = 4e-7 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(out, ref, rtol=rtol)
    np.testing.assert_allclose(out_dev, ref, rtol=rtol)
print("SIM-OK")
"""


def _run_script(tmp_path, source, env_extra):
    script = tmp_path / "script.py"  # a real file: cache=True needs one
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, **env_extra)
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )


def test_cuda_overloads_under_simulator(tmp_path):
    pytest.importorskip("numba.cuda")
    proc = _run_script(tmp_path, _SIM_SCRIPT, {"NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0 and "SIM-OK" in proc.stdout, proc.stdout + proc.stderr


# Compiling for the real target needs no GPU, only the CUDA toolkit's NVVM and NVRTC libraries
# (numba-cuda's [cu12]/[cu13] extras), except that numba-cuda asks the driver for the current
# device's compute capability whenever it compiles a device function (an @njit function or an
# overload called from a kernel): numba_cuda's CUDADispatcher.compile_device. Standing in for
# that query is enough for compile_ptx to work; without a toolkit the test skips.
_PTX_SCRIPT = """
import sys
import types as pytypes

from numba import cuda, float32, float64, njit

def trivial(a):
    a[0] = 1


try:
    cuda.compile_ptx(trivial, (float32[::1],), cc=(9, 0))
except Exception as exc:  # no NVVM / NVRTC
    print("NO-TOOLKIT", type(exc).__name__, exc)
    sys.exit(0)

import numba.cuda.dispatcher

numba.cuda.dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(
    compute_capability=(9, 0)
)

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.vmath import exp, exp2_nonpos, log, log1p
import fastloss.kernels.cuda.vmath  # noqa: F401


@njit(**POINT_OPTIONS)
def point(x):
    return exp(x) + log(x) * log1p(x) + exp2_nonpos(-x)


def kernel(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = point(x[i])


for ty in (float32, float64):
    ptx, _ = cuda.compile_ptx(kernel, (ty[::1], ty[::1]), cc=(9, 0))
    if ty == float32:
        assert ".f64" not in ptx  # float32 stays float32 on the GPU too
        assert "lg2.approx" not in ptx  # precise libdevice logf despite the caller's fast-math
print("PTX-OK")
"""


def test_cuda_compile_ptx_without_gpu(tmp_path):
    pytest.importorskip("numba.cuda")
    proc = _run_script(tmp_path, _PTX_SCRIPT, {"NUMBA_ENABLE_CUDASIM": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if "NO-TOOLKIT" in proc.stdout:
        pytest.skip("CUDA toolkit libraries (NVVM, NVRTC) not found: " + proc.stdout.strip())
    assert "PTX-OK" in proc.stdout, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# log1p_unit: log1p for arguments in [0, 1] (float32: one polynomial; float64: log1p)

_UNIT_KERNEL = _make_map(vmath.log1p_unit, _VMATH_TOKEN)


def _unit_samples(dtype):
    rng = np.random.default_rng(17)
    x = np.concatenate(
        [
            rng.uniform(0.0, 1.0, 1_000_000),
            np.exp(rng.uniform(-100.0, 0.0, 300_000)),  # exp(-y), as the log-cosh kernel calls it
            np.linspace(0.0, 1.0, 10_001),
            [0.0, 1.0, 2.0**-149 if dtype == np.float32 else 5e-324, 1e-30],
        ]
    )
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_accuracy(dtype):
    """float32 at most 2 ulps (measured 1.85, near 1); float64 is log1p (at most 1 ulp)."""
    x = _unit_samples(dtype)
    out = np.empty_like(x)
    _UNIT_KERNEL(x, out)
    if dtype == np.float32:
        ref = np.log1p(x.astype(np.float64))
    else:
        if np.finfo(np.longdouble).nmant < 63:
            pytest.skip("np.longdouble is not extended precision here: no float64 reference")
        ref = np.log1p(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(ref.astype(dtype))).astype(ref.dtype)
    err = np.abs(out.astype(ref.dtype) - ref) / ulp
    assert err.max() <= (2.0 if dtype == np.float32 else 1.0), (err.max(), x[np.argmax(err)])
    assert out[np.flatnonzero(x == 0)[0]] == 0  # log1p(0) = 0 exactly
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_nan_and_python(dtype):
    x = np.array([np.nan, 0.5], dtype)
    out = np.empty_like(x)
    _UNIT_KERNEL(x, out)
    assert np.isnan(out[0]) and out[1] == pytest.approx(math.log1p(0.5), rel=2e-7)
    value = vmath.log1p_unit(dtype(0.25))  # plain Python: NumPy's value
    assert value == np.log1p(dtype(0.25)) and type(value) is dtype


# --------------------------------------------------------------------------------------------
# exp_nonpos: exp for arguments <= 0 (float32 on the CPU: no overflow handling, no subnormals)

_NONPOS_KERNEL = _make_map(vmath.exp_nonpos, _VMATH_TOKEN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_nonpos(dtype):
    """float32: 1 ulp on [-80, 0], as exp; below -80 (and -inf) exp(-80), never 0; NaN gives
    NaN. float64: exp."""
    rng = np.random.default_rng(23)
    x = np.concatenate(
        [-rng.exponential(2.0, 1_000_000), rng.uniform(-120.0, 0.0, 300_000), [0.0, -0.0]]
    ).astype(dtype)
    out = np.empty_like(x)
    _NONPOS_KERNEL(x, out)
    if dtype == np.float32:
        ref = np.exp(x.astype(np.float64))
        inside = x >= -80.0
        ulp = np.spacing(ref[inside].astype(dtype)).astype(np.float64)
        assert (np.abs(out[inside] - ref[inside]) / ulp).max() <= MAX_ULPS
        assert np.unique(out[~inside]).size == 1
        assert abs(out[~inside][0] - math.exp(-80.0)) <= np.spacing(dtype(math.exp(-80.0)))
        assert np.all(out[x == 0] == 1)
    else:
        np.testing.assert_array_equal(out, apply("exp", x))  # float64: exp itself
    special = np.array([-np.inf, np.nan], dtype)
    _NONPOS_KERNEL(special, out[:2])
    tiny = out[np.flatnonzero(x < -80.0)[0]] if dtype == np.float32 else 0.0
    assert out[0] == tiny and np.isnan(out[1])
    value = vmath.exp_nonpos(dtype(-1.0))  # plain Python: NumPy's value
    assert value == np.exp(dtype(-1.0)) and type(value) is dtype


# --------------------------------------------------------------------------------------------
# exp2_nonpos: 2**y for y <= 0 (float32 on the CPU: one polynomial, clamped at -115)

_EXP2_KERNEL = _make_map(vmath.exp2_nonpos, _VMATH_TOKEN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp2_nonpos(dtype):
    """float32: 1.5 ulps on [-115, 0] (1.12 measured); below -115 (and -inf) 2**-115, never
    0; integers give exact powers of two; NaN gives NaN. float64: exp(y ln 2), relative error
    within |y| 2**-52."""
    rng = np.random.default_rng(29)
    y = np.concatenate(
        [
            -rng.exponential(3.0, 1_000_000),
            rng.uniform(-130.0, 0.0, 300_000),
            -np.arange(0, 116),
            [0.0, -0.0, -0.5, -1e-30],
        ]
    ).astype(dtype)
    out = np.empty_like(y)
    _EXP2_KERNEL(y, out)
    ref = np.exp2(y.astype(np.float64))
    if dtype == np.float32:
        inside = y >= -115.0
        ulp = np.spacing(ref[inside].astype(dtype)).astype(np.float64)
        err = np.abs(out[inside] - ref[inside]) / ulp
        assert err.max() <= 1.5, (err.max(), y[inside][np.argmax(err)])
        integral = inside & (y == np.round(y))
        np.testing.assert_array_equal(out[integral], ref[integral])  # 2**-n exactly
        assert np.all(out[~inside] == dtype(2.0**-115))
    else:
        bound = (np.abs(y) + 1.0) * 2.0**-52
        assert np.all(np.abs(out - ref) <= bound * ref)
    special = np.array([-np.inf, np.nan], dtype)
    _EXP2_KERNEL(special, out[:2])
    assert out[0] == (dtype(2.0**-115) if dtype == np.float32 else 0.0) and np.isnan(out[1])
    value = vmath.exp2_nonpos(dtype(-3.0))  # plain Python: NumPy's value
    assert value == dtype(0.125) and type(value) is dtype


# --------------------------------------------------------------------------------------------
# The specialised variants vectorise, without a libm call


@pytest.mark.parametrize(
    "func, value, libm",
    [
        (vmath.log1p_unit, 0.5, ("@log1p", "@llvm.log")),
        (vmath.exp2_nonpos, -0.5, ("@llvm.exp", "@exp")),
    ],
    ids=["log1p_unit", "exp2_nonpos"],
)
def test_specialised_variant_is_vectorised(func, value, libm):
    options = dict(KERNEL_OPTIONS, cache=False)

    @njit(**options)
    def apply_func(x, out):
        for i in range(x.size):
            out[i] = func(x[i])

    x = np.full(64, value, np.float32)
    apply_func(x, x.copy())
    llvm_ir = apply_func.inspect_llvm(apply_func.signatures[0])
    assert "<8 x float>" in llvm_ir or "<16 x float>" in llvm_ir
    for name in libm:
        assert name not in llvm_ir
