"""The binary classification losses against the real libraries.

torch (autograd) for ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``;
torchvision's ``sigmoid_focal_loss`` (the installed one if there is one, else its published
definition written below in torch ops, evaluated by torch autograd); Keras 3 on its torch
backend for ``binary_crossentropy`` and ``binary_focal_crossentropy``. Values and gradients for
float32 and float64, every reduction and option, 0-d to 3-d shapes, then the edges: logits of
±100 and ±1e4, probabilities of exactly 0 and 1, torch's range errors, NaN, array kinds,
``out=``, empty inputs, the parallel kernel and a hypothesis property test.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from unittest import mock

import numpy as np
import pytest
from conftest import FLOATS, REDUCTIONS, assert_close, eps, keras, torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastloss import binary

DTYPE_IDS = {np.float32: "f32", np.float64: "f64"}
SHAPES = [(), (0,), (1,), (3,), (1000,), (3, 4), (2, 0, 3), (2, 3, 5)]
NONEMPTY = [s for s in SHAPES if 0 not in s]


def _id(value):
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if value else "0d"
    return DTYPE_IDS.get(value)


def _seed(*parts) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(repr(parts))) % (2**32)


# --- references ------------------------------------------------------------------------------


def _torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py), statement for
    statement, for when torchvision is not installed."""
    F = torch().nn.functional
    p = torch().sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        pass
    elif reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    else:
        raise ValueError(reduction)
    return loss


def _sigmoid_focal_reference():
    try:
        from torchvision.ops import sigmoid_focal_loss
    except ImportError:
        return _torchvision_sigmoid_focal_loss
    return sigmoid_focal_loss


KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}


@contextlib.contextmanager
def keras_float64():
    """Keras 3.15 on torch rounds float64 losses through float32 in two primitives: ``mean``
    casts to ``result_type(dtype, "float32")`` and ``divide_no_nan`` to
    ``result_type(..., float)``, both float32. Inside this block those two primitives compute
    float64 in float64 (float32 goes to Keras's own), so Keras's float64 digits can be compared;
    every other step is Keras's code."""
    from keras.src.backend.torch import numpy as knp

    tch = torch()
    mean, divide_no_nan = knp.mean, knp.divide_no_nan

    def mean64(x, axis=None, keepdims=False):
        if isinstance(x, tch.Tensor) and x.dtype == tch.float64:
            if axis is None:
                return tch.mean(x)
            dims = tuple(axis) if isinstance(axis, tuple | list) else (axis,)
            return tch.mean(x, dims, keepdims)
        return mean(x, axis=axis, keepdims=keepdims)

    def divide_no_nan64(x1, x2):
        if isinstance(x1, tch.Tensor) and x1.dtype == tch.float64:
            x2 = tch.as_tensor(x2, dtype=tch.float64)
            safe = tch.where(x2 == 0, tch.ones_like(x2), x2)
            return tch.where(x2 == 0, 0, x1 / safe)
        return divide_no_nan(x1, x2)

    with (
        mock.patch.object(knp, "mean", mean64),
        mock.patch.object(knp, "divide_no_nan", divide_no_nan64),
    ):
        yield


def _tensor(value, dtype, requires_grad=False):
    array = np.array(value, dtype=dtype, order="C")
    tensor = torch().from_numpy(array)
    if requires_grad:
        tensor.requires_grad_(True)
    return tensor


def _backward(loss, x, reduction):
    total = loss if reduction != "none" else loss.sum()
    if total.requires_grad:
        total.backward()
    grad = x.grad.numpy() if x.grad is not None else np.zeros(x.shape, x.detach().numpy().dtype)
    value = loss.detach().numpy()
    return (value if reduction == "none" else value[()]), grad


def reference(name, x, t, kwargs, reduction, dtype, *, float64_keras=True):
    """The reference library's loss and autograd gradient (of the sum for "none")."""
    F = torch().nn.functional
    X = _tensor(x, dtype, requires_grad=True)
    T = _tensor(t, dtype)
    kw = {
        k: _tensor(v, dtype) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
        if k not in ("return_grad", "out")
    }
    if name == "binary_cross_entropy":
        loss = F.binary_cross_entropy(X, T, reduction=reduction, **kw)
    elif name == "binary_cross_entropy_with_logits":
        loss = F.binary_cross_entropy_with_logits(X, T, reduction=reduction, **kw)
    elif name == "sigmoid_focal_loss":
        loss = _sigmoid_focal_reference()(X, T, reduction=reduction, **kw)
    else:
        cls = {
            "binary_crossentropy": "BinaryCrossentropy",
            "binary_focal_crossentropy": "BinaryFocalCrossentropy",
        }[name]
        loss_object = getattr(keras().losses, cls)(
            reduction=KERAS_REDUCTION[reduction], dtype=np.dtype(dtype).name, **kw
        )
        patch = keras_float64() if float64_keras else contextlib.nullcontext()
        with patch:
            loss = loss_object(T, X)
    return _backward(loss, X, reduction)


