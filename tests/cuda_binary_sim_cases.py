"""The binary losses and kl_div on device arrays, under Numba's CUDA simulator (run by
``tests/test_cuda_suites.py`` in a pytest process of its own); by hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_binary_sim_cases.py

Each public call is made twice, with NumPy arrays (the CPU kernels, tested against torch,
torchvision and Keras elsewhere) and with the same values as simulator device arrays, and the
results are compared: loss and gradient, dtypes, shapes, results left on the device. Threads per
block are shrunk to 8 and items per thread to 4 (32 elements per block), so the (5, 9) inputs
span two blocks.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from numba import cuda  # noqa: E402

import fastloss  # noqa: E402
import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
from fastloss import _cuda  # noqa: E402

THREADS, ITEMS = 8, 4
cuda_factory.THREADS_PER_BLOCK = THREADS
cuda_factory.ITEMS_PER_THREAD = ITEMS

SHAPE = (5, 9)
N = 45
FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")

# Division by a zero count (empty means) warns in the simulator's NumPy arithmetic.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DEVICE_TYPE = type(cuda.to_device(np.zeros(1)))


# --- inputs ----------------------------------------------------------------------------------


def _probabilities(rng, shape, edges=False):
    x = rng.uniform(0.02, 0.98, shape)
    if edges:  # outside Keras's clip range: no gradient there
        x.flat[0], x.flat[1], x.flat[2] = 0.0, 1.0, 1e-9
    return x


def _logits(rng, shape):
    x = 3.0 * rng.standard_normal(shape)
    x.flat[0], x.flat[1] = 30.0, -30.0  # saturated sigmoids
    return x


def _labels(rng, shape, soft=False):
    return rng.uniform(0.0, 1.0, shape) if soft else (rng.random(shape) < 0.5).astype(np.float64)


def _log_probabilities(rng, shape):
    p = rng.uniform(0.01, 1.0, shape)
    return np.log(p / p.sum(axis=-1, keepdims=True))


def _kl_target(rng, shape, kwargs):
    q = rng.uniform(0.0, 1.0, shape)
    q.flat[0] = 0.0  # xlogy's zero
    q = q / q.sum(axis=-1, keepdims=True)
    return np.log(q + 1e-3) if kwargs.get("log_target") else q


# name -> option id -> (kwargs, make(rng, kwargs) -> (input, target, extra array kwargs))
def _bce(rng, kw):
    return _probabilities(rng, SHAPE), _labels(rng, SHAPE, soft=kw.pop("soft", False))


def _logit_pair(rng, kw):
    return _logits(rng, SHAPE), _labels(rng, SHAPE, soft=kw.pop("soft", False))


def _keras_pair(rng, kw):
    if kw.get("from_logits"):
        return _logits(rng, SHAPE), _labels(rng, SHAPE)
    return _probabilities(rng, SHAPE, edges=True), _labels(rng, SHAPE)


def _kl_pair(rng, kw):
    shape = kw.pop("target_shape", SHAPE)
    return _log_probabilities(rng, SHAPE), _kl_target(rng, shape, kw)


ARRAY_OPTIONS = ("weight", "pos_weight")

CASES = {
    "binary_cross_entropy": (
        _bce,
        {
            "default": {},
            "soft": {"soft": True},
            "weight": {"weight": SHAPE},
            "weight-row": {"weight": (9,)},
            "weight-col": {"weight": (5, 1)},
            "weight-scalar": {"weight": 0.5},
        },
    ),
    "binary_cross_entropy_with_logits": (
        _logit_pair,
        {
            "default": {},
            "soft": {"soft": True},
            "weight": {"weight": (9,)},
            "pos_weight": {"pos_weight": (9,)},
            "pos_weight-scalar": {"pos_weight": 3.0},
            "weight-pos_weight": {"weight": SHAPE, "pos_weight": (5, 1), "soft": True},
        },
    ),
    "sigmoid_focal_loss": (
        _logit_pair,
        {
            "default": {},
            "soft": {"soft": True, "alpha": 0.5},
            "no-alpha-gamma0": {"alpha": -1.0, "gamma": 0.0},
            "gamma1.5": {"gamma": 1.5},
            "gamma3": {"gamma": 3.0, "alpha": 0.75},
        },
    ),
    "binary_crossentropy": (
        _keras_pair,
        {
            "default": {},
            "logits": {"from_logits": True},
            "smooth": {"label_smoothing": 0.1},
            "logits-smooth-axis0": {"from_logits": True, "label_smoothing": 0.2, "axis": 0},
            "axes01": {"axis": (0, 1)},
        },
    ),
    "binary_focal_crossentropy": (
        _keras_pair,
        {
            "default": {},
            "balanced": {"apply_class_balancing": True, "alpha": 0.375},
            "logits-smooth": {"from_logits": True, "label_smoothing": 0.1},
            "logits-gamma0.5": {"from_logits": True, "gamma": 0.5},
            "gamma3-axis0": {"gamma": 3.0, "axis": 0},
            "logits-balanced-gamma0": {
                "from_logits": True,
                "gamma": 0.0,
                "apply_class_balancing": True,
            },
        },  # fmt: skip
    ),
    "kl_div": (
        _kl_pair,
        {
            "default": {},
            "log_target": {"log_target": True},
            "target-row": {"target_shape": (1, 9)},
            "log_target-row": {"log_target": True, "target_shape": (9,)},
        },
    ),
}

PARAMS = [
    pytest.param(name, option, id=f"{name}-{option}")
    for name, (_, options) in CASES.items()
    for option in options
]


def _dtype_params():
    """Every option in float32 or float64 (alternately), the first two of a loss in both."""
    for name, (_, options) in CASES.items():
        for k, option in enumerate(options):
            dtypes = FLOATS if k < 2 else (FLOATS[k % 2],)
            for dtype in dtypes:
                label = f"{name}-{option}-{np.dtype(dtype).name}"
                yield pytest.param(name, option, dtype, id=label)


def make(name, option, dtype, seed=0):
    """``(arrays, kwargs)`` of one case in ``dtype``: NumPy arrays, to be moved over."""
    maker, options = CASES[name]
    kwargs = dict(options[option])
    rng = np.random.default_rng(seed)
    extra = {k: kwargs.pop(k) for k in ARRAY_OPTIONS if k in kwargs}
    x, t = maker(rng, kwargs)
    arrays = {"input": x.astype(dtype), "target": t.astype(dtype)}
    for key, shape in extra.items():
        if isinstance(shape, float):
            kwargs[key] = shape
        else:
            kwargs[key] = rng.uniform(0.25, 2.0, shape).astype(dtype)
    return arrays, kwargs


def to_device(value):
    return cuda.to_device(value) if isinstance(value, np.ndarray) else value


def host(x):
    assert isinstance(x, DEVICE_TYPE), f"expected a device array, got {type(x)}"
    return np.asarray(x.copy_to_host())


def assert_close(gpu, cpu, dtype, what=""):
    """Element values to a few ulps; sums to the rounding of the sum (as cuda_sim_cases)."""
    cpu = np.asarray(cpu)
    assert gpu.shape == cpu.shape, f"{what}: shape {gpu.shape} != {cpu.shape}"
    assert gpu.dtype == cpu.dtype, f"{what}: dtype {gpu.dtype} != {cpu.dtype}"
    cpu = cpu.astype(np.float64)
    gpu = gpu.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    finite = np.abs(cpu[np.isfinite(cpu)])
    scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(
        gpu, cpu, rtol=8 * eps, atol=8 * eps * max(scale, 1.0) * N**0.5, err_msg=what
    )


def call(name, arrays, kwargs, **options):
    """The public function on the CPU and on the device: ``(cpu, gpu)`` results."""
    function = getattr(fastloss, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's "mean" warning is tested on the CPU
        cpu = function(arrays["input"], arrays["target"], **kwargs, **options)
        gpu = function(
            to_device(arrays["input"]),
            to_device(arrays["target"]),
            **{k: to_device(v) for k, v in kwargs.items()},
            **options,
        )
    return cpu, gpu


def compare(cpu, gpu, dtype, reduction, return_grad):
    if not return_grad:
        cpu, gpu = (cpu, None), (gpu, None)
    loss = host(gpu[0])
    if reduction != "none":
        assert loss.shape == (), f"expected a 0-d device array, got shape {loss.shape}"
    assert_close(loss, cpu[0], dtype, "loss")
    if return_grad:
        assert_close(host(gpu[1]), cpu[1], dtype, "grad")


def _reductions(name):
    return ("mean", "batchmean", "sum", "none") if name == "kl_div" else REDUCTIONS


# --- every loss, option, dtype and reduction ---------------------------------------------------


@pytest.mark.parametrize("name, option, dtype", list(_dtype_params()))
def test_matches_cpu(name, option, dtype):
    arrays, kwargs = make(name, option, dtype)
    for reduction in _reductions(name):
        cpu, gpu = call(name, arrays, kwargs, reduction=reduction, return_grad=True)
        compare(cpu, gpu, dtype, reduction, True)


@pytest.mark.parametrize("name, option", PARAMS)
def test_value_only(name, option):
    arrays, kwargs = make(name, option, np.float32, seed=1)
    reduction = "sum" if name == "kl_div" else "mean"
    cpu, gpu = call(name, arrays, kwargs, reduction=reduction)
    compare(cpu, gpu, np.float32, reduction, False)


@pytest.mark.parametrize("name", list(CASES))
def test_out_is_input(name):
    """The gradient written over the input, which the kernel reads first."""
    option = (
        "weight"
        if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits")
        else ("default")
    )
    arrays, kwargs = make(name, option, np.float64, seed=2)
    function = getattr(fastloss, name)
    for reduction in ("sum", "none"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want, want_grad = function(
                arrays["input"], arrays["target"], **kwargs, reduction=reduction, return_grad=True
            )
            x_d = cuda.to_device(arrays["input"])
            dev_kwargs = {k: to_device(v) for k, v in kwargs.items()}
            loss, grad = function(
                x_d, cuda.to_device(arrays["target"]), **dev_kwargs, reduction=reduction,
                return_grad=True, out=x_d,
            )  # fmt: skip
        assert grad is x_d
        assert_close(host(loss), want, np.float64, "loss")
        assert_close(host(x_d), want_grad, np.float64, "input overwritten by its gradient")


@pytest.mark.parametrize("name", list(CASES))
def test_float16_input_and_integer_target(name):
    """float16 computes in float32, its gradient comes back in float16; integer targets cast."""
    arrays, kwargs = make(name, "default", np.float64, seed=3)
    if name != "kl_div":
        arrays["target"] = arrays["target"].astype(np.int32)
    arrays["input"] = arrays["input"].astype(np.float16)
    if name == "binary_cross_entropy":
        arrays["input"] = np.clip(arrays["input"], 0.0, 1.0)
    cpu, gpu = call(name, arrays, kwargs, reduction="sum", return_grad=True)
    loss, grad = host(gpu[0]), host(gpu[1])
    assert loss.dtype == np.float32 and grad.dtype == np.float16
    assert_close(loss, cpu[0], np.float32, "loss")
    np.testing.assert_allclose(grad.astype(np.float64), cpu[1].astype(np.float64), rtol=1e-3)


def test_keras_fortran_order():
    """Fortran-ordered inputs run as they are; the per-sample sum reads that order."""
    for name in ("binary_crossentropy", "binary_focal_crossentropy"):
        arrays, kwargs = make(name, "default", np.float64, seed=4)
        arrays = {k: np.asfortranarray(v) for k, v in arrays.items()}
        for axis in (0, -1):
            cpu, gpu = call(name, arrays, kwargs, axis=axis, reduction="none", return_grad=True)
            compare(cpu, gpu, np.float64, "none", True)


def test_sum_axes_of_strided_views():
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((4, 6, 10))
    view = cuda.to_device(wide)[:, :, ::2]
    for axes in [(0,), (2,), (0, 2), (0, 1, 2)]:
        got = host(_cuda.sum_axes(view, axes))
        np.testing.assert_allclose(got, wide[:, :, ::2].sum(axis=axes), rtol=1e-13)
    big = rng.standard_normal(300)  # one output from many blocks: the two-level reduction
    got = host(_cuda.sum_axes(cuda.to_device(big), (0,)))
    assert got.shape == ()
    np.testing.assert_allclose(got, big.sum(), rtol=1e-13)


# --- binary_cross_entropy's range check --------------------------------------------------------


@pytest.mark.parametrize(
    "setup, reduction",
    [("plain", "mean"), ("plain", "none"), ("weight", "sum"), ("out", "mean"), ("out", "none")],
)
def test_bce_range_check(setup, reduction):
    rng = np.random.default_rng(6)
    x, t = _probabilities(rng, SHAPE), _labels(rng, SHAPE)
    for bad_x, bad_t, match in [
        (1.5, None, r"input: expected values in \[0, 1\].*from"),
        (np.nan, None, r"input: .*got NaN"),
        (None, -0.25, r"target: expected values in \[0, 1\]"),
    ]:
        xb, tb = x.copy(), t.copy()
        if bad_x is not None:
            xb.flat[40] = bad_x  # in the second block
        if bad_t is not None:
            tb.flat[7] = bad_t
        x_d, t_d = cuda.to_device(xb), cuda.to_device(tb)
        kwargs = {"reduction": reduction}
        if setup == "weight":
            kwargs["weight"] = cuda.to_device(np.ones(9))
        if setup == "out":
            kwargs.update(return_grad=True, out=x_d)
        with pytest.raises(ValueError, match=match):
            fastloss.binary_cross_entropy(x_d, t_d, **kwargs)
        if setup == "out":  # checked before the kernel could overwrite the input
            np.testing.assert_array_equal(host(x_d), xb)
        with pytest.raises(ValueError, match=match):  # the CPU says the same
            fastloss.binary_cross_entropy(xb, tb, **{k: v for k, v in kwargs.items() if k in (
                "reduction",)})  # fmt: skip


# --- host synchronisation: none, except binary_cross_entropy's one check ----------------------


@pytest.fixture
def copies(monkeypatch):
    """Counts the device-to-host copies (the simulator's only synchronisation point)."""
    count = [0]
    original = DEVICE_TYPE.copy_to_host

    def counted(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DEVICE_TYPE, "copy_to_host", counted)
    return count


@pytest.mark.parametrize("name", list(CASES))
def test_no_host_synchronisation(name, copies):
    arrays, kwargs = make(name, "default", np.float32, seed=7)
    dev = {k: cuda.to_device(v) for k, v in arrays.items()}
    for reduction in _reductions(name):
        copies[0] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(fastloss, name)(dev["input"], dev["target"], reduction=reduction,
                                    return_grad=True)  # fmt: skip
        expected = 1 if name == "binary_cross_entropy" else 0
        assert copies[0] == expected, (reduction, copies[0])


# --- refusals: no silent copies to or from the host -----------------------------------------


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
def test_host_arguments_beside_device_arrays_are_refused():
    rng = np.random.default_rng(8)
    x, t = _probabilities(rng, SHAPE), _labels(rng, SHAPE)
    x_d, t_d = cuda.to_device(x), cuda.to_device(t)
    for name in CASES:
        function = getattr(fastloss, name)
        first, second = ("inputs", "targets") if name == "sigmoid_focal_loss" else (
            "input", "target")  # fmt: skip
        with pytest.raises(TypeError, match=f"^{second}: expected a device array"):
            function(x_d, t)
        with pytest.raises(TypeError, match=f"^{first}: expected a device array"):
            function(x, t_d)
    with pytest.raises(TypeError, match="^weight: expected a device array"):
        fastloss.binary_cross_entropy(x_d, t_d, weight=np.ones(9))
    with pytest.raises(TypeError, match="^weight: expected a device array"):
        fastloss.binary_cross_entropy_with_logits(x_d, t_d, weight=[1.0] * 9)
    with pytest.raises(TypeError, match="^pos_weight: expected a device array"):
        fastloss.binary_cross_entropy_with_logits(x_d, t_d, pos_weight=np.ones(9))
    with pytest.raises(TypeError, match="^input: expected a device array"):
        fastloss.binary_cross_entropy(x, t, weight=cuda.to_device(np.ones(9)))


def test_shape_errors():
    rng = np.random.default_rng(9)
    x_d = cuda.to_device(_probabilities(rng, SHAPE))
    t_d = cuda.to_device(_labels(rng, SHAPE))
    short = cuda.to_device(np.ones(9))
    for name in CASES:
        if name == "kl_div":
            continue  # its target broadcasts
        with pytest.raises(ValueError, match=r"expected the shape of input.* \(5, 9\), got \(9,\)"):
            getattr(fastloss, name)(x_d, short)
    with pytest.raises(ValueError, match="weight: expected a shape that broadcasts"):
        fastloss.binary_cross_entropy(x_d, t_d, weight=cuda.to_device(np.ones(5)))
    with pytest.raises(ValueError, match="pos_weight: expected a shape that broadcasts"):
        fastloss.binary_cross_entropy_with_logits(
            x_d, t_d, pos_weight=cuda.to_device(np.ones((2, 5, 9)))
        )
    with pytest.raises(ValueError, match="shape mismatch"):
        fastloss.kl_div(x_d, short[:4], reduction="sum")
    with pytest.raises(ValueError, match="axis"):
        fastloss.binary_crossentropy(x_d, t_d, axis=2)


# --- empty inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shape, kwargs",
    [
        ("kl_div", (0, 4), {}),
        ("binary_crossentropy", (3, 0), {}),
        ("binary_crossentropy", (0, 3), {}),
        ("binary_focal_crossentropy", (3, 0), {"from_logits": True}),
        ("binary_focal_crossentropy", (0, 3), {}),
        ("binary_cross_entropy", (0, 3), {}),
        ("binary_cross_entropy_with_logits", (2, 0), {}),
        ("sigmoid_focal_loss", (0,), {}),
    ],
)
def test_empty(name, shape, kwargs):
    arrays = {"input": np.zeros(shape, np.float32), "target": np.zeros(shape, np.float32)}
    for reduction in _reductions(name):
        cpu, gpu = call(name, arrays, kwargs, reduction=reduction, return_grad=True)
        loss = host(gpu[0])
        assert loss.shape == np.shape(cpu[0]) and loss.dtype == np.asarray(cpu[0]).dtype
        np.testing.assert_array_equal(loss, cpu[0])
        assert host(gpu[1]).shape == shape
