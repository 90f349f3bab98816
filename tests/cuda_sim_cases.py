"""The CUDA path under Numba's CUDA simulator (run by ``tests/test_cuda_suites.py``).

``NUMBA_ENABLE_CUDASIM=1`` must be set before Numba is imported, so this file runs in its own
pytest process (its name keeps it out of the normal collection); run it by hand with::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_sim_cases.py

Threads per block are shrunk to 8 and items per thread to 4 (32 elements per block), so the
inputs of a few dozen elements here span several blocks. Every device result is compared with
the CPU result of the same fastloss call (itself tested against torch and Keras elsewhere).
The simulator runs each CUDA thread as a Python thread, so inputs stay tiny.
"""

from __future__ import annotations

import itertools
import os
import warnings

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from conftest import REFERENCES, loss_options, make_case  # noqa: E402
from numba import cuda  # noqa: E402

import fastloss  # noqa: E402
import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
from fastloss import _cuda, _elementwise  # noqa: E402
from fastloss.kernels import regression  # noqa: E402
from fastloss.kernels.elementwise import ElementwiseSpec  # noqa: E402

THREADS, ITEMS = 8, 4
cuda_factory.THREADS_PER_BLOCK = THREADS
cuda_factory.ITEMS_PER_THREAD = ITEMS
CHUNK = THREADS * ITEMS

SHAPE = (5, 9)  # 45 elements: two blocks, the second one partial
FLOATS = (np.float32, np.float64)
PARAMS = {"delta": 0.75, "beta": 0.5, "eps": 1e-6, "var": 1.5}

# Division by a zero sum (empty mean, zero weights) warns in the simulator's NumPy arithmetic.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _specs():
    """Every (spec, flags) of kernels/regression.py, all flag combinations."""
    for value in vars(regression).values():
        if isinstance(value, ElementwiseSpec):
            for flags in itertools.product((False, True), repeat=len(value.flags)):
                label = value.name + "".join(
                    f"-{f}{int(v)}" for f, v in zip(value.flags, flags, strict=True)
                )
                yield pytest.param(value, flags, id=label)


SPECS = list(_specs())


