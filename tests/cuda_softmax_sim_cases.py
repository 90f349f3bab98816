"""The softmax family's CUDA kernels under Numba's CUDA simulator (run by
``tests/test_cuda_suites.py`` in a pytest process of its own)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_softmax_sim_cases.py

Threads per block are shrunk to 4 (the row kernels', the check's and the elementwise launch
shape's, which the copies and the final reduction use, to 4 x 2), and to 2 threads per row
(2 rows a block) for rows of up to 8 classes, so a row of up to 40 classes takes up to 10
strides per thread, a row of 3 leaves a thread idle and rows of 11 and of 7 run on either kind
of kernel. Every device result
(loss, z-loss, gradient) is compared with the CPU result of the same call of
:mod:`fastloss.softmax` (itself tested against torch elsewhere). The kernels are the CPU's
point functions (which the simulator runs as the CPU compiled them), with the sums of a row in
another order, so float64 results agree to a few ulps and float32 ones, rounded from float64
row sums on both, bit for bit. The simulator runs each CUDA thread as a Python thread, so inputs
stay tiny.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from numba import cuda  # noqa: E402

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
import fastloss.kernels.cuda.softmax as cuda_softmax  # noqa: E402
from fastloss import _cuda_softmax as dev  # noqa: E402
from fastloss import softmax as cpu  # noqa: E402
from fastloss._intake import is_device_array  # noqa: E402

THREADS = 4
cuda_softmax.THREADS_PER_BLOCK = THREADS
cuda_rows.THREADS_PER_BLOCK = THREADS
cuda_rows.WARP_THREADS = 2  # rows of up to 8 columns: 2 threads, 2 rows per block
cuda_rows.SHORT_ROW = 8
cuda_factory.THREADS_PER_BLOCK = THREADS
cuda_factory.ITEMS_PER_THREAD = 2

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")
ROWS, CLASSES = 5, 11

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def host(x):
    return None if x is None else np.asarray(x.copy_to_host())


def assert_close(got, want, dtype, n, what="", ulps=8):
    """Elements to ``ulps`` ulps of ``dtype``; sums to the rounding of ``n`` terms."""
    want = np.asarray(want, dtype=np.float64)
    got_host = host(got)
    assert got_host.dtype == np.dtype(dtype), f"{what}: dtype {got_host.dtype}"
    got64 = got_host.astype(np.float64)
    assert got64.shape == want.shape, f"{what}: shape {got64.shape} != {want.shape}"
    eps = float(np.finfo(dtype).eps)
    finite = np.abs(want[np.isfinite(want)])
    scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(
        got64,
        want,
        rtol=ulps * eps,
        atol=ulps * eps * max(scale, 1.0) * max(n, 1) ** 0.5,
        err_msg=what,
    )


def logits(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (3.0 * rng.standard_normal(shape)).astype(dtype)


def targets(rows, classes, seed=0, ignore=True):
    rng = np.random.default_rng(seed + 1)
    t = rng.integers(0, classes, rows)
    t[-1] = classes - 1
    if ignore and rows > 2:
        t[1] = -100
    return t


def weights(classes, dtype, seed=0):
    return np.random.default_rng(seed + 2).uniform(0.25, 2.0, classes).astype(dtype)


def to_dev(x):
    return None if x is None else cuda.to_device(x)


def dev_ce(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0, softcap=0.0,
           z_scale=0.0, *, return_grad=False, out=None, loss="cross_entropy",
           **options):  # fmt: skip
    """The device plan of a cross-entropy (``loss="focal"``: a focal loss, with ``alpha``,
    ``gamma``) resolved as the public functions resolve it: ``(loss, z_loss, grad)``."""
    call = cpu._Call(
        loss, reduction, return_grad, ignore_index=ignore_index, smoothing=smoothing,
        softcap=softcap, z_scale=z_scale, **options,
    )  # fmt: skip
    return dev.run(call, x, t, weight, out)[:3]


def dev_nll(x, t, weight=None, ignore_index=-100, reduction="mean", return_grad=False, out=None):
    """The device plan of an NLL: ``(loss, grad)``."""
    call = cpu._Call("nll", reduction, return_grad, ignore_index=ignore_index)
    loss, _, grad, _ = dev.run(call, x, t, weight, out)
    return loss, grad


def dev_focal(x, t, alpha=1.0, gamma=2.0, reduction="mean", return_grad=False):
    """The device plan of a focal loss: ``(loss, None, grad)``."""
    options = {"alpha": alpha, "gamma": gamma, "return_grad": return_grad}
    loss, _, grad = dev_ce(x, t, None, -100, reduction, loss="focal", **options)
    return loss, None, grad


# --- cross-entropy with class indices --------------------------------------------------------

OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "smooth": {"label_smoothing": 0.2},
    "smooth-weight": {"label_smoothing": 0.1, "weight": True},
    "softcap-z": {"softcap": 2.5, "z_loss_scale": 1e-2},
    "all": {"softcap": 4.0, "z_loss_scale": 1e-3, "label_smoothing": 0.3, "weight": True},
}


def run_ce(x, t, w, options, reduction, return_grad=True, out_is_input=False):
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    want = cpu.cross_entropy(
        x,
        t,
        w,
        reduction=reduction,
        return_z_loss=True,
        return_grad=return_grad,
        **kwargs,
    )
    dx = cuda.to_device(x)
    got = dev_ce(
        dx,
        to_dev(t),
        to_dev(w),
        -100,
        reduction,
        options.get("label_smoothing", 0.0),
        options.get("softcap", 0.0),
        options.get("z_loss_scale", 0.0),
        return_grad=return_grad,
        out=dx if out_is_input else None,
    )
    return want, got, dx


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_cross_entropy_index(name, dtype, reduction):
    options = OPTIONS[name]
    x = logits((ROWS, CLASSES), dtype)
    t = targets(ROWS, CLASSES)
    w = weights(CLASSES, dtype) if options.get("weight") else None
    want, got, _ = run_ce(x, t, w, options, reduction)
    n = x.size
    assert_close(got[0], want[0], dtype, n, "loss")
    assert_close(got[1], want[1], dtype, n, "z_loss")
    assert_close(got[2], want[2], dtype, n, "grad")
    if reduction != "none":
        assert got[0].shape == ()


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_cross_entropy_forward_only_long_rows(dtype):
    """40 classes: 10 strides per thread; no gradient buffer."""
    x = logits((3, 40), dtype, seed=3)
    x[0, 7] = 60.0  # a dominant logit: the max shift matters
    t = np.array([7, 39, 0])
    want, got, _ = run_ce(x, t, None, {"label_smoothing": 0.05}, "mean", return_grad=False)
    assert got[2] is None
    assert_close(got[0], want[0], dtype, x.size, "loss")


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_cross_entropy_in_place(dtype):
    x = logits((4, 9), dtype, seed=4)
    t = targets(4, 9)
    w = weights(9, dtype)
    options = {"label_smoothing": 0.1, "softcap": 3.0, "z_loss_scale": 1e-2, "weight": True}
    want, got, dx = run_ce(x, t, w, options, "mean", out_is_input=True)
    assert got[2] is dx
    assert_close(got[2], want[2], dtype, x.size, "grad in place")
    assert_close(got[0], want[0], dtype, x.size, "loss")


def test_cross_entropy_out_other_array():
    x = logits((3, 6), np.float32, seed=5)
    t = np.array([0, 5, 2])
    out = cuda.device_array((3, 6), np.float32)
    got = dev_ce(cuda.to_device(x), to_dev(t), return_grad=True, out=out)
    want = cpu.cross_entropy(x, t, return_grad=True)
    assert got[2] is out
    assert_close(out, want[1], np.float32, x.size, "out")


def test_cross_entropy_few_classes_one_row():
    """3 classes (a thread of 4 idle) and a 1-D input: a 0-d per-row result."""
    x = logits((3,), np.float64, seed=6)
    t = np.array(2)
    want = cpu.cross_entropy(x, t, reduction="none", return_grad=True)
    got = dev_ce(cuda.to_device(x), cuda.to_device(t), reduction="none", return_grad=True)
    assert got[0].shape == ()
    assert_close(got[0], want[0], np.float64, 3, "loss")
    assert_close(got[2], want[1], np.float64, 3, "grad")


def test_cross_entropy_all_ignored_and_int32_targets():
    x = logits((3, 5), np.float32, seed=7)
    t = np.full(3, 7, np.int32)
    want = cpu.cross_entropy(x, t, ignore_index=7, return_grad=True)
    got = dev_ce(cuda.to_device(x), cuda.to_device(t), None, 7, return_grad=True)
    assert np.isnan(host(got[0])) and np.isnan(want[0])
    assert_close(got[2], want[1], np.float32, x.size, "grad")


def test_cross_entropy_mean_over_and_float16():
    x = logits((4, 6), np.float16, seed=8)
    t = np.array([1, -100, 5, 0], np.int16)
    dx, dt = cuda.to_device(x), cuda.to_device(t)
    got = cpu.sparse_categorical_crossentropy(dx, dt, from_logits=True, return_grad=True)
    want = cpu.sparse_categorical_crossentropy(x, t, from_logits=True, return_grad=True)
    assert host(got[1]).dtype == np.float16
    np.testing.assert_allclose(host(got[0]), want[0], rtol=1e-6)
    np.testing.assert_allclose(host(got[1]), want[1], rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_rows(reduction):
    x = np.zeros((0, 4), np.float32)
    t = np.zeros(0, np.int64)
    want = cpu.cross_entropy(x, t, reduction=reduction, return_grad=True)
    got = dev_ce(cuda.to_device(x), cuda.to_device(t), reduction=reduction, return_grad=True)
    np.testing.assert_array_equal(host(got[0]), want[0])
    assert host(got[2]).shape == (0, 4)
    loss, _ = dev_nll(cuda.to_device(x), cuda.to_device(t), reduction=reduction)
    np.testing.assert_array_equal(host(loss), cpu.nll_loss(x, t, reduction=reduction))


@pytest.mark.parametrize("position", [0, 4])
def test_index_error_before_writing(position):
    x = logits((5, 6), np.float32, seed=9)
    t = np.array([1, 2, 3, 4, 5])
    t[position] = 6
    dx = cuda.to_device(x)
    with pytest.raises(IndexError, match=rf"class index 6 at position \({position},\)"):
        dev_ce(dx, cuda.to_device(t), return_grad=True, out=dx)
    np.testing.assert_array_equal(host(dx), x)  # input untouched
    t[position] = -3
    with pytest.raises(IndexError, match="class index -3"):
        dev_nll(dx, cuda.to_device(t))


def test_deterministic():
    x = logits((6, 33), np.float32, seed=10)
    t = targets(6, 33)
    first = dev_ce(cuda.to_device(x), cuda.to_device(t), return_grad=True)
    again = dev_ce(cuda.to_device(x), cuda.to_device(t), return_grad=True)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(host(a), host(b))


# --- probability targets -----------------------------------------------------------------------


PROBABILITY_OPTIONS = {
    "plain": {},
    "weight-smooth": {"weight": True, "label_smoothing": 0.15},
    "z": {"z_loss_scale": 1e-2, "label_smoothing": 0.05},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(PROBABILITY_OPTIONS))
def test_cross_entropy_probabilities(name, dtype, reduction):
    """Class probabilities, the z-loss included."""
    options = PROBABILITY_OPTIONS[name]
    x = logits((ROWS, CLASSES), dtype, seed=11)
    y = np.random.default_rng(12).dirichlet(np.ones(CLASSES), ROWS).astype(dtype)
    w = weights(CLASSES, dtype) if options.get("weight") else None
    smoothing = options.get("label_smoothing", 0.0)
    z_scale = options.get("z_loss_scale", 0.0)
    want = cpu.cross_entropy(
        x, y, w, reduction=reduction, label_smoothing=smoothing, z_loss_scale=z_scale,
        return_z_loss=True, return_grad=True,
    )  # fmt: skip
    got = dev_ce(
        cuda.to_device(x),
        cuda.to_device(y),
        to_dev(w),
        -100,
        reduction,
        smoothing,
        z_scale=z_scale,
        return_grad=True,
    )
    assert_close(got[0], want[0], dtype, x.size, "loss")
    assert_close(got[1], want[1], dtype, x.size, "z_loss")
    assert_close(got[2], want[2], dtype, x.size, "grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_public_z_loss_with_probabilities(dtype, reduction):
    """The public cross_entropy takes a z-loss with class probabilities on a device too, and
    gives the CPU's loss, z-loss and gradient."""
    x = logits((ROWS, CLASSES), dtype, seed=21)
    y = np.random.default_rng(22).dirichlet(np.ones(CLASSES), ROWS).astype(dtype)
    w = weights(CLASSES, dtype)
    options = {"z_loss_scale": 1e-2, "label_smoothing": 0.1, "reduction": reduction}
    options.update(return_z_loss=True, return_grad=True)
    want = cpu.cross_entropy(x, y, w, **options)
    got = cpu.cross_entropy(cuda.to_device(x), cuda.to_device(y), cuda.to_device(w), **options)
    assert all(is_device_array(g) for g in got)
    for g, v, what in zip(got, want, ("loss", "z_loss", "grad"), strict=True):
        assert_close(g, v, dtype, x.size, what)
    assert float(np.sum(host(got[1]))) > 0


