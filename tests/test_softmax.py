"""The softmax-family losses of ``fastloss.softmax`` against the real libraries.

torch dialect (``cross_entropy``, ``nll_loss``, ``focal_loss``): values and autograd gradients of
``torch.nn.functional`` on the same inputs in the same dtype. The extras of ``cross_entropy``
(``softcap``, ``z_loss_scale``) and ``focal_loss`` (seed 001's definition) are written here as
torch ops composed with torch's ``cross_entropy``, and differentiated by autograd.

Keras dialect (``categorical_crossentropy``, ``sparse_categorical_crossentropy``,
``categorical_focal_crossentropy``): the Keras 3 loss classes on the torch backend, gradients by
autograd through Keras. Keras rounds its ``sum_over_batch_size`` reduction to float32 even for
float64 inputs (``reduce_values`` divides by an int32 count), so the float64 digits of "mean"
come from Keras's float64 ``"sum"`` divided by the batch size, and the mean is checked against
the Keras class with its default reduction at float32 tolerance.

Tolerances: relative 2e-5 in float32 and 1e-10 in float64, plus an absolute slack of a few ulps
of the largest input (values) or of the largest gradient entry (gradients).
"""

from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
import pytest
from conftest import assert_close, compute_dtype, eps, keras, torch

from fastloss import softmax as sm

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")
DTYPE_IDS = {np.float32: "f32", np.float64: "f64"}


def _id(value):
    return DTYPE_IDS.get(value)


def rtol_of(dtype) -> float:
    return 2e-5 if compute_dtype(dtype).itemsize == 4 else 1e-10


def _finite_max(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a), where=np.isfinite(a), initial=0.0))


def _tensor(value, dtype=None, grad=False):
    array = np.array(value, dtype=dtype, order="C")  # a native-order copy, 0-d kept
    tensor = torch().from_numpy(array)
    if grad:
        tensor.requires_grad_(True)
    return tensor


def _numpy(loss, reduction):
    value = loss.detach().numpy()
    return value if reduction == "none" else value[()]


def _grad_of(tensor):
    if tensor.grad is None:
        return np.zeros(tuple(tensor.shape), tensor.detach().numpy().dtype)
    return tensor.grad.numpy()


# --- the torch references ----------------------------------------------------------------------