def _arrays(spec, flags, shape, dtype, seed=0) -> list[np.ndarray]:
    """Inputs in the domain of ``spec`` (positive rates and variances, counts, ...)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    t = rng.standard_normal(shape)
    if spec.name == "poisson_nll":
        if not flags[0]:  # rates, not log-rates
            x = rng.uniform(0.05, 3.0, shape)
        t = rng.poisson(2.0, shape).astype(np.float64)
    elif spec.name == "msle":
        x = rng.uniform(-0.5, 3.0, shape)
        t = rng.uniform(0.0, 5.0, shape)
    arrays = [x, t]
    if spec.arrays == 3:
        var = rng.uniform(0.1, 2.0, shape)
        var.flat[1] = 1e-8  # below eps: clamped
        arrays.append(var)
    return [a.astype(dtype) for a in arrays]


def _params(spec):
    return tuple(PARAMS[p] for p in spec.params)


def _names(spec):
    return ["input", "target", "var"][: spec.arrays]


def host(x):
    """A device result as NumPy (None and tuples pass through)."""
    if x is None:
        return None
    if isinstance(x, tuple):
        return tuple(host(v) for v in x)
    return np.asarray(x.copy_to_host())


def assert_close(gpu, cpu, dtype, n, what=""):
    """Element values agree to a few ulps; sums to the float64 rounding of the sum, after
    which both are rounded to ``dtype`` (so one ulp of ``dtype``), plus cancellation."""
    cpu = np.asarray(cpu, dtype=np.float64)
    gpu = np.asarray(gpu, dtype=np.float64)
    assert gpu.shape == cpu.shape, f"{what}: shape {gpu.shape} != {cpu.shape}"
    eps = float(np.finfo(dtype).eps)
    finite = np.abs(cpu[np.isfinite(cpu)])
    scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(
        gpu, cpu, rtol=4 * eps, atol=4 * eps * max(scale, 1.0) * max(n, 1) ** 0.5, err_msg=what
    )


def check(spec, arrays, *, flags=(), params=(), shape=None, **kwargs):
    """Run ``spec`` through the device path and the CPU path and compare everything."""
    names = _names(spec)[: len(arrays)]
    device = [cuda.to_device(a) for a in arrays]
    dev_kwargs = dict(kwargs)
    if kwargs.get("weight") is not None:
        dev_kwargs["weight"] = cuda.to_device(kwargs["weight"])
    gpu = _cuda.run(spec, device, names, params=params, flags=flags, **dev_kwargs)
    cpu = _elementwise.run(spec, arrays, names, params=params, flags=flags, **kwargs)
    dtype = arrays[0].dtype
    n = int(np.prod(np.broadcast_shapes(*(a.shape for a in arrays))))
    if not kwargs.get("return_grad"):
        gpu, cpu = (gpu, None), (cpu, None)
    loss = host(gpu[0])
    assert loss.dtype == dtype, f"loss dtype {loss.dtype}, expected {dtype}"
    if kwargs.get("reduction", "mean") != "none":
        assert loss.shape == (), f"loss: expected a 0-d device array, got shape {loss.shape}"
    assert_close(loss, cpu[0], dtype, n, "loss")
    if kwargs.get("return_grad"):
        grads = gpu[1] if isinstance(gpu[1], tuple) else (gpu[1],)
        wants = cpu[1] if isinstance(cpu[1], tuple) else (cpu[1],)
        assert len(grads) == len(wants)
        for j, (got, want) in enumerate(zip(grads, wants, strict=True)):
            got = host(got)
            assert got.dtype == want.dtype, f"grad {j}: dtype {got.dtype} != {want.dtype}"
            assert_close(got, want, dtype, n, f"grad {j}")
    return gpu


# --- every spec, flag combination, dtype, reduction, with and without gradient -------------


@pytest.mark.parametrize("return_grad", [False, True], ids=["value", "grad"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("spec, flags", SPECS)
def test_spec(spec, flags, dtype, reduction, return_grad):
    arrays = _arrays(spec, flags, SHAPE, dtype)
    check(
        spec,
        arrays,
        flags=flags,
        params=_params(spec),
        reduction=reduction,
        return_grad=return_grad,
    )


@pytest.mark.parametrize("spec, flags", SPECS)
def test_weighted(spec, flags):
    """Weighted kernels: the mean by the element count, by the weight sum, and "none"."""
    arrays = _arrays(spec, flags, SHAPE, np.float64, seed=1)
    weight = np.random.default_rng(2).uniform(0.0, 2.0, SHAPE)
    common = dict(flags=flags, params=_params(spec), weight=weight)
    check(spec, arrays, reduction="mean", mean_by_weight=True, return_grad=True, **common)
    check(spec, arrays, reduction="mean", mean_by_weight=True, **common)
    check(spec, arrays, reduction="mean", return_grad=True, **common)
    check(spec, arrays, reduction="none", return_grad=True, **common)


def test_weighted_float32_and_zero_weights():
    x, t = _arrays(regression.MSE, (), SHAPE, np.float32)
    weight = np.random.default_rng(3).uniform(0.0, 2.0, SHAPE).astype(np.float32)
    check(regression.MSE, [x, t], weight=weight, mean_by_weight=True, return_grad=True)
    zero = np.zeros(SHAPE, np.float32)  # 0/0: NaN loss and gradient, as on the CPU
    check(regression.MSE, [x, t], weight=zero, mean_by_weight=True, return_grad=True)


# --- the reduction scheme, bit for bit -------------------------------------------------------


def _documented_sum(values: np.ndarray) -> np.float64:
    """The device reduction order of kernels/cuda/elementwise.py, emulated in NumPy."""

    def tree(acc):
        acc = acc.copy()
        half = len(acc) // 2
        while half >= 2:
            acc[:half] += acc[half : 2 * half]
            half //= 2
        return acc[0] + acc[1]

    values = values.astype(np.float64)
    blocks = -(-values.size // CHUNK)
    partials = np.zeros(blocks)
    for b in range(blocks):
        acc = np.zeros(THREADS)
        for t in range(THREADS):
            s = np.float64(0.0)
            for k in range(ITEMS):
                i = b * CHUNK + t + k * THREADS
                if i < values.size:
                    s += values[i]
            acc[t] = s
        partials[b] = tree(acc)
    acc = np.zeros(THREADS)
    for t in range(THREADS):
        s = np.float64(0.0)
        for b in range(t, blocks, THREADS):
            s += partials[b]
        acc[t] = s
    return tree(acc)


@pytest.mark.parametrize("n", [1, 31, 33, 100, 300])
def test_sum_follows_the_documented_order(n):
    """The loss is the fixed-order sum of the module docstring, to the last bit, whatever
    the block count; and the same bits on every run."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    t = rng.standard_normal(n)
    x_d, t_d = cuda.to_device(x), cuda.to_device(t)
    names = ["input", "target"]
    got = host(_cuda.run(regression.MSE, [x_d, t_d], names, reduction="sum"))[()]
    again = host(_cuda.run(regression.MSE, [x_d, t_d], names, reduction="sum"))[()]
    elements = host(_cuda.run(regression.MSE, [x_d, t_d], names, reduction="none"))
    want = _documented_sum(elements)
    assert got.tobytes() == want.tobytes(), (got, want)
    assert got.tobytes() == again.tobytes()