def test_probabilities_in_place():
    x = logits((3, 7), np.float64, seed=13)
    y = np.random.default_rng(14).dirichlet(np.ones(7), 3)
    want = cpu.cross_entropy(x, y, reduction="sum", return_grad=True)
    dx = cuda.to_device(x)
    got = dev_ce(dx, cuda.to_device(y), reduction="sum", return_grad=True, out=dx)
    assert got[2] is dx
    assert_close(dx, want[1], np.float64, x.size, "grad in place")


# --- NLL and focal ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
def test_nll(weighted, dtype, reduction):
    x = logits((ROWS, 9), dtype, seed=15)
    t = targets(ROWS, 9)
    w = weights(9, dtype) if weighted else None
    want = cpu.nll_loss(x, t, w, reduction=reduction, return_grad=True)
    got = dev_nll(
        cuda.to_device(x), cuda.to_device(t), to_dev(w), -100, reduction, return_grad=True
    )
    assert_close(got[0], want[0], dtype, x.size, "loss")
    assert_close(got[1], want[1], dtype, x.size, "grad")


def test_nll_in_place_forward_only():
    x = logits((4, 10), np.float32, seed=16)
    t = np.array([9, 0, -100, 3])
    want = cpu.nll_loss(x, t, return_grad=True)
    dx = cuda.to_device(x)
    got = dev_nll(dx, cuda.to_device(t), return_grad=True, out=dx)
    assert got[1] is dx
    assert_close(got[0], want[0], np.float32, x.size, "loss")
    assert_close(dx, want[1], np.float32, x.size, "grad in place")
    loss, grad = dev_nll(cuda.to_device(x), cuda.to_device(t), reduction="sum")
    assert grad is None
    assert_close(loss, cpu.nll_loss(x, t, reduction="sum"), np.float32, x.size, "sum")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (1.0, 0.0), (0.5, 1.5)])