def torch_cross_entropy(
    x,
    target,
    reduction="mean",
    *,
    z=False,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    softcap=None,
    z_loss_scale=0.0,
):
    """torch's cross_entropy (after ``softcap * tanh(x / softcap)``), plus the z-loss
    ``z_loss_scale * logsumexp**2`` per non-ignored row reduced like the unweighted loss.
    Returns ``(loss, z_loss or None, grad)`` as NumPy values; the loss includes the z-loss."""
    t = torch()
    dtype = compute_dtype(np.asarray(x).dtype)
    xt = _tensor(x, dtype, grad=True)
    target = np.asarray(target)
    soft = target.dtype.kind == "f"
    tt = _tensor(target, dtype) if soft else _tensor(target.astype(np.int64))
    kwargs = {"reduction": reduction, "label_smoothing": label_smoothing}
    if weight is not None:
        kwargs["weight"] = _tensor(weight, dtype)
    if not soft:
        kwargs["ignore_index"] = ignore_index
    logits = xt if softcap is None else softcap * t.tanh(xt / softcap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = t.nn.functional.cross_entropy(logits, tt, **kwargs)
    z_loss = None
    if z:
        lse = t.logsumexp(logits, dim=0 if xt.ndim == 1 else 1)
        rows = z_loss_scale * lse**2
        keep = t.ones(rows.shape, dtype=t.bool) if soft else tt != ignore_index
        rows = t.where(keep, rows, t.zeros((), dtype=rows.dtype))
        if reduction == "mean":
            z_loss = rows.sum() / keep.sum()
        elif reduction == "sum":
            z_loss = rows.sum()
        else:
            z_loss = rows
        loss = loss + z_loss
    (loss if reduction != "none" else loss.sum()).backward()
    z_value = None if z_loss is None else _numpy(z_loss, reduction)
    return _numpy(loss, reduction), z_value, _grad_of(xt)


def torch_nll_loss(x, target, reduction="mean", *, weight=None, ignore_index=-100):
    dtype = compute_dtype(np.asarray(x).dtype)
    xt = _tensor(x, dtype, grad=True)
    tt = _tensor(np.asarray(target).astype(np.int64))
    w = None if weight is None else _tensor(weight, dtype)
    loss = torch().nn.functional.nll_loss(
        xt, tt, weight=w, ignore_index=ignore_index, reduction=reduction
    )
    (loss if reduction != "none" else loss.sum()).backward()
    return _numpy(loss, reduction), _grad_of(xt)


def torch_focal_loss(x, target, reduction="mean", *, alpha=1.0, gamma=2.0, ignore_index=-100):
    """Seed 001's FocalLoss: alpha * (1 - p_t)**gamma * ce per row, p_t = exp(-ce), with
    ce = cross_entropy(reduction="none"); the mean runs over the non-ignored rows. Ignored rows
    are left out before the power (autograd of (1 - p_t)**gamma at p_t = 1 is 0 * inf)."""
    t = torch()
    dtype = compute_dtype(np.asarray(x).dtype)
    xt = _tensor(x, dtype, grad=True)
    tt = _tensor(np.asarray(target).astype(np.int64))
    ce = t.nn.functional.cross_entropy(xt, tt, reduction="none", ignore_index=ignore_index)
    keep = tt != ignore_index
    ce_kept = ce[keep]
    focal = alpha * (1 - t.exp(-ce_kept)) ** gamma * ce_kept
    if reduction == "mean":
        loss = focal.mean()
    elif reduction == "sum":
        loss = focal.sum()
    else:
        loss = t.zeros_like(ce).masked_scatter(keep, focal)
    (loss if reduction != "none" else loss.sum()).backward()
    return _numpy(loss, reduction), _grad_of(xt)


# --- comparing ---------------------------------------------------------------------------------


def assert_result(loss, grad, want_loss, want_grad, x, reduction, *, value_atol=None, what=""):
    """fastloss's ``(loss, grad)`` against the reference's: types, dtypes, shapes, numbers.

    The loss: a NumPy scalar of the compute dtype (an array of it for "none"), within rtol
    and a few ulps of the largest input (times the row count for a sum). The gradient: an
    array in the input's floating dtype and shape, within rtol elementwise plus rtol and a few
    ulps of the largest gradient entry.
    """
    x = np.asarray(x)
    dtype = compute_dtype(x.dtype)
    rtol = rtol_of(dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray), f"{what} loss: expected an array, got {loss!r}"
        assert loss.shape == np.shape(want_loss), f"{what} loss shape {loss.shape}"
    else:
        assert isinstance(loss, np.generic), f"{what} loss: expected a NumPy scalar: {loss!r}"
    assert loss.dtype == dtype, f"{what} loss dtype {loss.dtype}, expected {dtype}"
    if value_atol is None:
        rows = max(x.size // x.shape[1], 1) if x.ndim > 1 and x.shape[1] else 1
        value_atol = 16 * eps(dtype) * max(1.0, _finite_max(x))
        if reduction == "sum":
            value_atol *= rows
    assert_close(loss, want_loss, rtol=rtol, atol=value_atol, what=f"{what} loss")
    grad_dtype = x.dtype.newbyteorder("=") if x.dtype.kind == "f" else dtype
    assert isinstance(grad, np.ndarray), f"{what} grad: {type(grad)}"
    assert grad.dtype == grad_dtype, f"{what} grad dtype {grad.dtype}, expected {grad_dtype}"
    assert grad.shape == x.shape, f"{what} grad shape {grad.shape}, expected {x.shape}"
    gatol = (rtol + 16 * eps(dtype)) * _finite_max(want_grad)
    assert_close(grad, want_grad, rtol=rtol, atol=gatol, what=f"{what} grad")


def check_cross_entropy(x, target, reduction="mean", *, z=False, value_atol=None, **kwargs):
    """fastloss's cross_entropy (fused and forward-only) against torch's; returns fastloss's
    fused ``(loss, z_loss or None, grad)``."""
    want_loss, want_z, want_grad = torch_cross_entropy(x, target, reduction, z=z, **kwargs)
    if z:
        loss, z_loss, grad = sm.cross_entropy(
            x, target, reduction=reduction, return_z_loss=True, return_grad=True, **kwargs
        )
        alone, alone_z = sm.cross_entropy(
            x, target, reduction=reduction, return_z_loss=True, **kwargs
        )
        dtype = compute_dtype(np.asarray(x).dtype)
        assert np.asarray(z_loss).dtype == dtype
        assert_close(z_loss, want_z, rtol=rtol_of(dtype), atol=1e-30, what="z_loss")
        assert_close(alone_z, z_loss, rtol=8 * eps(dtype), atol=1e-30, what="z_loss alone")
    else:
        loss, grad = sm.cross_entropy(x, target, reduction=reduction, return_grad=True, **kwargs)
        alone = sm.cross_entropy(x, target, reduction=reduction, **kwargs)
        z_loss = None
    assert_result(loss, grad, want_loss, want_grad, x, reduction, value_atol=value_atol)
    dtype = compute_dtype(np.asarray(x).dtype)
    atol = 16 * eps(dtype) * max(1.0, _finite_max(loss))
    assert_close(alone, loss, rtol=8 * eps(dtype), atol=atol, what="loss without grad")
    return loss, z_loss, grad


# --- inputs ------------------------------------------------------------------------------------


def _logits(rng, shape, scale=3.0):
    return scale * rng.standard_normal(shape)


def _classes(rng, shape, c, ignore=None, fraction=0.3):
    t = rng.integers(0, c, shape)
    if ignore is not None:
        t = np.where(rng.random(shape) < fraction, ignore, t)
    return t.astype(np.int64)


def _probabilities(rng, shape, axis=1, normalized=True):
    p = rng.uniform(0.0, 1.0, shape) ** 2
    if normalized:
        p = p / p.sum(axis=axis, keepdims=True)
    return p


def _build(name: str, rng):
    """``(x, target, kwargs)`` of a named cross_entropy case, in float64."""
    kw: dict = {}
    shape, c = (7, 5), 5
    if name.startswith("kdim2"):
        shape = (2, 4, 3, 2)
    elif name.startswith("kdim1") or name == "zloss-kdim":
        shape = (4, 5, 3)
    elif name.startswith("vector") or name == "zloss-vector":
        shape = (6,)
    elif name == "one-class":
        shape = (4, 1)
    c = shape[0] if len(shape) == 1 else shape[1]
    rows = () if len(shape) == 1 else (shape[0],) + shape[2:]
    x = _logits(rng, shape, 10.0 if "softcap" in name else 3.0)
    soft = "prob" in name
    ignore = None
    if "ignore" in name or name in ("kdim2", "kdim1", "zloss-kdim"):
        ignore = -100
    if name == "ignore-class":
        ignore = 2
        kw["ignore_index"] = 2
    if soft:
        axis = 0 if len(shape) == 1 else 1
        t = _probabilities(rng, shape, axis, normalized="raw" not in name)
    else:
        t = _classes(rng, rows, c, ignore)
        if ignore is not None and t.ndim and (t != ignore).all():
            t.flat[0] = ignore
    if "weight" in name or name in ("kdim1", "kdim2-prob"):
        kw["weight"] = rng.uniform(0.2, 2.0, c)
    if "smooth" in name:
        kw["label_smoothing"] = 1.0 if name == "smooth-one" else 0.25
    if "softcap" in name:
        kw["softcap"] = 5.0
    if name.startswith("zloss"):
        kw["z_loss_scale"] = 0.0 if name == "zloss-zero-scale" else 1e-2
    if name == "vector-ignored":
        t = np.array(-100)
    if name == "all-ignored":
        t = np.full(rows, -100)
        kw["weight"] = rng.uniform(0.2, 2.0, c)
        kw["label_smoothing"] = 0.1
    if name == "one-class":
        t = np.zeros(rows, np.int64)
    return x, t, kw


CE_CASES = [
    "basic",
    "weight",
    "ignore",
    "ignore-class",
    "ignore-weight",
    "smooth",
    "smooth-weight",
    "smooth-weight-ignore",
    "smooth-one",
    "prob",
    "prob-raw",
    "prob-weight",
    "prob-smooth",
    "prob-weight-smooth",
    "kdim1",
    "kdim1-smooth",
    "kdim2",
    "kdim2-prob",
    "vector",
    "vector-weight-smooth",
    "vector-prob",
    "vector-ignored",
    "all-ignored",
    "one-class",
    "softcap",
    "softcap-smooth-weight-ignore",
    "zloss",
    "zloss-ignore-weight-smooth",
    "zloss-softcap",
    "zloss-prob",
    "zloss-kdim",
    "zloss-vector",
    "zloss-zero-scale",
]


def _seed(*parts) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(repr(parts))) % (2**32)


# --- cross_entropy against torch ---------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("case", CE_CASES)
def test_cross_entropy_matches_torch(case, dtype, reduction):
    rng = np.random.default_rng(_seed(case))
    x, t, kw = _build(case, rng)
    x = x.astype(dtype)
    if t.dtype.kind == "f":
        t = t.astype(dtype)
    if "weight" in kw:
        kw["weight"] = kw["weight"].astype(dtype)
    loss, _, grad = check_cross_entropy(x, t, reduction, z=case.startswith("zloss"), **kw)
    if case in ("all-ignored", "vector-ignored"):
        if reduction == "mean":
            assert np.isnan(loss)  # torch: 0 / 0
        else:
            assert (np.asarray(loss) == 0).all()
        assert (grad == 0).all()


def test_cross_entropy_return_order_and_z_loss_convention():
    rng = np.random.default_rng(1)
    x = _logits(rng, (6, 4))
    t = _classes(rng, (6,), 4)
    plain = sm.cross_entropy(x, t)
    assert isinstance(plain, np.generic)
    pair = sm.cross_entropy(x, t, return_grad=True)
    assert isinstance(pair, tuple) and len(pair) == 2
    # return_z_loss: (loss, z_loss), the loss including z_loss (Liger-Kernel's convention)
    loss, z_loss = sm.cross_entropy(x, t, z_loss_scale=0.5, return_z_loss=True)
    assert z_loss > 0
    assert_close(loss - z_loss, plain, rtol=1e-12)
    lse = np.log(np.exp(x).sum(axis=1))
    assert_close(z_loss, 0.5 * np.mean(lse**2), rtol=1e-12)
    triple = sm.cross_entropy(x, t, z_loss_scale=0.5, return_z_loss=True, return_grad=True)
    assert len(triple) == 3 and triple[2].shape == x.shape
    assert triple[0] == loss and triple[1] == z_loss
    # z_loss_scale adds to the loss without return_z_loss too
    assert_close(sm.cross_entropy(x, t, z_loss_scale=0.5), loss, rtol=1e-12)
    # no z_loss_scale: z_loss is 0
    loss0, zero = sm.cross_entropy(x, t, return_z_loss=True)
    assert zero == 0 and loss0 == plain


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("c", [2, 3, 17, 1000, 4097, 32768, 70000])
def test_class_counts(c, dtype):
    rng = np.random.default_rng(c)
    n = 9 if c < 1000 else 3
    x = _logits(rng, (n, c)).astype(dtype)
    t = _classes(rng, (n,), c)
    t[1] = -100
    w = rng.uniform(0.2, 2.0, c).astype(dtype)
    for reduction in REDUCTIONS:
        check_cross_entropy(x, t, reduction)
    check_cross_entropy(x, t, "mean", weight=w, label_smoothing=0.1)
    check_cross_entropy(x, t, "sum", z=True, z_loss_scale=1e-3, softcap=4.0)
    p = _probabilities(rng, (n, c)).astype(dtype)
    check_cross_entropy(x, p, "mean")
    check_cross_entropy(x, p, "none", weight=w, label_smoothing=0.05)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_logits_with_a_large_common_offset(dtype):
    """Logits around 1e4 (float32 spacing 1e-3 there): torch subtracts the row maximum first,
    so its losses and softmax keep full relative accuracy. ``lse - x_t`` or ``exp(x - lse)``
    with ``lse`` rounded near 1e4 would lose three digits in float32; no absolute slack here."""
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((16, 6))).astype(dtype)
    t = _classes(rng, (16,), 6)
    for reduction in REDUCTIONS:
        check_cross_entropy(x, t, reduction, value_atol=0.0)
        check_cross_entropy(x, t, reduction, value_atol=0.0, label_smoothing=0.2)