# --- gradients into out=, broadcasting, dtypes, layouts, empty input -------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_out_is_input(dtype):
    x, t = _arrays(regression.HUBER, (), SHAPE, dtype)
    x_d, t_d = cuda.to_device(x), cuda.to_device(t)
    loss, grad = _cuda.run(
        regression.HUBER, [x_d, t_d], ["input", "target"], params=(0.75,), return_grad=True,
        out=x_d,
    )  # fmt: skip
    assert grad is x_d
    want, want_grad = _elementwise.run(
        regression.HUBER, [x, t], ["input", "target"], params=(0.75,), return_grad=True
    )
    assert_close(host(loss), want, dtype, x.size)
    assert_close(host(x_d), want_grad, dtype, x.size, "input overwritten by its gradient")


def test_out_arrays():
    spec = regression.GAUSSIAN_NLL
    x, t, var = _arrays(spec, (False,), SHAPE, np.float64)
    device = [cuda.to_device(a) for a in (x, t, var)]
    names = ["input", "target", "var"]
    want_loss, (want_x, want_var) = _elementwise.run(
        spec, [x, t, var], names, params=(1e-6,), flags=(False,), return_grad=True
    )
    outs = (cuda.device_array(SHAPE, np.float64), cuda.device_array(SHAPE, np.float64))
    loss, grads = _cuda.run(
        spec, device, names, params=(1e-6,), flags=(False,), return_grad=True, out=outs
    )
    assert grads[0] is outs[0] and grads[1] is outs[1]
    assert_close(host(outs[0]), want_x, np.float64, x.size)
    assert_close(host(outs[1]), want_var, np.float64, x.size)
    # Only the second one given; an F-ordered out takes a copy.
    out_var = cuda.to_device(np.asfortranarray(np.zeros(SHAPE)))
    loss, grads = _cuda.run(
        spec, device, names, params=(1e-6,), flags=(False,), return_grad=True,
        out=(None, out_var),
    )  # fmt: skip
    assert grads[1] is out_var
    assert_close(host(grads[0]), want_x, np.float64, x.size)
    assert_close(host(out_var), want_var, np.float64, x.size)


def test_out_errors():
    x, t = _arrays(regression.MSE, (), SHAPE, np.float32)
    x_d, t_d = cuda.to_device(x), cuda.to_device(t)
    names = ["input", "target"]
    run = _cuda.run
    with pytest.raises(ValueError, match="needs return_grad=True"):
        run(regression.MSE, [x_d, t_d], names, out=x_d)
    with pytest.raises(ValueError, match=r"out: expected shape \(5, 9\)"):
        run(regression.MSE, [x_d, t_d], names, return_grad=True, out=cuda.device_array(45))
    with pytest.raises(ValueError, match="out: expected dtype float32"):
        bad = cuda.device_array(SHAPE, np.float64)
        run(regression.MSE, [x_d, t_d], names, return_grad=True, out=bad)
    with pytest.raises(TypeError, match="out: expected a device array"):
        run(regression.MSE, [x_d, t_d], names, return_grad=True, out=x)
    with pytest.raises(ValueError, match="out: expected 1 arrays"):
        run(regression.MSE, [x_d, t_d], names, return_grad=True, out=(x_d, x_d))