def test_focal(alpha, gamma, dtype, reduction):
    x = logits((ROWS, 7), dtype, seed=17)
    t = targets(ROWS, 7)
    want = cpu.focal_loss(x, t, alpha, gamma, reduction, return_grad=True)
    got = dev_focal(cuda.to_device(x), cuda.to_device(t), alpha, gamma, reduction, return_grad=True)
    assert got[1] is None
    assert_close(got[0], want[0], dtype, x.size, "loss")
    assert_close(got[2], want[1], dtype, x.size, "grad")


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "focal_loss"])
def test_public_functions_dispatch_device_arrays(name):
    """The public functions recognise a device array and run the CUDA kernels; the loss
    stays on the device."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((ROWS, CLASSES)).astype(np.float32)
    t = rng.integers(0, CLASSES, ROWS)
    t[1] = -100
    fn = getattr(cpu, name)
    want_loss, want_grad = fn(x, t, return_grad=True)
    loss, grad = fn(cuda.to_device(x), cuda.to_device(t), return_grad=True)
    assert is_device_array(loss) and is_device_array(grad)
    assert_close(loss, want_loss, np.float32, ROWS, name)
    assert_close(grad, want_grad, np.float32, ROWS, name)


# --- K-dimensional inputs: (N, C, d1, ..., dk), classes along dim 1 ---------------------------

KDIM = [((2, 5, 3), (2, 3)), ((2, 4, 2, 3), (2, 2, 3)), ((1, 3, 1), (1, 1))]


@pytest.mark.parametrize("shape, tshape", KDIM, ids=["3d", "4d", "3d-ones"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_k_dimensional_index_targets(shape, tshape, reduction):
    rng = np.random.default_rng(9)
    x = logits(shape, np.float64, seed=9)
    t = rng.integers(0, shape[1], tshape)
    t.flat[0] = -100
    w = weights(shape[1], np.float64)
    for fn, kwargs in (
        (cpu.cross_entropy, {"weight": w, "label_smoothing": 0.1}),
        (cpu.nll_loss, {"weight": w}),
        (cpu.focal_loss, {"gamma": 1.5}),
    ):
        want_loss, want_grad = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
        dev_kwargs = {k: to_dev(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        loss, grad = fn(
            cuda.to_device(x),
            cuda.to_device(t),
            reduction=reduction,
            return_grad=True,
            **dev_kwargs,
        )
        assert host(grad).shape == shape and host(loss).shape == np.shape(want_loss)
        assert_close(loss, want_loss, np.float64, x.size, fn.__name__)
        assert_close(grad, want_grad, np.float64, x.size, fn.__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("shape, tshape", KDIM[:2], ids=["3d", "4d"])
def test_k_dimensional_probabilities_and_in_place(shape, tshape, dtype):
    """Written in place with the class axis moved: the gradient is computed in the logits'
    copy with the classes last (float32 for float16 logits), then moved back into them."""
    rng = np.random.default_rng(10)
    x = logits(shape, dtype, seed=10)
    p = rng.random(shape).astype(dtype)
    p /= p.sum(1, keepdims=True)
    want_loss, want_grad = cpu.cross_entropy(x, p, return_grad=True)
    dx = cuda.to_device(x)
    loss, grad = cpu.cross_entropy(dx, cuda.to_device(p), return_grad=True, out=dx)
    assert grad is dx
    assert_close(loss, want_loss, np.float32, x.size, "loss")
    assert_close(grad, want_grad, dtype, x.size, "grad")
    t = rng.integers(0, shape[1], tshape)
    want_loss, want_grad = cpu.cross_entropy(x, t, return_grad=True)
    dx = cuda.to_device(x)
    loss, grad = cpu.cross_entropy(dx, cuda.to_device(t), return_grad=True, out=dx)
    assert grad is dx
    assert_close(loss, want_loss, np.float32, x.size, "loss, class indices")
    assert_close(grad, want_grad, dtype, x.size, "grad in place")


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_online_softmax_rescaling_and_masks(dtype):
    """The running maximum grows late in a thread's stride (rescaling), -inf logits (masks)
    come first in some strides and fill a whole stride in another, and a row holds NaN."""
    x = logits((4, 23), dtype, seed=11)
    x[0, :] = np.linspace(-5.0, 40.0, 23)  # increasing: every step rescales
    x[1, :8] = -np.inf  # the first two strides of every thread start with masks
    x[2, ::4] = -np.inf  # thread 0's whole stride is masked
    x[3, 5] = np.nan
    t = np.array([22, 9, 1, 0])
    want_loss, want_grad = cpu.cross_entropy(x, t, reduction="none", return_grad=True)
    loss, grad = cpu.cross_entropy(
        cuda.to_device(x), cuda.to_device(t), reduction="none", return_grad=True
    )
    assert_close(loss, want_loss, dtype, x.shape[1], "loss")
    assert_close(grad, want_grad, dtype, x.shape[1], "grad")
    assert np.isnan(host(loss)[3]) and np.all(host(grad)[1, :8] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_inf_class_weight_with_smoothing(reduction):
    """An inf class weight with label smoothing: every row's loss is inf, as torch's and the
    CPU's (the smoothing sum leaves out the row maxima's 0 * inf)."""
    x = logits((ROWS, CLASSES), np.float64)
    t = targets(ROWS, CLASSES, ignore=False)
    w = weights(CLASSES, np.float64)
    w[int(np.argmax(x[0]))] = np.inf  # the maximum of row 0, at least
    want, got, _ = run_ce(x, t, w, {"label_smoothing": 0.1}, reduction)
    assert np.all(np.isposinf(want[0]))
    np.testing.assert_array_equal(host(got[0]), want[0])
    np.testing.assert_array_equal(np.isnan(host(got[2])), np.isnan(want[2]))


# --- bits, layouts ------------------------------------------------------------------------------

BIT_CASES = {
    "index": (cpu.cross_entropy, "index", {"weight": True, "label_smoothing": 0.1}),
    "softcap-z": (cpu.cross_entropy, "index", {"softcap": 2.5, "z_loss_scale": 1e-2}),
    "probabilities": (cpu.cross_entropy, "probs", {"weight": True, "label_smoothing": 0.1}),
    "nll": (cpu.nll_loss, "index", {"weight": True}),
    "focal": (cpu.focal_loss, "index", {"alpha": 0.25, "gamma": 1.5}),
}


@pytest.mark.parametrize("short", [8, 64], ids=["block", "warp"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", list(BIT_CASES))
def test_float32_bits_match_the_cpu(name, reduction, short, monkeypatch):
    """float32 results are rounded from float64 row sums on both targets, the column values
    being the same point functions: under the simulator the bits are the CPU's (rows of 37
    classes in 9 strides of a block's 4 threads, or 18 strides of 2 threads where rows of up
    to 64 classes are short, against the CPU's 16 lanes)."""
    monkeypatch.setattr(cuda_rows, "SHORT_ROW", short)
    fn, kind, options = BIT_CASES[name]
    x = logits((6, 37), np.float32, seed=30)
    if kind == "probs":
        t = np.random.default_rng(31).dirichlet(np.ones(37), 6).astype(np.float32)
    else:
        t = targets(6, 37, seed=30)
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    if options.get("weight"):
        kwargs["weight"] = weights(37, np.float32, seed=30)
    want = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
    device_kwargs = {k: to_dev(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    got = fn(
        cuda.to_device(x), cuda.to_device(t), reduction=reduction, return_grad=True,
        **device_kwargs,
    )  # fmt: skip
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(host(g), w)
        assert host(g).dtype == np.asarray(w).dtype


def strided(x):
    """``x`` on the device as a view that is not contiguous (its last two axes swapped in
    memory)."""
    swapped = np.ascontiguousarray(np.swapaxes(x, -1, -2))
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return cuda.to_device(swapped).transpose(axes)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["f16", "f32"])
def test_k_dimensional_strided_input_and_out(dtype):
    """Torch's layout from a strided input (a device copy with the class axis moved last) in
    float16 (computed in float32) and float32, the gradient into a strided ``out``."""
    shape = (2, 5, 3)
    x = logits(shape, dtype, seed=20)
    t = np.random.default_rng(20).integers(0, 5, (2, 3))
    t[0, 1] = -100
    w = weights(5, np.float32, seed=20)
    for fn, kwargs in (
        (cpu.cross_entropy, {"weight": w, "label_smoothing": 0.1}),
        (cpu.nll_loss, {"weight": w}),
        (cpu.focal_loss, {"gamma": 1.5}),
    ):
        want_loss, want_grad = fn(x, t, reduction="none", return_grad=True, **kwargs)
        dev_kwargs = {k: to_dev(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        out = strided(np.zeros(shape, dtype))
        loss, grad = fn(
            strided(x), cuda.to_device(t), reduction="none", return_grad=True, out=out,
            **dev_kwargs,
        )  # fmt: skip
        assert grad is out
        assert_close(loss, want_loss, np.float32, x.size, f"{fn.__name__} loss")
        assert_close(grad, want_grad, dtype, x.size, f"{fn.__name__} grad")
        loss, grad = fn(strided(x), cuda.to_device(t), return_grad=True, **dev_kwargs)
        assert host(grad).dtype == np.dtype(dtype) and host(grad).shape == shape
        want_loss, want_grad = fn(x, t, return_grad=True, **kwargs)
        assert_close(loss, want_loss, np.float32, x.size, f"{fn.__name__} mean")
        assert_close(grad, want_grad, dtype, x.size, f"{fn.__name__} mean grad")


def test_uint64_and_strided_targets():
    """uint64 class indices (one check, values beyond int64 refused whatever ignore_index)
    and a strided int32 target (a device copy)."""
    x = logits((4, 6), np.float64, seed=23)
    t = np.array([5, 0, 3, 1])
    want = cpu.cross_entropy(x, t, return_grad=True)
    for target in (
        cuda.to_device(t.astype(np.uint64)),
        cuda.to_device(np.stack([t, t], 1).astype(np.int32))[:, 1],
    ):
        got = cpu.cross_entropy(cuda.to_device(x), target, return_grad=True)
        assert_close(got[0], want[0], np.float64, x.size, "loss")
        assert_close(got[1], want[1], np.float64, x.size, "grad")
    big = cuda.to_device(np.array([5, 2**64 - 100, 3, 1], np.uint64))
    with pytest.raises(IndexError, match=rf"class index {2**64 - 100} at position \(1,\)"):
        cpu.cross_entropy(cuda.to_device(x), big)