def fast(name, x, t, kwargs, reduction):
    return getattr(binary, name)(x, t, **kwargs, reduction=reduction, return_grad=True)


def _finite_abs(value) -> np.ndarray:
    a = np.abs(np.asarray(value, dtype=np.float64))
    return a[np.isfinite(a)]


def _rtol(dtype) -> float:
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def compare(got, want, dtype, reduction, *, terms=None, rtol=None, what=""):
    """A fastloss ``(loss, grad)`` against the reference's: ``rtol`` (1e-5 float32, 1e-12
    float64) plus a few ulps of the largest magnitude involved (the sum of the element losses
    for a reduction, the largest gradient); NaN exactly where the reference has NaN."""
    dtype = np.dtype(dtype)
    rtol = _rtol(dtype) if rtol is None else rtol
    loss, grad = got
    want_loss, want_grad = want
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype, repr(loss)
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype, repr(loss)
    terms = want_loss if terms is None else terms
    size = _finite_abs(terms)
    if reduction == "none":
        scale = size.max(initial=1.0)
    else:
        scale = max(size.sum(), 1.0)
        if reduction == "mean":
            scale /= max(np.size(terms), 1)
    assert_close(loss, want_loss, rtol=rtol, atol=32 * eps(dtype) * scale, what=f"{what} loss")
    assert isinstance(grad, np.ndarray), type(grad)
    gscale = _finite_abs(want_grad).max(initial=0.0)
    assert_close(grad, want_grad, rtol=rtol, atol=32 * eps(dtype) * gscale, what=f"{what} grad")


def check(name, x, t, kwargs, reduction, dtype=None, ref_dtype=None, **options):
    """fastloss against the reference on the same arrays; also the loss without the
    gradient against the fused one."""
    dtype = dtype or np.asarray(x).dtype
    got = fast(name, x, t, kwargs, reduction)
    # Keras forms 1 - p_t from sigmoid(x) by cancellation: in float32 that costs it digits
    # (1e-3 relative at x = 12), so float32 is compared with Keras's float64.
    if ref_dtype is None:
        logits = name == "binary_focal_crossentropy" and kwargs.get("from_logits")
        ref_dtype = np.float64 if logits else dtype
    want = reference(name, x, t, kwargs, reduction, ref_dtype)
    terms = None  # the element losses, for the tolerance of a reduction
    if reduction != "none" and name not in KERAS_OPTIONS:
        terms = reference(name, x, t, kwargs, "none", dtype)[0]
    compare(got, want, dtype, reduction, terms=terms, **options)
    alone = getattr(binary, name)(x, t, **kwargs, reduction=reduction)
    assert_close(alone, got[0], rtol=8 * eps(dtype), atol=0, what="loss without grad")
    return got


# --- inputs ----------------------------------------------------------------------------------


def _probabilities(rng, shape):
    return rng.uniform(0.02, 0.98, shape)


def _labels(rng, shape):
    """0/1 labels with some soft ones."""
    hard = rng.integers(0, 2, shape).astype(np.float64)
    return np.where(rng.random(shape) < 0.3, rng.random(shape), hard)


def _logits(rng, shape):
    return 3.0 * rng.standard_normal(shape)


TORCH_OPTIONS = {
    "binary_cross_entropy": ["default", "weight", "weight-row", "weight-0d"],
    "binary_cross_entropy_with_logits": [
        "default",
        "weight",
        "pos_weight",
        "pos_weight-1",
        "pos_weight-weight",
    ],
    "sigmoid_focal_loss": [
        "default",
        "no-alpha",
        "gamma0",
        "gamma1.5",
        "gamma3-alpha0.6",
        "gamma0.5",
    ],
}

FOCAL_KWARGS = {
    "default": {},
    "no-alpha": {"alpha": -1.0},
    "gamma0": {"gamma": 0.0},
    "gamma1.5": {"gamma": 1.5},
    "gamma3-alpha0.6": {"gamma": 3.0, "alpha": 0.6},
    "gamma0.5": {"gamma": 0.5, "alpha": 0.5},
}