@pytest.mark.parametrize(
    "shapes",
    [
        [(5, 9), (1, 9)],  # target broadcast
        [(5, 1), (5, 9)],  # input broadcast: its gradient sums over the last axis
        [(9,), (5, 9)],  # input missing a leading dimension
        [(5, 9), ()],  # 0-d target
        [(1, 1), (9, 10)],  # one input element for 90: the two-level block reduction
    ],
    ids=["target", "input", "leading", "scalar-target", "one-input"],
)
def test_broadcasting(shapes):
    rng = np.random.default_rng(4)
    x, t = (rng.standard_normal(s) for s in shapes)
    check(regression.MSE, [x, t], reduction="mean", return_grad=True)
    check(regression.MSE, [x, t], reduction="none", return_grad=True)


def test_gaussian_var_broadcast():
    """The homoscedastic ``var``: one value per row, its gradient summed over the row."""
    spec = regression.GAUSSIAN_NLL
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    var = rng.uniform(0.1, 2.0, (5, 1))
    check(spec, [x, t, var], flags=(True,), params=(1e-6,), return_grad=True)


def test_scalar_operand():
    """A Python float broadcast on the device; it gets no gradient."""
    spec = regression.GAUSSIAN_NLL
    x, t = _arrays(spec, (False,), SHAPE, np.float32)[:2]
    names = ["input", "target", "var"]
    device = [cuda.to_device(x), cuda.to_device(t), 0.7]
    loss, (grad_x, grad_var) = _cuda.run(
        spec, device, names, params=(1e-6,), flags=(False,), return_grad=True
    )
    full = np.full(SHAPE, 0.7, np.float32)
    want, (want_x, _) = _elementwise.run(
        spec, [x, t, full], names, params=(1e-6,), flags=(False,), return_grad=True
    )
    assert grad_var is None
    assert_close(host(loss), want, np.float32, x.size)
    assert_close(host(grad_x), want_x, np.float32, x.size)


def test_dtypes():
    """float16 computes in float32 (its gradient comes back in float16); integer and bool
    targets are cast; other dtypes are refused."""
    rng = np.random.default_rng(6)
    x16 = rng.standard_normal(SHAPE).astype(np.float16)
    t = rng.standard_normal(SHAPE).astype(np.float32)
    names = ["input", "target"]
    loss, grad = _cuda.run(
        regression.MSE, [cuda.to_device(x16), cuda.to_device(t)], names, return_grad=True
    )
    x32 = x16.astype(np.float32)
    want, want_grad = _elementwise.run(regression.MSE, [x32, t], names, return_grad=True)
    assert host(loss).dtype == np.float32 and host(grad).dtype == np.float16
    assert_close(host(loss), want, np.float32, x16.size)
    np.testing.assert_array_equal(host(grad), want_grad.astype(np.float16))

    x = rng.standard_normal(SHAPE)
    for target in (rng.integers(-2, 3, SHAPE), rng.integers(0, 2, SHAPE).astype(bool)):
        loss = _cuda.run(regression.L1, [cuda.to_device(x), cuda.to_device(target)], names)
        want = _elementwise.run(regression.L1, [x, target.astype(np.float64)], names)
        assert_close(host(loss), want, np.float64, x.size)
    with pytest.raises(TypeError, match="target: expected a floating, integer or bool dtype"):
        complex_target = cuda.to_device(np.zeros(SHAPE, np.complex64))
        _cuda.run(regression.MSE, [cuda.to_device(x), complex_target], names)
    with pytest.raises(TypeError, match="target: expected a device array"):
        _cuda.run(regression.MSE, [cuda.to_device(x), x], names)
    with pytest.raises(ValueError, match="shape mismatch"):
        _cuda.run(regression.MSE, [cuda.to_device(x), cuda.to_device(np.zeros(3))], names)
    with pytest.raises(ValueError, match="weight: expected the shape of input"):
        _cuda.run(
            regression.MSE,
            [cuda.to_device(x), cuda.to_device(x)],
            names,
            weight=cuda.to_device(np.ones(3)),
        )