INF = np.inf
EXTREME_ROWS = [
    ([1e4, -1e4, 0.0, 1.0, 2.0], 0),  # confident and right
    ([1e4, -1e4, 0.0, 1.0, 2.0], 1),  # confident and wrong: 2e4
    ([100.0, -100.0, 50.0, -50.0, 0.0], 2),
    ([-100.0, 100.0, 100.0, -100.0, 0.0], 3),
    ([0.0, -INF, 1.0, -INF, 2.0], 2),  # -inf in non-target entries
    ([3.0, 3.0, 3.0, 3.0, 3.0], 4),  # all equal: log 5
    ([-1e4, -1e4, -1e4, -1e4, -1e4], 0),
    ([1e4, 1e4, 1e4, 1e4, 1e4], 3),
    ([-1e4, 1e4, -1e4, -INF, 1e4], 1),
]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_extreme_logits(dtype, reduction, smoothing):
    """±1e4, ±100, -inf in non-target entries, all-equal rows. With label smoothing the -inf
    entries make torch's loss +inf (the smoothing term takes every log-probability), while
    the gradient stays finite."""
    x = np.array([row for row, _ in EXTREME_ROWS], dtype)
    t = np.array([target for _, target in EXTREME_ROWS])
    loss, _, grad = check_cross_entropy(x, t, reduction, label_smoothing=smoothing)
    assert np.isfinite(grad).all()
    if reduction == "none":
        assert_close(loss[5], np.log(5.0), rtol=rtol_of(dtype), what="all equal: log C")
        if smoothing == 0:
            assert_close(loss[1], 2e4, rtol=rtol_of(dtype))
        assert (loss[4] == INF) == (smoothing > 0)
    w = np.array([0.5, 1.0, 2.0, 1.5, 0.25], dtype)
    check_cross_entropy(x, t, reduction, label_smoothing=smoothing, weight=w)
    # probability targets on the rows without -inf (for those see the test below)
    finite = np.isfinite(x).all(axis=1)
    check_cross_entropy(x[finite], np.full(x[finite].shape, 0.2, dtype), reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_infinite_logits_like_torch(dtype, reduction):
    """-inf at the target: loss +inf, gradient finite (softmax - one-hot). +inf anywhere or a
    row of -inf: NaN loss and NaN gradient in that row, other rows untouched."""
    x = np.array([[0.0, 1.0, -INF], [INF, 0.0, 1.0], [-INF, -INF, -INF], [0.5, -0.5, 2.0]], dtype)
    t = np.array([2, 0, 0, 1])
    loss, _, grad = check_cross_entropy(x, t, reduction)
    scale = 4.0 if reduction == "mean" else 1.0
    np.testing.assert_allclose(grad[0] * scale, [0.26894142, 0.73105858, -1.0], rtol=1e-6)
    assert np.isnan(grad[1:3]).all() and np.isfinite(grad[3]).all()
    if reduction == "none":
        assert loss[0] == INF and np.isnan(loss[1:3]).all()


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_probability_target_zero_mass_on_minus_inf(dtype):
    """torch's soft-target loss is -sum(y * log_softmax(x)): a class with y = 0 and x = -inf
    gives 0 * -inf = NaN, so the loss is NaN; its gradient p * sum(y) - y stays finite."""
    x = np.array([[0.0, -INF, 1.0], [2.0, 1.0, 0.0]], dtype)
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype)
    for reduction in REDUCTIONS:
        loss, _, grad = check_cross_entropy(x, p, reduction)
        assert np.isnan(loss).any() and np.isfinite(grad).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_nan_propagates(dtype, reduction):
    """NaN in a row's logits or in its probability target: that row's loss and gradient are
    NaN, the other rows' are not touched."""
    rng = np.random.default_rng(5)
    x = _logits(rng, (5, 4)).astype(dtype)
    x[2, 1] = np.nan
    t = _classes(rng, (5,), 4)
    loss, _, grad = check_cross_entropy(x, t, reduction)
    assert np.isnan(grad[2]).all() and np.isfinite(np.delete(grad, 2, 0)).all()
    check_cross_entropy(x, t, reduction, label_smoothing=0.2, weight=np.ones(4, dtype))
    x = _logits(rng, (5, 4)).astype(dtype)
    p = _probabilities(rng, (5, 4)).astype(dtype)
    p[3, 0] = np.nan
    loss, _, grad = check_cross_entropy(x, p, reduction)
    assert np.isnan(grad[3]).all() and np.isfinite(np.delete(grad, 3, 0)).all()
    if reduction == "none":
        assert np.isnan(loss[3]) and np.isfinite(np.delete(loss, 3)).all()


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_nan_logits_in_an_ignored_row(dtype):
    """An ignored row does not enter the loss even when its logits are NaN. (torch's
    autograd gives that row a NaN gradient, 0 * NaN in log_softmax's backward; the fused
    gradient of an ignored row is not compared here.)"""
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 0.5, -1.0]], dtype)
    t = np.array([-100, 1, 0])
    for reduction in REDUCTIONS:
        want_loss, _, want_grad = torch_cross_entropy(x, t, reduction)
        loss, grad = sm.cross_entropy(x, t, reduction=reduction, return_grad=True)
        assert_close(loss, want_loss, rtol=rtol_of(dtype), what="loss")
        assert np.isfinite(np.asarray(loss)).all()
        assert_close(grad[1:], want_grad[1:], rtol=rtol_of(dtype), atol=1e-30, what="grad")


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_empty_batch(dtype):
    """N = 0 (and an empty spatial dimension): torch's mean is NaN (0 / 0), its sum 0."""
    cases = [
        (np.zeros((0, 4), dtype), np.zeros((0,), np.int64)),
        (np.zeros((0, 4), dtype), np.zeros((0, 4), dtype)),
        (np.zeros((2, 4, 0), dtype), np.zeros((2, 0), np.int64)),
    ]
    for x, t in cases:
        for reduction in REDUCTIONS:
            loss, _, grad = check_cross_entropy(x, t, reduction)
            if reduction == "mean":
                assert np.isnan(loss)
            elif reduction == "sum":
                assert loss == 0
            else:
                assert loss.size == 0  # in torch's shape: assert_result