def make_torch_case(name, option, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = _probabilities(rng, shape) if name == "binary_cross_entropy" else _logits(rng, shape)
    t = _labels(rng, shape)
    kwargs = {}
    last = shape[-1:]
    if name == "sigmoid_focal_loss":
        kwargs = dict(FOCAL_KWARGS[option])
    elif option.startswith("weight"):
        weight_shape = {"weight": shape, "weight-row": last, "weight-0d": ()}[option]
        kwargs["weight"] = rng.uniform(0.0, 2.0, weight_shape).astype(dtype)
    elif option.startswith("pos_weight"):
        # (1,) on a 0-d input would grow it: torch refuses that (test_weight_that_does_not...)
        pos_shape = (1,) if option == "pos_weight-1" and shape else last
        kwargs["pos_weight"] = rng.uniform(0.2, 4.0, pos_shape)
        kwargs["pos_weight"] = kwargs["pos_weight"].astype(dtype)
        if option == "pos_weight-weight":
            kwargs["weight"] = rng.uniform(0.0, 2.0, shape).astype(dtype)
    return x.astype(dtype), t.astype(dtype), kwargs


def _torch_cases():
    for name, options in TORCH_OPTIONS.items():
        for option in options:
            for shape in SHAPES:
                yield pytest.param(name, option, shape, id=f"{name}-{option}-{_id(shape)}")


# --- the differential suite: torch and torchvision ---------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name, option, shape", list(_torch_cases()))
def test_torch_losses_match(name, option, shape, dtype, reduction):
    x, t, kwargs = make_torch_case(name, option, shape, dtype, _seed(name, option, shape))
    check(name, x, t, kwargs, reduction)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_at_probabilities_zero_and_one(dtype, reduction):
    """torch's clamp of the logarithms at -100 (finite losses) and its gradient
    (x - t) / max((1 - x) x, 1e-12) at the ends: -t * 1e12 at 0, (1 - t) * 1e12 at 1."""
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 1e-30, 1 - 2**-20], dtype)
    t = np.array([0.3, 0.3, 0.0, 1.0, 1.0, 0.0, 0.5, 0.25, 0.75], dtype)
    loss, grad = check("binary_cross_entropy", x, t, {}, reduction)
    if reduction == "none":
        assert loss[0] == pytest.approx(30.0, rel=1e-6)
        assert loss[4] == pytest.approx(100.0) and loss[5] == pytest.approx(100.0)
        assert loss[2] == 0 and loss[3] == 0
        assert grad[0] == pytest.approx(-0.3e12, rel=1e-6)
        assert grad[1] == pytest.approx(0.7e12, rel=1e-6)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("pos_weight", [None, 2.5], ids=["plain", "pos_weight"])
def test_bce_with_logits_extreme_logits(dtype, pos_weight):
    """Logits of ±1e4, ±100, ±30 give finite, correct losses and gradients (the reference is
    torch in float64 on the same values)."""
    big = [1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 17.0, -17.0, 1e-3, 0.0]
    x = np.array(big * 3, dtype)
    t = np.repeat(np.array([0.0, 1.0, 0.3]), len(big)).astype(dtype)
    kwargs = {} if pos_weight is None else {"pos_weight": np.array([pos_weight], dtype)}
    for reduction in REDUCTIONS:
        got = fast("binary_cross_entropy_with_logits", x, t, kwargs, reduction)
        assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[1]))
        wide = {k: v.astype(np.float64) for k, v in kwargs.items()}
        want = reference("binary_cross_entropy_with_logits", x, t, wide, reduction, np.float64)
        compare(got, want, dtype, reduction)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("option", ["default", "gamma1.5", "gamma3-alpha0.6", "no-alpha"])
def test_sigmoid_focal_extreme_logits(dtype, option):
    """Large logits stay finite. The reference, torch in float64, forms 1 - p_t by
    cancellation (a relative error of up to eps / (1 - p)), so the comparison allows that
    error and the ulps of the largest term."""
    big = [1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 12.0, -12.0, 3.0, 0.0]
    x = np.array(big * 3, dtype)
    t = np.repeat(np.array([0.0, 1.0, 0.3]), len(big)).astype(dtype)
    kwargs = FOCAL_KWARGS[option]
    for reduction in REDUCTIONS:
        got = fast("sigmoid_focal_loss", x, t, kwargs, reduction)
        assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[1]))
        want = reference("sigmoid_focal_loss", x, t, kwargs, reduction, np.float64)
        rtol = 1e-5 if dtype == np.float32 else 1e-9
        compare(got, want, dtype, reduction, rtol=rtol)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_sigmoid_focal_keeps_the_digits_of_saturated_logits(dtype):
    """Where torchvision's 1 - p_t rounds to 0 (t = 1, x = 20 in float32, 40 in float64),
    fastloss keeps m = sigmoid(-x): loss = alpha softplus(-x) sigmoid(-x)**2, each factor
    computed by torch in float64 without cancellation."""
    x = np.array([20.0, 15.0] if dtype == np.float32 else [40.0, 20.0], dtype)
    t = np.ones(2, dtype)
    loss, _ = binary.sigmoid_focal_loss(x, t, reduction="none", return_grad=True)
    X = _tensor(x, np.float64)
    want = 0.25 * torch().nn.functional.softplus(-X) * torch().sigmoid(-X) ** 2
    assert_close(loss, want.numpy(), rtol=8 * eps(dtype), what="saturated focal loss")
    torchvision = reference("sigmoid_focal_loss", x, t, {}, "none", dtype)[0]
    assert torchvision[0] == 0  # its cancellation


def test_sigmoid_focal_gradient_at_saturation_is_finite():
    """m = 0 exactly (the sigmoid saturates): torch's autograd meets 0 ** (gamma - 1) and gives
    NaN for gamma < 1; fastloss takes the limit, 0 (documented)."""
    x = np.array([800.0, -800.0])
    t = np.array([1.0, 0.0])
    for gamma in (0.0, 0.5, 1.0, 1.5, 2.0):
        loss, grad = binary.sigmoid_focal_loss(x, t, gamma=gamma, return_grad=True)
        assert np.all(loss == 0) and np.all(grad == 0), (gamma, loss, grad)