def test_layouts():
    """Fortran-ordered operands run as they are; strided views are copied on the device."""
    rng = np.random.default_rng(7)
    x = np.asfortranarray(rng.standard_normal(SHAPE))
    t = np.asfortranarray(rng.standard_normal(SHAPE))
    check(regression.MSE, [x, t], reduction="none", return_grad=True)
    x_d = cuda.to_device(x)
    loss, grad = _cuda.run(
        regression.MSE, [x_d, cuda.to_device(t)], ["input", "target"], return_grad=True, out=x_d
    )
    assert grad is x_d
    # A strided view of a device array (every other column).
    wide = rng.standard_normal((5, 18))
    view = cuda.to_device(wide)[:, ::2]
    target = rng.standard_normal((5, 9))
    names = ["input", "target"]
    loss, grad = _cuda.run(regression.MSE, [view, cuda.to_device(target)], names, return_grad=True)
    want, want_grad = _elementwise.run(
        regression.MSE, [wide[:, ::2], target], names, return_grad=True
    )
    assert_close(host(loss), want, np.float64, 45)
    assert_close(host(grad), want_grad, np.float64, 45)


@pytest.mark.parametrize("return_grad", [False, True])
def test_empty(return_grad):
    """Empty input: mean NaN, sum 0, "none" and gradients empty (no kernel launched over it)."""
    names = ["input", "target"]
    for shape in [(0,), (2, 0, 3)]:
        x_d = cuda.to_device(np.zeros(shape, np.float32))
        t_d = cuda.to_device(np.zeros(shape, np.float32))
        for reduction, want in [("mean", np.nan), ("sum", 0.0)]:
            result = _cuda.run(
                regression.MSE, [x_d, t_d], names, reduction=reduction, return_grad=return_grad
            )
            loss = host(result[0] if return_grad else result)
            assert loss.shape == () and loss.dtype == np.float32
            np.testing.assert_equal(loss[()], np.float32(want))
            if return_grad:
                assert host(result[1]).shape == shape
        result = _cuda.run(
            regression.MSE, [x_d, t_d], names, reduction="none", return_grad=return_grad
        )
        assert host(result[0] if return_grad else result).shape == shape
    weight = cuda.to_device(np.zeros((0,), np.float32))
    x_d = cuda.to_device(np.zeros((0,), np.float32))
    loss = _cuda.run(regression.MSE, [x_d, x_d], names, weight=weight, mean_by_weight=True)
    assert np.isnan(host(loss)[()])


# --- the public functions recognise device arrays -------------------------------------------

PUBLIC = [p for p in loss_options() if p.values[0] != "rmse_loss"]


def test_dispatch_recognises_device_arrays():
    """The simulator's device arrays have no ``__cuda_array_interface__`` (real Numba device
    arrays do); ``__cuda_ndarray__`` marks both."""
    from fastloss._intake import is_device_array

    assert is_device_array(cuda.to_device(np.zeros(3))), (
        "fastloss._intake.is_device_array must recognise Numba device arrays by their "
        "__cuda_ndarray__ attribute"
    )
    assert not is_device_array(np.zeros(3))


def _to_device(value):
    return cuda.to_device(value) if isinstance(value, np.ndarray) else value


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name, option", PUBLIC)
def test_public_functions(name, option, reduction):
    """``fastloss.<loss>(device arrays)`` takes the device path and matches the CPU call."""
    arrays, kwargs = make_case(name, option, SHAPE, np.float32)
    function = REFERENCES[name].function
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's broadcast warning is tested on the CPU
        cpu_loss, cpu_grad = function(**arrays, **kwargs, reduction=reduction, return_grad=True)
        dev_arrays = {k: _to_device(v) for k, v in arrays.items()}
        dev_kwargs = {k: _to_device(v) for k, v in kwargs.items()}
        loss, grad = function(**dev_arrays, **dev_kwargs, reduction=reduction, return_grad=True)
    assert hasattr(loss, "copy_to_host"), f"{name}: expected a device array, got {type(loss)}"
    assert_close(host(loss), cpu_loss, np.float32, 45, "loss")
    grads = grad if isinstance(grad, tuple) else (grad,)
    wants = cpu_grad if isinstance(cpu_grad, tuple) else (cpu_grad,)
    for got, want in zip(grads, wants, strict=True):
        if want is None:
            assert got is None
            continue
        assert hasattr(got, "copy_to_host"), f"{name}: gradient not on the device"
        assert_close(host(got), want, np.float32, 45, "grad")