def test_float16_computes_in_float32():
    rng = np.random.default_rng(6)
    x = _logits(rng, (6, 5)).astype(np.float16)
    t = _classes(rng, (6,), 5, ignore=-100)
    loss, grad = sm.cross_entropy(x, t, return_grad=True)
    assert loss.dtype == np.float32 and grad.dtype == np.float16
    want_loss, _, want_grad = torch_cross_entropy(x.astype(np.float32), t)
    assert_close(loss, want_loss, rtol=2e-5)
    assert_close(grad, want_grad.astype(np.float16), rtol=1e-3, atol=1e-4)


def test_python_sequences():
    x = [[1.2, 0.5, 2.1], [0.1, 2.0, 1.5]]
    t = [2, 1]
    loss, grad = sm.cross_entropy(x, t, return_grad=True)
    assert loss.dtype == np.float64 and grad.dtype == np.float64
    want_loss, _, want_grad = torch_cross_entropy(np.array(x), np.array(t))
    assert_close(loss, want_loss, rtol=1e-12)
    assert_close(grad, want_grad, rtol=1e-12)


# --- target dtypes -----------------------------------------------------------------------------

INDEX_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]


@pytest.mark.parametrize("tdtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
def test_class_index_dtypes(tdtype):
    """Every integer dtype gives the bits of int64 targets; the ignore_index is compared by
    value (-100 for signed targets, 200 for unsigned ones)."""
    rng = np.random.default_rng(7)
    x = _logits(rng, (12, 6)).astype(np.float32)
    ignore = 200 if np.dtype(tdtype).kind == "u" else -100
    t64 = _classes(rng, (12,), 6, ignore=ignore)
    t = t64.astype(tdtype)
    for reduction in REDUCTIONS:
        kw = {"ignore_index": ignore, "label_smoothing": 0.1}
        got = sm.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
        want = sm.cross_entropy(x, t64, reduction=reduction, return_grad=True, **kw)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        check_cross_entropy(x, t, reduction, **kw)


# --- class indices out of range ----------------------------------------------------------------


def _functions():
    return [
        pytest.param(sm.cross_entropy, id="cross_entropy"),
        pytest.param(sm.nll_loss, id="nll_loss"),
        pytest.param(sm.focal_loss, id="focal_loss"),
    ]


@pytest.mark.parametrize("return_grad", [False, True])
@pytest.mark.parametrize("function", _functions())
def test_one_bad_class_index_among_a_million(function, return_grad):
    """torch raises IndexError ("Target 17 is out of bounds."); fastloss names the value and
    where it is."""
    rng = np.random.default_rng(8)
    n = 10**6
    x = rng.standard_normal((n, 4), dtype=np.float32)
    t = rng.integers(0, 4, n)
    t[654321] = 17
    with pytest.raises(IndexError) as raised:
        function(x, t, return_grad=return_grad)
    message = str(raised.value)
    assert re.search(r"(?<![\d.])17(?![\d.])", message), message
    assert "654321" in message, message


@pytest.mark.parametrize("bad", [-1, -2, -101, 4, 5, 2**31])
@pytest.mark.parametrize("function", _functions())
def test_bad_class_indices_raise_index_error(function, bad):
    x = np.zeros((3, 4))
    t = np.array([0, bad, 3])
    with pytest.raises(IndexError, match=re.escape(str(bad))):
        function(x, t)
    with pytest.raises(IndexError):  # torch refuses too
        torch().nn.functional.nll_loss(_tensor(x), _tensor(t))


def test_negative_indices_other_than_ignore_index():
    x = np.zeros((3, 4))
    # -1 is the ignore_index here: allowed; -2 is not
    loss = sm.cross_entropy(x, np.array([0, -1, 3]), ignore_index=-1)
    assert_close(loss, np.log(4.0), rtol=1e-12)
    with pytest.raises(IndexError, match="-2"):
        sm.cross_entropy(x, np.array([0, -2, 3]), ignore_index=-1)
    with pytest.raises(IndexError, match="-100"):  # -100 is a class once ignore_index moved
        sm.cross_entropy(x, np.array([0, -100, 3]), ignore_index=-1)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_kdim_bad_class_index(name):
    x = np.zeros((2, 3, 4, 5))
    t = np.zeros((2, 4, 5), np.int64)
    t[1, 2, 3] = 9
    with pytest.raises(IndexError, match="9"):
        getattr(sm, name)(x, t)


@pytest.mark.parametrize("function", _functions())
def test_index_error_leaves_out_untouched(function):
    """The error is raised before anything is written: with out=input the input still holds
    its logits."""
    rng = np.random.default_rng(9)
    x = _logits(rng, (1000, 5))
    t = rng.integers(0, 5, 1000)
    t[-1] = 5
    before = x.copy()
    with pytest.raises(IndexError):
        function(x, t, return_grad=True, out=x)
    np.testing.assert_array_equal(x, before)


# --- array kinds and out= ----------------------------------------------------------------------


def _kinds(x, t, kind):
    if kind == "strided":
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
        wide[:, ::2] = x
        x = wide[:, ::2]
        tw = np.zeros(2 * t.shape[0], t.dtype)
        tw[::2] = t
        t = tw[::2]
    elif kind == "reversed":
        x = x[::-1, ::-1].copy()[::-1, ::-1]
        t = t[::-1].copy()[::-1]
    elif kind == "fortran":
        x = np.asfortranarray(x)
    elif kind == "readonly":
        x = x.copy()
        t = t.copy()
        x.flags.writeable = False
        t.flags.writeable = False
    elif kind == "list":
        x, t = x.tolist(), t.tolist()
    return x, t


@pytest.mark.parametrize("kind", ["strided", "reversed", "fortran", "readonly", "list"])
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_array_kinds(kind, dtype):
    rng = np.random.default_rng(10)
    x = _logits(rng, (9, 7)).astype(dtype)
    t = _classes(rng, (9,), 7, ignore=-100)
    w = rng.uniform(0.5, 2.0, 7).astype(dtype)
    other_x, other_t = _kinds(x, t, kind)
    if kind == "list":
        x = x.astype(np.float64)  # Python floats are float64
        dtype = np.float64
    for reduction in REDUCTIONS:
        kw = {"weight": w, "label_smoothing": 0.1}
        got = sm.cross_entropy(other_x, other_t, reduction=reduction, return_grad=True, **kw)
        want = sm.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
        r = 4 * eps(dtype)  # another memory order may sum in another order
        assert_close(got[0], want[0], rtol=r, atol=r, what=f"{kind} loss")
        assert got[1].dtype == dtype and got[1].shape == x.shape
        assert_close(got[1], want[1], rtol=r, atol=r, what=f"{kind} grad")
        check_cross_entropy(other_x, other_t, reduction, **kw)


def test_strided_weight_and_probability_target():
    rng = np.random.default_rng(11)
    x = _logits(rng, (6, 5))
    p = np.asfortranarray(_probabilities(rng, (6, 5)))
    w = rng.uniform(0.5, 2.0, 10)[::2]
    for reduction in REDUCTIONS:
        check_cross_entropy(x, p, reduction, weight=w, label_smoothing=0.1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_receives_the_gradient(reduction):
    rng = np.random.default_rng(12)
    x = _logits(rng, (8, 6))
    t = _classes(rng, (8,), 6, ignore=-100)
    want_loss, want_grad = sm.cross_entropy(x, t, reduction=reduction, return_grad=True)
    out = np.full(x.shape, 7.0)
    loss, grad = sm.cross_entropy(x, t, reduction=reduction, return_grad=True, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, want_grad)
    np.testing.assert_array_equal(loss, want_loss)


IN_PLACE = [
    ("index", (20, 7)),
    ("smooth-weight", (20, 7)),
    ("prob", (20, 7)),
    ("zloss-softcap", (20, 7)),
    ("kdim", (3, 7, 5)),
    ("index", (4096, 512)),
    ("prob", (4096, 512)),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "case, shape", IN_PLACE, ids=[f"{c}-{'x'.join(map(str, s))}" for c, s in IN_PLACE]
)
def test_out_is_input(case, shape, reduction):
    """out=input: the input holds the gradient afterwards, the same as computed elsewhere;
    without out the input is not touched."""
    rng = np.random.default_rng(13)
    x = _logits(rng, shape).astype(np.float32)
    c = shape[1]
    kw: dict = {}
    if case == "prob":
        t = _probabilities(rng, shape).astype(np.float32)
    else:
        t = _classes(rng, (shape[0],) + shape[2:], c, ignore=-100)
    if case == "smooth-weight":
        kw = {"weight": rng.uniform(0.5, 2, c).astype(np.float32), "label_smoothing": 0.2}
    if case == "zloss-softcap":
        kw = {"z_loss_scale": 1e-3, "softcap": 4.0}
    before = x.copy()
    t_before = t.copy()
    want = sm.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    np.testing.assert_array_equal(x, before)  # input untouched without out
    np.testing.assert_array_equal(t, t_before)
    got = sm.cross_entropy(x, t, reduction=reduction, return_grad=True, out=x, **kw)
    assert got[-1] is x
    rtol = 4 * eps(np.float32)
    assert_close(x, want[-1], rtol=rtol, atol=rtol * _finite_max(want[-1]), what="in place")
    assert_close(got[0], want[0], rtol=rtol, what="in-place loss")


def test_out_errors():
    x = np.zeros((4, 5))
    t = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="out"):
        sm.cross_entropy(x, t, return_grad=True, out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="out"):
        sm.cross_entropy(x, t, return_grad=True, out=np.empty((4, 5, 1)))
    with pytest.raises(ValueError, match="out"):
        sm.cross_entropy(x, t, return_grad=True, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        sm.cross_entropy(x.astype(np.float32), t, return_grad=True, out=np.empty((4, 5)))
    with pytest.raises(ValueError, match="out"):
        sm.nll_loss(x, t, return_grad=True, out=np.empty((4, 4)))
    with pytest.raises(ValueError, match="out"):
        sm.focal_loss(x, t, return_grad=True, out=np.empty((4, 5), np.int64))


# --- arguments ---------------------------------------------------------------------------------


def test_bad_arguments():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="weight"):
        sm.cross_entropy(x, t, weight=np.ones(5))
    with pytest.raises(ValueError, match="label_smoothing"):
        sm.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        sm.cross_entropy(x, t, reduction="average")
    with pytest.warns(UserWarning, match="elementwise_mean"):  # torch's deprecated "mean"
        assert sm.nll_loss(x, t, reduction="elementwise_mean") == sm.nll_loss(x, t)
    with pytest.raises(ValueError, match="ignore_index"):  # torch: not for probability targets
        sm.cross_entropy(x, np.full((3, 4), 0.25), ignore_index=1)


LEGACY = [(None, False), (False, None), (False, False), (True, False), (True, None)]


@pytest.mark.parametrize("size_average, reduce", LEGACY)
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_legacy_reduction_flags_like_torch(name, size_average, reduce):
    rng = np.random.default_rng(14)
    x = _logits(rng, (5, 3))
    t = _classes(rng, (5,), 3)
    with pytest.warns(UserWarning, match="deprecated"):
        got = getattr(sm, name)(x, t, size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning, match="deprecated"):
        want = getattr(torch().nn.functional, name)(
            _tensor(x), _tensor(t), size_average=size_average, reduce=reduce
        )
    assert_close(got, want.numpy(), rtol=1e-12)


# --- determinism -------------------------------------------------------------------------------


def _fingerprint(*values) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for v in values]