@pytest.mark.parametrize("gamma", [2.0, 3.0, 4.0, 1.5])
def test_sigmoid_focal_targets_outside_unit_interval_follow_pow(gamma):
    """A target of 2 makes m = 1 - p_t negative: torch's pow gives a real power for an integer
    exponent (the sign of an odd one included) and NaN otherwise; fastloss too."""
    x = np.array([0.5, -1.0, 2.0])
    t = np.array([2.0, -1.0, 1.5])
    got = fast("sigmoid_focal_loss", x, t, {"gamma": gamma}, "none")
    want = reference("sigmoid_focal_loss", x, t, {"gamma": gamma}, "none", np.float64)
    compare(got, want, np.float64, "none")


# --- range errors, as torch --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "which, bad",
    [("input", 1.5), ("input", -0.25), ("input", np.nan), ("input", np.inf)]
    + [("target", 1.25), ("target", -1e-9), ("target", np.nan)],
)
def test_bce_refuses_values_outside_the_unit_interval(which, bad, reduction):
    x = np.full(7, 0.5)
    t = np.full(7, 0.25)
    arrays = {"input": x, "target": t}
    arrays[which][3] = bad
    name = re.escape(which)
    for return_grad in (False, True):
        with pytest.raises(ValueError, match=rf"^{name}: expected values in \[0, 1\]"):
            binary.binary_cross_entropy(
                x, t, reduction=reduction, return_grad=return_grad, weight=np.ones(7)
            )
    with pytest.raises(RuntimeError, match="between 0 and 1"):  # torch refuses too
        torch().nn.functional.binary_cross_entropy(
            torch().tensor(x), torch().tensor(t), reduction=reduction
        )


def test_bce_range_check_before_an_in_place_gradient():
    """With out=input the kernel would overwrite the input: it is checked first, and left
    untouched by a refused call."""
    x = np.array([0.5, 1.5, 0.25])
    before = x.copy()
    with pytest.raises(ValueError, match="input"):
        binary.binary_cross_entropy(x, np.zeros(3), return_grad=True, out=x)
    np.testing.assert_array_equal(x, before)
    t = np.array([0.5, 0.5, 0.5])
    want = binary.binary_cross_entropy(x.clip(0, 1), t, reduction="sum", return_grad=True)
    x = x.clip(0, 1)
    loss, grad = binary.binary_cross_entropy(x, t, reduction="sum", return_grad=True, out=x)
    assert grad is x and loss == want[0]
    np.testing.assert_array_equal(x, want[1])


def test_bce_nan_weight_is_not_a_range_error():
    """A NaN loss from a NaN weight sends the arrays to the range check, which passes: the
    NaN comes back, as torch gives it."""
    x, t = np.array([0.5, 0.25]), np.array([1.0, 0.0])
    loss = binary.binary_cross_entropy(x, t, weight=np.array([np.nan, 1.0]))
    assert np.isnan(loss)
    check("binary_cross_entropy", x, t, {"weight": np.array([np.nan, 1.0])}, "sum")


# --- NaN and infinities ------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "sigmoid_focal_loss"])
def test_nan_and_inf_propagate(name, dtype, reduction):
    x = np.array([np.nan, 1.0, np.inf, -np.inf, np.inf, 0.5, -2.0], dtype)
    t = np.array([0.5, np.nan, 0.5, 0.5, 1.0, np.inf, 0.0], dtype)
    got = fast(name, x, t, {}, reduction)
    want = reference(name, x, t, {}, reduction, dtype)
    compare(got, want, dtype, reduction)
    assert np.isnan(got[0]).any()


# --- weights and pos_weight --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("pos_shape", [(5,), (1,), (), (4, 1), (1, 5), (3, 4, 5), (4, 5)], ids=_id)
def test_pos_weight_shapes(pos_shape, dtype):
    """pos_weight broadcasts against the input from the last dimension, as torch does."""
    rng = np.random.default_rng(7)
    x = _logits(rng, (3, 4, 5)).astype(dtype)
    t = _labels(rng, (3, 4, 5)).astype(dtype)
    pw = rng.uniform(0.2, 4.0, pos_shape).astype(dtype)
    w = rng.uniform(0.0, 2.0, (4, 1)).astype(dtype)
    for reduction in REDUCTIONS:
        check("binary_cross_entropy_with_logits", x, t, {"pos_weight": pw}, reduction)
        check("binary_cross_entropy_with_logits", x, t, {"pos_weight": pw, "weight": w}, reduction)


@pytest.mark.parametrize(
    "name, key",
    [
        ("binary_cross_entropy", "weight"),
        ("binary_cross_entropy_with_logits", "weight"),
        ("binary_cross_entropy_with_logits", "pos_weight"),
    ],
)
def test_weight_that_does_not_broadcast_to_the_input_raises(name, key):
    x = np.full((3, 4), 0.5)
    for shape in [(3,), (2, 3, 4), (4, 4)]:
        with pytest.raises(ValueError, match=f"^{key}: expected a shape that broadcasts"):
            getattr(binary, name)(x, x, **{key: np.ones(shape)})
        with pytest.raises(RuntimeError):  # torch refuses too
            getattr(torch().nn.functional, name)(
                torch().tensor(x), torch().tensor(x), **{key: torch().ones(shape)}
            )