def test_public_out_is_input():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    t = rng.standard_normal(SHAPE).astype(np.float32)
    want, want_grad = fastloss.mse_loss(x, t, return_grad=True)
    x_d = cuda.to_device(x)
    loss, grad = fastloss.mse_loss(x_d, cuda.to_device(t), return_grad=True, out=x_d)
    assert grad is x_d
    assert_close(host(loss), want, np.float32, 45)
    assert_close(host(x_d), want_grad, np.float32, 45)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_out", [False, True])
def test_gaussian_negative_var_on_device(reduction, with_out):
    """torch's negative-variance check on the device: ValueError before an out= array is
    written; a NaN variance is not negative (NaN loss, no error), as on the host."""
    rng = np.random.default_rng(41)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = rng.standard_normal((3, 4)).astype(np.float32)
    var = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    var[1, 2] = -0.25
    out = cuda.to_device(np.full_like(x, 7.0)) if with_out else None
    args = (cuda.to_device(x), cuda.to_device(t), cuda.to_device(var))
    with pytest.raises(ValueError, match="var: expected variances >= 0"):
        fastloss.gaussian_nll_loss(*args, reduction=reduction, return_grad=with_out, out=out)
    if with_out:
        assert np.all(out.copy_to_host() == 7.0)
    var[1, 2] = np.nan
    loss = fastloss.gaussian_nll_loss(
        cuda.to_device(x), cuda.to_device(t), cuda.to_device(var), reduction=reduction
    )
    loss = loss.copy_to_host()
    assert np.isnan(loss).any() and (reduction != "none" or np.isfinite(loss).sum() == 11)
    var[1, 2] = 0.0  # zero is clamped to eps, not refused
    want = fastloss.gaussian_nll_loss(x, t, var, reduction=reduction)
    got = fastloss.gaussian_nll_loss(*args[:2], cuda.to_device(var), reduction=reduction)
    np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-6)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"])
def test_target_size_warning_on_device(name):
    """torch's warning for a target whose size differs from the input's, as on the host."""
    rng = np.random.default_rng(43)
    x = rng.standard_normal((3, 1)).astype(np.float32)
    t = rng.standard_normal((3, 4)).astype(np.float32)
    loss_fn = getattr(fastloss, name)
    with pytest.warns(UserWarning, match=r"target size \(\(3, 4\)\) that is different"):
        want = loss_fn(x, t)
    with pytest.warns(UserWarning, match=r"target size \(\(3, 4\)\) that is different"):
        got = loss_fn(cuda.to_device(x), cuda.to_device(t))
    np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_fn(cuda.to_device(t), cuda.to_device(t))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: fastloss.mse_loss(x, x, return_hess=True),
        lambda x: fastloss.rmse_loss(x, x, return_hess=True),
        lambda x: fastloss.gaussian_nll_loss(x, x, x, return_hess=True),
        lambda x: fastloss.gaussian_nll_loss(x, x, 1.0, return_hess=True),
        lambda x: fastloss.binary_cross_entropy_with_logits(x, x, return_hess=True),
        lambda x: fastloss.binary_cross_entropy(x, x, return_hess=True),
        lambda x: fastloss.binary_crossentropy(x, x, return_hess=True),
        lambda x: fastloss.kl_div(x, x, reduction="sum", return_hess=True),
    ],
    ids=["mse", "rmse", "gaussian", "gaussian-float-var", "bce-logits", "bce", "keras", "kl"],
)
def test_return_hess_is_refused_on_the_device(call):
    """Second derivatives are CPU-only for now: a clear error naming return_hess."""
    x = cuda.to_device(np.linspace(0.1, 0.9, 12))
    with pytest.raises(NotImplementedError, match="return_hess"):
        call(x)