def test_same_bits_with_one_and_two_threads():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    rng = np.random.default_rng(15)
    x = _logits(rng, (4096, 512)).astype(np.float32)
    t = _classes(rng, (4096,), 512, ignore=-100)
    p = _probabilities(rng, (4096, 512)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 512).astype(np.float32)
    runs = {}
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            prints = []
            for reduction in REDUCTIONS:
                prints += _fingerprint(
                    *sm.cross_entropy(x, t, reduction=reduction, return_grad=True)
                )
                prints += _fingerprint(
                    *sm.cross_entropy(
                        x,
                        t,
                        reduction=reduction,
                        weight=w,
                        label_smoothing=0.1,
                        z_loss_scale=1e-4,
                        return_z_loss=True,
                        return_grad=True,
                    )
                )
                prints += _fingerprint(
                    *sm.cross_entropy(x, p, reduction=reduction, return_grad=True)
                )
                prints += _fingerprint(sm.cross_entropy(x, t, reduction=reduction))
            runs[threads] = prints
    finally:
        numba.set_num_threads(previous)
    assert runs[1] == runs[2]


# --- a property test against torch -------------------------------------------------------------


def _property_test():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(
        n=st.integers(0, 12),
        c=st.integers(1, 40),
        dtype=st.sampled_from(FLOATS),
        reduction=st.sampled_from(REDUCTIONS),
        smoothing=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
        ignore=st.floats(0.0, 1.0),
        weighted=st.booleans(),
        soft=st.booleans(),
        seed=st.integers(0, 2**32 - 1),
    )
    def run(n, c, dtype, reduction, smoothing, ignore, weighted, soft, seed):
        rng = np.random.default_rng(seed)
        x = _logits(rng, (n, c), scale=rng.uniform(0.1, 20)).astype(dtype)
        if soft:
            t = _probabilities(rng, (n, c)).astype(dtype)
        else:
            t = _classes(rng, (n,), c, ignore=-100, fraction=ignore)
        kw = {"label_smoothing": smoothing}
        if weighted:
            kw["weight"] = rng.uniform(0.1, 3.0, c).astype(dtype)
        check_cross_entropy(x, t, reduction, **kw)

    return run