# --- shapes, dtypes, array kinds ---------------------------------------------------------------

ALL = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "binary_crossentropy",
    "binary_focal_crossentropy",
]


def _simple_case(name, shape=(4, 5), dtype=np.float64, seed=11):
    rng = np.random.default_rng(seed)
    x = _probabilities(rng, shape) if name in ("binary_cross_entropy",) else _logits(rng, shape)
    if name in ("binary_crossentropy", "binary_focal_crossentropy"):
        x = _probabilities(rng, shape)
    return x.astype(dtype), _labels(rng, shape).astype(dtype)


@pytest.mark.parametrize("name", ALL)
def test_target_of_another_shape_raises(name):
    x = np.full((3, 4), 0.5)
    target, input = ("targets", "inputs") if name == "sigmoid_focal_loss" else ("target", "input")
    for shape in [(4,), (3, 1), (1, 3, 4)]:
        with pytest.raises(ValueError, match=rf"^{target}: expected the shape of {input} \(3, 4\)"):
            getattr(binary, name)(x, np.full(shape, 0.5))


BAD_DTYPES = {
    "complex": np.array([1 + 1j, 0.5, 0.5]),
    "object": np.array([1.0, "a", None], dtype=object),
    "string": np.array(["1", "0", "1"]),
}


@pytest.mark.parametrize("which", ["input", "target"])
@pytest.mark.parametrize("bad", list(BAD_DTYPES))
@pytest.mark.parametrize("name", ALL)
def test_unsupported_dtypes_raise_type_error(name, bad, which):
    arrays = dict(zip(["input", "target"], _simple_case(name, (3,)), strict=True))
    arrays[which] = BAD_DTYPES[bad]
    label = which + "s" if name == "sigmoid_focal_loss" else which
    with pytest.raises(TypeError, match=label):
        getattr(binary, name)(*arrays.values())


@pytest.mark.parametrize("name", ALL)
def test_integer_and_bool_targets_are_cast(name):
    """torch refuses integer targets for these losses; fastloss casts them (documented)."""
    rng = np.random.default_rng(3)
    x, _ = _simple_case(name, (6, 5), np.float32)
    t = rng.integers(0, 2, (6, 5))
    for target in (t, t.astype(bool), t.astype(np.int8)):
        for reduction in REDUCTIONS:
            got = getattr(binary, name)(x, target, reduction=reduction, return_grad=True)
            want = getattr(binary, name)(
                x, t.astype(np.float32), reduction=reduction, return_grad=True
            )
            assert np.asarray(got[0]).dtype == np.float32
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def _kind(a: np.ndarray, kind: str):
    if kind == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if kind == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    if kind == "torch":
        return torch().from_numpy(a.copy())
    if kind == "list":
        return a.tolist()
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["strided", "fortran", "readonly", "bigendian", "torch", "list"])
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", ALL)
def test_array_kinds(name, dtype, kind):
    """Every kind of array gives the numbers of a plain C-contiguous array."""
    x, t = _simple_case(name, (4, 6), dtype)
    if kind == "list":
        x, t = x.astype(np.float64), t.astype(np.float64)
        dtype = np.float64
    kwargs = {}
    if name == "binary_cross_entropy_with_logits":
        kwargs["pos_weight"] = np.linspace(0.5, 2.0, 6).astype(dtype)
    # read-only arrays are kernel signatures of their own: one reduction keeps compiling short
    for reduction in ("mean",) if kind == "readonly" else ("mean", "none"):
        got = getattr(binary, name)(
            _kind(x, kind), _kind(t, kind), **kwargs, reduction=reduction, return_grad=True
        )
        want = getattr(binary, name)(x, t, **kwargs, reduction=reduction, return_grad=True)
        rtol = 4 * eps(dtype)
        assert np.asarray(got[0]).dtype == dtype and got[1].dtype == dtype
        assert isinstance(got[1], np.ndarray) and got[1].shape == x.shape
        assert_close(got[0], want[0], rtol=rtol, atol=rtol, what=f"{kind} loss")
        assert_close(got[1], want[1], rtol=rtol, atol=rtol, what=f"{kind} grad")


@pytest.mark.parametrize("name", ALL)
def test_float16_computes_in_float32(name):
    x, t = _simple_case(name, (5, 7), np.float16)
    loss, grad = getattr(binary, name)(x, t, reduction="mean", return_grad=True)
    assert loss.dtype == np.float32 and grad.dtype == np.float16
    x32, t32 = x.astype(np.float32), t.astype(np.float32)
    want = getattr(binary, name)(x32, t32, reduction="mean", return_grad=True)
    assert loss == want[0]
    np.testing.assert_array_equal(grad, want[1].astype(np.float16))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=_id)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", ALL)
def test_empty(name, dtype, shape):
    """An empty input: the mean is NaN, the sum 0, "none" and the gradient empty. Keras's
    losses of shape (0,) are one sample averaged over an empty axis: NaN, summed too."""
    x = np.zeros(shape, dtype)
    f = getattr(binary, name)
    mean, grad = f(x, x, reduction="mean", return_grad=True)
    assert np.isnan(mean) and mean.dtype == dtype and grad.shape == shape
    total = f(x, x, reduction="sum")
    one_empty_sample = name in KERAS_OPTIONS and shape == (0,)
    assert (np.isnan(total) if one_empty_sample else total == 0) and total.dtype == dtype
    none = f(x, x, reduction="none")
    assert (np.isnan(none) if one_empty_sample else none.size == 0) and none.dtype == dtype


# --- out= --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ALL)
def test_out_receives_the_gradient_and_may_be_the_input(name, reduction):
    x, t = _simple_case(name, (5, 4), np.float32)
    want = getattr(binary, name)(x, t, reduction=reduction, return_grad=True)
    out = np.full_like(x, 7.0)
    loss, grad = getattr(binary, name)(x, t, reduction=reduction, return_grad=True, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, want[1])
    np.testing.assert_array_equal(loss, want[0])
    loss, grad = getattr(binary, name)(x, t, reduction=reduction, return_grad=True, out=x)
    assert grad is x
    rtol = 4 * eps(np.float32)
    assert_close(x, want[1], rtol=rtol, what="in-place gradient")
    assert_close(loss, want[0], rtol=rtol, what="in-place loss")


# --- the parallel kernel -----------------------------------------------------------------------


def test_parallel_kernel_matches():
    """Above the parallel threshold of 2**20 elements (one loss: the parallel kernels are the
    factory's, and each costs seconds to compile)."""
    name = "binary_cross_entropy_with_logits"
    x, t = _simple_case(name, (1_200_000,), np.float32, seed=5)
    check(name, x, t, {}, "mean")


def test_serial_and_parallel_kernels_give_the_same_bits(monkeypatch):
    from fastloss import _elementwise

    x, t = _simple_case("binary_cross_entropy_with_logits", (300_001,), np.float32, seed=9)

    def prints():
        f = binary.binary_cross_entropy_with_logits
        loss, grad = f(x, t, reduction="sum", return_grad=True)
        return float(loss).hex(), float(f(x, t)).hex(), grad.tobytes()

    monkeypatch.setattr(_elementwise, "PARALLEL_THRESHOLD", 1 << 62)
    serial = prints()
    monkeypatch.setattr(_elementwise, "PARALLEL_THRESHOLD", 0)
    assert prints() == serial


# --- torch's legacy flags and argument errors --------------------------------------------------


@pytest.mark.parametrize("size_average, reduce", [(False, None), (None, False), (True, True)])
@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_legacy_reduction_flags(name, size_average, reduce):
    x, t = _simple_case(name, (3, 4))
    with pytest.warns(UserWarning, match="deprecated"):
        got = getattr(binary, name)(x, t, size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning, match="deprecated"):
        want = getattr(torch().nn.functional, name)(
            torch().tensor(x), torch().tensor(t), size_average=size_average, reduce=reduce
        )
    assert_close(got, want.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_bad_reduction_raises(name):
    x, t = _simple_case(name, (3,))
    with pytest.raises(ValueError, match="reduction"):
        getattr(binary, name)(x, t, reduction="batchmean")


def test_a_host_target_beside_a_device_input_is_refused_with_a_clear_error():
    """Nothing is copied to the device silently: the host argument is named."""

    class FakeDevice:
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False)}

    with pytest.raises(TypeError, match="target: expected a device array"):
        binary.binary_cross_entropy_with_logits(FakeDevice(), np.zeros(3))


# --- Keras -------------------------------------------------------------------------------------

KERAS_OPTIONS = {
    "binary_crossentropy": {
        "default": {},
        "logits": {"from_logits": True},
        "smooth": {"label_smoothing": 0.1},
        "logits-smooth-axis0": {"from_logits": True, "label_smoothing": 0.2, "axis": 0},
    },
    "binary_focal_crossentropy": {
        "default": {},
        "balanced": {"apply_class_balancing": True, "alpha": 0.375},
        "logits-smooth": {"from_logits": True, "label_smoothing": 0.1},
        "gamma1.5-logits-balanced": {
            "gamma": 1.5,
            "from_logits": True,
            "apply_class_balancing": True,
        },
        "gamma0-axis0": {"gamma": 0.0, "axis": 0},
        "gamma3-smooth": {"gamma": 3.0, "label_smoothing": 0.05},
    },
}


def _keras_input(rng, shape, kwargs):
    if kwargs.get("from_logits"):
        # |x| <= 6: Keras's float64 1 - p_t keeps 13 digits (test_keras_focal_saturated_logits
        # goes further)
        return np.clip(2.5 * rng.standard_normal(shape), -6.0, 6.0)
    x = rng.uniform(0.0, 1.0, shape)
    if x.size >= 8:  # both ends of the clip range, and beyond
        x.flat[:6] = [0.0, 1.0, 1e-8, 1 - 1e-9, 1e-7, 0.5]
    return x