def test_property_cross_entropy_matches_torch():
    _property_test()()


# --- nll_loss ----------------------------------------------------------------------------------

NLL_CASES = [
    "log-probs",
    "raw",
    "weight",
    "ignore",
    "weight-ignore",
    "ignore-class",
    "kdim1",
    "kdim2",
    "vector",
    "vector-ignored",
    "all-ignored",
    "empty",
]


def _nll_case(name, rng):
    shape = {
        "kdim1": (4, 5, 3),
        "kdim2": (2, 5, 3, 2),
        "vector": (5,),
        "vector-ignored": (5,),
        "empty": (0, 5),
    }.get(name, (7, 5))
    x = _logits(rng, shape)
    axis = 0 if len(shape) == 1 else 1
    if name == "log-probs":
        x = x - np.log(np.exp(x).sum(axis=axis, keepdims=True))
    rows = () if len(shape) == 1 else (shape[0],) + shape[2:]
    kw: dict = {}
    ignore = -100 if "ignore" in name or name.startswith("kdim") else None
    if name == "ignore-class":
        ignore = 3
        kw["ignore_index"] = 3
    t = _classes(rng, rows, 5, ignore)
    if "weight" in name or name == "kdim1":
        kw["weight"] = rng.uniform(0.2, 2.0, 5)
    if name == "vector-ignored":
        t = np.array(-100)
    if name == "all-ignored":
        t = np.full(rows, -100)
    return x, t, kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("case", NLL_CASES)