def _keras_cases():
    for name, options in KERAS_OPTIONS.items():
        for option in options:
            for shape in NONEMPTY:
                if options[option].get("axis") == 0 and not shape:
                    continue
                yield pytest.param(name, option, shape, id=f"{name}-{option}-{_id(shape)}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name, option, shape", list(_keras_cases()))
def test_keras_losses_match(name, option, shape, dtype, reduction):
    """Against Keras 3 on torch; float64 with the float64 mean of keras_float64()."""
    kwargs = KERAS_OPTIONS[name][option]
    rng = np.random.default_rng(_seed(name, option, shape))
    x = _keras_input(rng, shape, kwargs).astype(dtype)
    t = rng.integers(0, 2, shape).astype(dtype)
    check(name, x, t, kwargs, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(KERAS_OPTIONS))
def test_keras_float64_without_the_patch(name, reduction):
    """Unpatched Keras 3.15 gives float64 losses rounded to float32: within float32's
    tolerance of fastloss's float64."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (6, 5))
    t = rng.integers(0, 2, (6, 5)).astype(np.float64)
    got = fast(name, x, t, {}, reduction)
    want = reference(name, x, t, {}, reduction, np.float64, float64_keras=False)
    compare(got, want, np.float64, reduction, rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
@pytest.mark.parametrize("name", list(KERAS_OPTIONS))
def test_keras_clip_bounds(name, dtype):
    """The clip to [1e-7, 1 - 1e-7] in the input's dtype (float32(1e-7) for float32, 1e-7 for
    float64), the gradient passed at the bounds and stopped outside them, as Keras gives."""
    e32 = float(np.float32(1e-7))
    values = [1e-7, e32, 0.0, 1 - 1e-7, float(np.float32(1 - 1e-7)), 1.0, 5e-8, 1 - 5e-8]
    x = np.array(values * 2, dtype)
    t = np.repeat([1.0, 0.0], len(values)).astype(dtype)
    for reduction in REDUCTIONS:
        check(name, x[:, None], t[:, None], {}, reduction)


def test_keras_axis_options():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (2, 3, 4))
    t = rng.integers(0, 2, (2, 3, 4)).astype(np.float64)
    for axis in (0, 1, -1, (0, 2), (-1, 1)):
        for reduction in REDUCTIONS:
            kwargs = {"axis": axis, "label_smoothing": 0.1}
            check("binary_crossentropy", x, t, kwargs, reduction)
            check("binary_focal_crossentropy", x, t, kwargs, reduction)
    for axis in (3, -4, (0, 0), 1.0):
        error = TypeError if axis == 1.0 else ValueError
        with pytest.raises(error, match="axis"):
            binary.binary_crossentropy(x, t, axis=axis)


@pytest.mark.parametrize("name", list(KERAS_OPTIONS))
def test_keras_empty_axis_gives_nan_samples(name):
    """A mean over an empty axis is NaN for each sample, as Keras's (torch's) mean."""
    x = np.zeros((3, 0))
    f = getattr(binary, name)
    assert np.isnan(f(x, x, reduction="none")).all() and f(x, x, reduction="none").shape == (3,)
    assert np.isnan(f(x, x, reduction="sum")) and np.isnan(f(x, x))
    want = reference(name, x, x, {}, "none", np.float64)[0]
    assert want.shape == (3,) and np.isnan(want).all()
    assert f(x.T, x.T, reduction="sum") == 0  # no samples: nothing to sum


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_keras_nan_and_inf(dtype):
    """From logits Keras (torch's bce_with_logits) propagates NaN and infinities: compared.
    On probabilities Keras on torch raises for a NaN prediction (torch's range check); fastloss
    evaluates the formula, as Keras's other backends do: NaN in, NaN out (documented)."""
    x = np.array([[np.nan, 1.0, np.inf, -np.inf, 0.5, -2.0]], dtype)
    t = np.array([[0.5, np.nan, 0.0, 1.0, np.inf, 0.0]], dtype)
    for reduction in REDUCTIONS:
        check("binary_crossentropy", x, t, {"from_logits": True}, reduction)
    p = np.array([[np.nan, 0.5], [0.25, 0.5]], dtype)
    q = np.array([[1.0, 0.0], [np.nan, 1.0]], dtype)
    for name in KERAS_OPTIONS:
        loss, grad = getattr(binary, name)(p, q, reduction="none", return_grad=True)
        assert np.isnan(loss).tolist() == [True, True] and np.isfinite(grad[:, 1]).all()


@pytest.mark.parametrize("smoothing", [-0.1, 1.5, np.nan])
@pytest.mark.parametrize("name", list(KERAS_OPTIONS))
def test_keras_label_smoothing_range(name, smoothing):
    with pytest.raises(ValueError, match="label_smoothing"):
        getattr(binary, name)(np.full(3, 0.5), np.ones(3), label_smoothing=smoothing)


@pytest.mark.parametrize("dtype", FLOATS, ids=_id)
def test_keras_focal_saturated_logits(dtype):
    """From logits Keras forms p = sigmoid(x) and clips it: saturated logits give the clipped
    crossentropy (at the clip bound of the input's dtype) and no gradient through it. Compared
    with Keras in the input's dtype: the saturated elements carry no cancellation, and the
    others are moderate."""
    x = np.array([[30.0, -30.0, 20.0, -20.0, 0.0, 2.0]], dtype)
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]], dtype)
    for reduction in REDUCTIONS:
        for kwargs in ({"from_logits": True}, {"from_logits": True, "gamma": 1.5}):
            check("binary_focal_crossentropy", x, t, kwargs, reduction, ref_dtype=dtype)
        check("binary_crossentropy", x, t, {"from_logits": True}, reduction)