def test_nll_loss_matches_torch(case, dtype, reduction):
    rng = np.random.default_rng(_seed("nll", case))
    x, t, kw = _nll_case(case, rng)
    x = x.astype(dtype)
    if "weight" in kw:
        kw["weight"] = kw["weight"].astype(dtype)
    want_loss, want_grad = torch_nll_loss(x, t, reduction, **kw)
    loss, grad = sm.nll_loss(x, t, reduction=reduction, return_grad=True, **kw)
    assert_result(loss, grad, want_loss, want_grad, x, reduction)
    alone = sm.nll_loss(x, t, reduction=reduction, **kw)
    assert_close(alone, loss, rtol=8 * eps(dtype), atol=1e-300, what="loss without grad")
    if case in ("all-ignored", "empty", "vector-ignored") and reduction == "mean":
        assert np.isnan(loss)


# --- focal_loss --------------------------------------------------------------------------------

FOCAL_PARAMS = [(2.0, 1.0), (0.0, 1.0), (0.5, 0.25), (1.0, 0.5), (3.5, 2.0)]


@pytest.mark.parametrize("ignore", [False, True], ids=["all-rows", "ignored-rows"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("gamma, alpha", FOCAL_PARAMS)
def test_focal_loss_matches_reference(gamma, alpha, dtype, reduction, ignore):
    rng = np.random.default_rng(_seed("focal", gamma, alpha))
    x = _logits(rng, (11, 6)).astype(dtype)
    t = _classes(rng, (11,), 6, ignore=-100 if ignore else None)
    want_loss, want_grad = torch_focal_loss(x, t, reduction, alpha=alpha, gamma=gamma)
    loss, grad = sm.focal_loss(x, t, alpha, gamma, reduction, return_grad=True)
    assert_result(loss, grad, want_loss, want_grad, x, reduction)
    alone = sm.focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction)
    assert_close(alone, loss, rtol=8 * eps(dtype), atol=1e-300, what="loss without grad")


def test_focal_loss_defaults_and_edges():
    rng = np.random.default_rng(16)
    x = _logits(rng, (8, 4))
    t = _classes(rng, (8,), 4)
    # defaults alpha=1, gamma=2, mean
    want_loss, want_grad = torch_focal_loss(x, t)
    loss, grad = sm.focal_loss(x, t, return_grad=True)
    assert_result(loss, grad, want_loss, want_grad, x, "mean")
    # gamma = 0, alpha = 1: plain cross-entropy
    assert_close(sm.focal_loss(x, t, gamma=0.0), sm.cross_entropy(x, t), rtol=1e-12)
    # a custom ignore_index
    t[2] = 1
    want_loss, want_grad = torch_focal_loss(x, t, "sum", ignore_index=1)
    loss, grad = sm.focal_loss(x, t, reduction="sum", ignore_index=1, return_grad=True)
    assert_result(loss, grad, want_loss, want_grad, x, "sum")
    assert (grad[t == 1] == 0).all()
    # every row ignored: the mean is NaN (0 / 0), the sum 0
    t[:] = -100
    assert np.isnan(sm.focal_loss(x, t))
    assert sm.focal_loss(x, t, reduction="sum") == 0
    # an empty batch
    assert np.isnan(sm.focal_loss(np.zeros((0, 4)), np.zeros(0, np.int64)))


# --- Keras semantics ---------------------------------------------------------------------------

KERAS_CLASS = {
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
}


def keras_reference(name, y_pred, y_true, reduction, **kwargs):
    """Keras's loss class on the torch backend and its autograd gradient w.r.t. y_pred.

    "none" and "sum" are Keras's own reductions, in the compute dtype. "mean" is Keras's
    float64-exact "sum" divided by Keras's count (the per-sample values, or the non-ignored
    ones with ``ignore_class``; a count of 0 gives 0, divide_no_nan); the Keras class with its
    default reduction, which rounds to float32, is returned too as ``(loss, grad)``."""
    dtype = compute_dtype(np.asarray(y_pred).dtype)
    cls = getattr(keras().losses, KERAS_CLASS[name])

    def run(keras_reduction):
        yp = _tensor(y_pred, dtype, grad=True)
        yt = _tensor(y_true, dtype)
        loss_object = cls(reduction=keras_reduction, dtype=dtype.name, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = loss_object(yt, yp)
        return value, yp

    value, yp = run(None if reduction == "none" else "sum")
    if reduction == "mean":
        axis = kwargs.get("axis", -1)
        per_sample = np.delete(np.array(np.shape(y_pred)), axis)
        count = int(np.prod(per_sample))
        if kwargs.get("ignore_class") is not None:
            count = int(np.sum(np.asarray(y_true) != kwargs["ignore_class"]))
        if np.ndim(y_pred) == 1:
            count = 1  # one sample: Keras returns it unreduced
        value = value / count if count else value * 0
    (value.sum() if reduction == "none" else value).backward()
    result = (_numpy(value, reduction), _grad_of(yp))
    default = None
    if reduction == "mean":
        v, yp = run("sum_over_batch_size")
        v.backward()
        default = (_numpy(v, reduction), _grad_of(yp))
    return result, default


def _keras_case(name, case, rng):
    kw: dict = {}
    shape = {
        "3d": (2, 3, 5),
        "axis1": (3, 5, 4),
        "axis1-logits-smooth": (3, 5, 4),
        "vector": (5,),
        "axis1-logits": (3, 5, 4),
    }.get(case, (6, 5))
    axis = -1
    if case.startswith("axis1"):
        axis = 1
        kw["axis"] = 1
    c = shape[axis]
    logits = "logits" in case
    if logits:
        kw["from_logits"] = True
        y_pred = _logits(rng, shape)
    else:
        y_pred = rng.uniform(0.05, 1.0, shape)  # unnormalised: Keras divides by the sum
    if case == "clip":
        y_pred[0] = [1.0, 0.0, 0.0, 0.0, 0.0]  # output clipped to 1 - eps and eps
        y_pred[1] = [0.0, 1e-9, 0.5, 0.5, 0.0]
        y_pred[2] = [3e-8, 1.0, 1.0, 1.0, 1.0]
    if "smooth" in case:
        kw["label_smoothing"] = 0.1
    classes = np.asarray(rng.integers(0, c, tuple(int(s) for s in np.delete(shape, axis))))
    if case == "clip":
        classes[:3] = [1, 0, 0]
    if name == "sparse_categorical_crossentropy":
        y_true = classes
        if case == "ignore":
            kw["ignore_class"] = -1
            y_true[[1, 4]] = -1
        if case == "ignore-class2":
            kw["ignore_class"] = 2
            y_true[0] = 2
        if case == "all-ignored":
            kw["ignore_class"] = -1
            y_true[:] = -1
    else:
        y_true = np.moveaxis(np.eye(c)[classes], -1, axis)
        if case == "soft":
            y_true = _probabilities(rng, shape, axis)
    if case == "alpha-gamma":
        kw.update(alpha=0.5, gamma=0.0)
    if case == "gamma3.5":
        kw.update(alpha=1.0, gamma=3.5)
    return y_pred, y_true, kw


KERAS_CASES = {
    "categorical_crossentropy": [
        "probs",
        "soft",
        "clip",
        "logits",
        "smooth",
        "logits-smooth",
        "3d",
        "axis1",
        "axis1-logits-smooth",
        "vector",
    ],
    "sparse_categorical_crossentropy": [
        "probs",
        "clip",
        "logits",
        "ignore",
        "ignore-class2",
        "all-ignored",
        "3d",
        "axis1",
        "axis1-logits",
        "vector",
    ],
    "categorical_focal_crossentropy": [
        "probs",
        "soft",
        "clip",
        "logits",
        "smooth",
        "logits-smooth",
        "alpha-gamma",
        "gamma3.5",
        "axis1",
        "axis1-logits-smooth",
    ],
}


def _keras_params():
    for name, cases in KERAS_CASES.items():
        for case in cases:
            yield pytest.param(name, case, id=f"{name}-{case}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name, case", list(_keras_params()))
def test_keras_losses_match_keras(name, case, dtype, reduction):
    rng = np.random.default_rng(_seed(name, case))
    y_pred, y_true, kw = _keras_case(name, case, rng)
    y_pred = y_pred.astype(dtype)
    if np.asarray(y_true).dtype.kind == "f":
        y_true = y_true.astype(dtype)
    (want_loss, want_grad), default = keras_reference(name, y_pred, y_true, reduction, **kw)
    f = getattr(sm, name)
    loss, grad = f(y_pred, y_true, reduction=reduction, return_grad=True, **kw)
    assert_result(loss, grad, want_loss, want_grad, y_pred, reduction)
    alone = f(y_pred, y_true, reduction=reduction, **kw)
    assert_close(alone, loss, rtol=8 * eps(dtype), atol=1e-300, what="loss without grad")
    if default is not None:  # Keras's sum_over_batch_size itself, rounded to float32
        assert_close(loss, default[0], rtol=2e-5, atol=1e-7, what="vs sum_over_batch_size")
        atol = 2e-5 * _finite_max(default[1])
        assert_close(grad, default[1], rtol=2e-5, atol=atol, what="grad vs sum_over_batch_size")
    if case == "all-ignored" and reduction != "none":
        assert loss == 0  # Keras's masked mean divides with divide_no_nan: 0, not NaN


def test_keras_label_smoothing_counts_the_last_axis():
    """Keras smooths y_true with num_classes = y_true.shape[-1], whatever ``axis`` is: with
    axis=1 on (3, 5, 4) the smoothing mass is 0.1 / 4, not 0.1 / 5."""
    rng = np.random.default_rng(17)
    y_pred, y_true, kw = _keras_case("categorical_crossentropy", "axis1-logits-smooth", rng)
    (want, _), _ = keras_reference("categorical_crossentropy", y_pred, y_true, "none", **kw)
    got = sm.categorical_crossentropy(y_pred, y_true, reduction="none", **kw)
    assert_close(got, want, rtol=1e-10)
    logp = y_pred - np.log(np.exp(y_pred).sum(axis=1, keepdims=True))
    smoothed = y_true * 0.9 + 0.1 / 4
    assert_close(got, -(smoothed * logp).sum(axis=1), rtol=1e-10)