# --- float64 gradients against finite differences ----------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("binary_cross_entropy", {}),
        ("binary_cross_entropy_with_logits", {"pos_weight": np.array([0.5, 2.0, 3.0])}),
        ("sigmoid_focal_loss", {"gamma": 1.5}),
        ("sigmoid_focal_loss", {"gamma": 2.0}),
        ("binary_crossentropy", {"label_smoothing": 0.2}),
        ("binary_focal_crossentropy", {"gamma": 2.5, "from_logits": True}),
        ("binary_focal_crossentropy", {"gamma": 0.5, "apply_class_balancing": True}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_gradients_against_finite_differences(name, kwargs):
    """float64 gradients against central differences of fastloss's own loss."""
    rng = np.random.default_rng(71)
    x, t = _simple_case(name, (4, 3), np.float64, seed=71)
    if name in ("binary_crossentropy", "binary_focal_crossentropy"):
        x = rng.uniform(0.05, 0.95, (4, 3)) if not kwargs.get("from_logits") else x
    f = getattr(binary, name)
    _, grad = f(x, t, **kwargs, reduction="sum", return_grad=True)
    numeric = np.empty_like(x)
    for i in np.ndindex(x.shape):
        h = 1e-6 * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = f(up, t, **kwargs, reduction="sum") - f(down, t, **kwargs, reduction="sum")
        numeric[i] /= 2 * h
    assert_close(grad, numeric, rtol=1e-6, atol=1e-8, what="finite differences")


# --- property test -----------------------------------------------------------------------------


def _logit_elements(dtype):
    width = np.dtype(dtype).itemsize * 8
    specials = [0.0, -0.0, 1.0, -1.0, 100.0, -100.0, 1e4, -1e4, 40.0, -40.0, np.nan, np.inf]
    return st.one_of(
        st.floats(-60.0, 60.0, width=width), st.sampled_from([float(v) for v in specials])
    )


@st.composite
def _bce_logits_cases(draw):
    dtype = draw(st.sampled_from(FLOATS))
    width = np.dtype(dtype).itemsize * 8
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    x = draw(hnp.arrays(dtype, shape, elements=_logit_elements(dtype)))
    t = draw(hnp.arrays(dtype, shape, elements=st.floats(0.0, 1.0, width=width)))
    kwargs = {}
    if draw(st.booleans()):
        pos_shape = draw(st.sampled_from([shape[-1:], (1,) if shape else (), ()]))
        kwargs["pos_weight"] = draw(
            hnp.arrays(dtype, pos_shape, elements=st.floats(0.0, 5.0, width=width))
        )
    if draw(st.booleans()):
        kwargs["weight"] = draw(hnp.arrays(dtype, shape, elements=st.floats(0.0, 2.0, width=width)))
    return x, t, kwargs, draw(st.sampled_from(REDUCTIONS))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_bce_logits_cases())
def test_bce_with_logits_property(case):
    """bce_with_logits against torch, the reference evaluated in float64 on the same values
    (torch's float32 arithmetic is not the answer at ±1e4)."""
    x, t, kwargs, reduction = case
    name = "binary_cross_entropy_with_logits"
    got = fast(name, x, t, kwargs, reduction)
    wide = {k: v.astype(np.float64) for k, v in kwargs.items()}
    want = reference(name, x, t, wide, reduction, np.float64)
    terms = reference(name, x, t, wide, "none", np.float64)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        compare(got, want, x.dtype, reduction, terms=terms)


# --- registry inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, make",
    [
        ("binary_cross_entropy", binary.probability_inputs),
        ("binary_cross_entropy_with_logits", binary.logit_inputs),
        ("sigmoid_focal_loss", binary.focal_inputs),
        ("binary_crossentropy", binary.probability_inputs),
        ("binary_focal_crossentropy", binary.probability_inputs),
    ],
)
def test_registry_input_generators(name, make):
    for dtype in (np.float32, np.float64):
        inputs = make(np.random.default_rng(0), 1000, dtype)
        loss = getattr(binary, name)(**inputs, reduction="mean")
        assert np.isfinite(loss) and loss.dtype == dtype
        assert math.isfinite(float(loss))
