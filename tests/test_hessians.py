"""Second derivatives (``return_hess=True``) of every elementwise loss.

Each registered loss of the regression, binary and divergence families (the softmax family is
out of scope) is checked, in float64 and for several option sets: against central finite
differences of fastloss's own gradient away from kinks and clips, against scikit-learn's
``sklearn._loss`` where it has the loss (with its scaling), for the scaling of the reductions
and weights, in float32 (dtype and shape), and for the loss and gradient, which must be the
same bits with and without ``return_hess``. The conventions at kinks, clips and zeros are
checked one by one (docs/losses.md, "Second derivatives").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastloss
from fastloss import _elementwise
from fastloss.registry import LOSSES

FAMILIES = ("fastloss.regression", "fastloss.binary", "fastloss.divergence", "fastloss.declared")
ELEMENTWISE = sorted(n for n, info in LOSSES.items() if info.function.__module__ in FAMILIES)
N = 40

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")


def _away(x, t, kink, gap=0.05):
    """``x`` moved so that ``|x - t|`` keeps ``gap`` away from ``kink``."""
    near = np.abs(np.abs(x - t) - kink) < gap
    return np.where(near, x + np.sign(x - t) * 3 * gap, x)


@dataclass
class Case:
    """One loss with one option set: its arrays (the first is the differentiated input)."""

    loss: str
    kwargs: dict = field(default_factory=dict)
    make: object = None  # rng, shape -> dict of arrays
    fd: bool = True  # finite differences apply (False: a convention, tested by value)
    weighted: bool = False  # the loss takes an element weight
    per_sample: int = 1  # Keras: elements averaged into a sample (the last axis)
    label: str = ""

    @property
    def id(self) -> str:
        return self.loss + ("-" + self.label if self.label else "")

    def arrays(self, shape=(N,), seed=0) -> dict:
        return self.make(np.random.default_rng(seed), shape)

    def call(self, arrays: dict, reduction: str, **extra):
        function = LOSSES[self.loss].function
        return function(**arrays, **self.kwargs, reduction=reduction, **extra)


def _normal(rng, shape):
    return {"input": rng.standard_normal(shape), "target": rng.standard_normal(shape)}


def _kinked(kink):
    def make(rng, shape):
        a = _normal(rng, shape)
        a["input"] = _away(a["input"], a["target"], kink)
        return a

    return make


def _counts(rng, shape):
    return {"input": rng.standard_normal(shape), "target": rng.poisson(2.0, shape) * 1.0}


def _rates(rng, shape):
    return {"input": rng.uniform(0.2, 3.0, shape), "target": rng.poisson(2.0, shape) * 1.0}


def _gaussian(rng, shape):
    a = _normal(rng, shape)
    a["var"] = rng.uniform(0.2, 2.0, shape)
    return a


def _positive(rng, shape):
    return {"input": rng.uniform(0.05, 3.0, shape), "target": rng.uniform(0.05, 3.0, shape)}


def _probabilities(rng, shape):
    return {"input": rng.uniform(0.05, 0.95, shape), "target": (rng.random(shape) < 0.5) * 1.0}


def _soft_probabilities(rng, shape):
    return {"input": rng.uniform(0.05, 0.95, shape), "target": rng.random(shape)}


def _logits(rng, shape):
    return {"input": 2 * rng.standard_normal(shape), "target": (rng.random(shape) < 0.5) * 1.0}


def _soft_logits(rng, shape):
    return {"input": 2 * rng.standard_normal(shape), "target": rng.random(shape)}


def _pos_weight(rng, shape):
    a = _logits(rng, shape)
    a["pos_weight"] = rng.uniform(0.3, 3.0, shape)
    return a


def _focal(make):
    def renamed(rng, shape):
        a = make(rng, shape)
        return {"inputs": a["input"], "targets": a["target"]}

    return renamed


def _log_probabilities(rng, shape):
    return {"input": rng.standard_normal(shape), "target": rng.uniform(0.0, 1.0, shape)}


def _signs(rng, shape):
    return {"input": 2 * rng.standard_normal(shape), "target": rng.choice([-1.0, 1.0], shape)}


CASES = [
    Case("mse_loss", make=_normal, weighted=True),
    Case("l1_loss", make=_normal, fd=False, weighted=True),
    Case("huber_loss", make=_kinked(1.0), weighted=True),
    Case("huber_loss", {"delta": 0.3}, _kinked(0.3), weighted=True, label="delta0.3"),
    Case("smooth_l1_loss", make=_kinked(1.0)),
    Case("smooth_l1_loss", {"beta": 0.4}, _kinked(0.4), label="beta0.4"),
    Case("smooth_l1_loss", {"beta": 0.0}, _normal, fd=False, label="beta0"),
    Case("poisson_nll_loss", make=_counts),
    Case("poisson_nll_loss", {"full": True}, _counts, label="full"),
    Case("poisson_nll_loss", {"log_input": False}, _rates, label="rates"),
    Case("poisson_nll_loss", {"log_input": False, "full": True}, _rates, label="rates-full"),
    Case("gaussian_nll_loss", make=_gaussian),
    Case("gaussian_nll_loss", {"full": True}, _gaussian, label="full"),
    Case("gaussian_nll_loss", {"var": 0.7}, _normal, label="float-var"),
    Case("rmse_loss", make=_normal),
    Case("log_cosh_loss", make=_normal),
    Case("msle_loss", make=_positive),
    Case("mape_loss", make=_normal, fd=False),
    Case("binary_cross_entropy", make=_probabilities, weighted=True),
    Case("binary_cross_entropy", make=_soft_probabilities, weighted=True, label="soft"),
    Case("binary_cross_entropy_with_logits", make=_soft_logits, weighted=True),
    Case("binary_cross_entropy_with_logits", make=_pos_weight, weighted=True, label="pos"),
    Case("sigmoid_focal_loss", make=_focal(_logits)),
    Case("sigmoid_focal_loss", {"gamma": 1.5, "alpha": -1.0}, _focal(_soft_logits), label="g1.5"),
    Case("sigmoid_focal_loss", {"gamma": 3.0, "alpha": 0.6}, _focal(_soft_logits), label="g3"),
    Case("sigmoid_focal_loss", {"gamma": 0.0}, _focal(_logits), label="g0"),
    Case("binary_crossentropy", make=_probabilities, per_sample=N),
    Case(
        "binary_crossentropy",
        {"label_smoothing": 0.2},
        _soft_probabilities,
        per_sample=N,
        label="smoothing",
    ),
    Case("binary_crossentropy", {"from_logits": True}, _soft_logits, per_sample=N, label="logits"),
    Case("binary_focal_crossentropy", make=_probabilities, per_sample=N),
    Case(
        "binary_focal_crossentropy",
        {"gamma": 3.0, "apply_class_balancing": True, "label_smoothing": 0.1},
        _soft_probabilities,
        per_sample=N,
        label="g3-balanced",
    ),
    Case(
        "binary_focal_crossentropy",
        {"gamma": 0.5, "alpha": 0.4, "apply_class_balancing": True},
        _soft_probabilities,
        per_sample=N,
        label="g0.5",
    ),
    Case(
        "binary_focal_crossentropy",
        {"from_logits": True},
        _soft_logits,
        per_sample=N,
        label="logits",
    ),
    Case(
        "binary_focal_crossentropy",
        {"from_logits": True, "gamma": 1.7, "label_smoothing": 0.3},
        _soft_logits,
        per_sample=N,
        label="logits-g1.7",
    ),
    Case("kl_div", make=_log_probabilities),
    Case("kl_div", {"log_target": True}, _normal, label="log-target"),
    # piecewise linear: sklearn's AbsoluteError convention, 1, not the derivative's 0
    Case("hinge_embedding_loss", make=_signs, fd=False),
    Case("hinge_embedding_loss", {"margin": 0.5}, _signs, fd=False, label="margin0.5"),
    Case("soft_margin_loss", make=_signs),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


def _hess_call(case: Case, arrays: dict, reduction: str):
    return case.call(arrays, reduction, return_hess=True)


def _input_grad(result):
    grad = result[1]
    return grad[0] if isinstance(grad, tuple) else grad


def _first(arrays: dict) -> str:
    return next(iter(arrays))


def test_every_elementwise_loss_is_covered():
    assert {case.loss for case in CASES} == set(ELEMENTWISE)
    assert len(ELEMENTWISE) == 18


# --- finite differences of fastloss's own gradient -----------------------------------------


def _central_difference(case: Case, arrays: dict, reduction: str) -> np.ndarray:
    """d grad_i / d x_i by central differences (each element's loss depends on x_i alone, so
    one perturbation of every element at once gives the diagonal; rmse: one at a time)."""
    name = _first(arrays)
    x = arrays[name]
    step = 1e-5 * (1.0 + np.abs(x))

    def grad(moved):
        return _input_grad(case.call({**arrays, name: moved}, reduction, return_grad=True))

    if case.loss != "rmse_loss":
        return (grad(x + step) - grad(x - step)) / (2 * step)
    diag = np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = step[i]
        diag[i] = (grad(x + e)[i] - grad(x - e)[i]) / (2 * step[i])
    return diag


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", [c for c in CASE_PARAMS if c.values[0].fd])
def test_matches_finite_differences_of_the_gradient(case, reduction):
    arrays = case.arrays(shape=(8,) if case.loss == "rmse_loss" else (N,))
    loss, grad, hess = _hess_call(case, arrays, reduction)[:3]
    want = _central_difference(case, arrays, reduction)
    scale = np.max(np.abs(want))
    assert scale > 0 or case.loss == "kl_div"  # linear in its input
    np.testing.assert_allclose(hess, want, rtol=1e-5, atol=1e-6 * scale)


# --- scikit-learn ---------------------------------------------------------------------------


def _sklearn(name: str, **kwargs):
    from sklearn._loss import loss

    return getattr(loss, name)(**kwargs)


SKLEARN = [
    # (fastloss loss, its options, sklearn class, its options, fastloss / sklearn, make, weight)
    ("mse_loss", {}, "HalfSquaredError", {}, 2.0, _normal, True),
    ("l1_loss", {}, "AbsoluteError", {}, 1.0, _normal, True),
    ("huber_loss", {"delta": 0.8}, "HuberLoss", {"delta": 0.8}, 1.0, _normal, True),
    ("poisson_nll_loss", {}, "HalfPoissonLoss", {}, 1.0, _counts, False),
    ("binary_cross_entropy_with_logits", {}, "HalfBinomialLoss", {}, 1.0, _logits, True),
]


SKLEARN_CASES = [
    pytest.param(
        *case[:6], with_weight, id=f"{case[2]}-{'weighted' if with_weight else 'unweighted'}"
    )
    for case in SKLEARN
    for with_weight in ((False, True) if case[6] else (False,))  # poisson takes no weight
]


@pytest.mark.parametrize(
    "loss, kwargs, sk_name, sk_kwargs, factor, make, with_weight", SKLEARN_CASES
)
def test_matches_sklearn(loss, kwargs, sk_name, sk_kwargs, factor, make, with_weight):
    rng = np.random.default_rng(3)
    arrays = make(rng, (200,))
    if loss == "huber_loss":  # residuals on the kink, |d| = delta exactly: sklearn's 1
        arrays["target"][:4] = 0.0
        arrays["input"][:4] = [0.8, -0.8, 0.0, 0.9]
    if loss == "l1_loss":  # and on l1's kink, d = 0
        arrays["input"][:3] = arrays["target"][:3]
    weight = rng.uniform(0.0, 2.0, 200) if with_weight else None
    extra = {"weight": weight} if with_weight else {}
    function = LOSSES[loss].function
    value, grad, hess = function(**arrays, **kwargs, **extra, reduction="none", return_hess=True)
    sk = _sklearn(sk_name, **sk_kwargs)
    y, raw = arrays["target"], arrays["input"]
    sk_grad, sk_hess = sk.gradient_hessian(y, raw, sample_weight=weight)
    sk_value = sk.loss(y, raw, sample_weight=weight)
    # sklearn's constant terms of the loss differ (none here); its hessian is the one compared
    np.testing.assert_allclose(hess, factor * sk_hess, rtol=1e-12, atol=1e-15)
    # the gradient at l1's kink is torch's subgradient 0 (sklearn's -1): fastloss's gradients
    # follow torch, its second derivatives sklearn
    off = arrays["input"] != arrays["target"]
    np.testing.assert_allclose(grad[off], factor * sk_grad[off], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(value, factor * sk_value, rtol=1e-12, atol=1e-14)


# --- reductions, weights, dtypes, shapes ------------------------------------------------------


def _mean_over_sum(case: Case, arrays: dict, weight=None) -> float:
    n = arrays[_first(arrays)].size
    if case.per_sample > 1:  # Keras: a mean of per-sample means; sum: of per-sample means
        return case.per_sample / n
    if weight is not None and case.loss in ("mse_loss", "l1_loss"):
        return 1.0 / weight.sum()  # torch's weighted mean of these two
    return 1.0 / n


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_reductions_scale_the_second_derivative(case):
    arrays = case.arrays(shape=(8,) if case.loss == "rmse_loss" else (N,))
    none = _hess_call(case, arrays, "none")
    total = _hess_call(case, arrays, "sum")
    mean = _hess_call(case, arrays, "mean")
    for result in (none, total, mean):
        assert isinstance(result, tuple) and len(result) == 3
        assert result[2].shape == arrays[_first(arrays)].shape
    if case.loss == "rmse_loss":  # not a sum of element losses: "none" is l1's
        np.testing.assert_array_equal(none[2], np.ones(8))
        return
    np.testing.assert_array_equal(total[2], none[2])
    ratio = _mean_over_sum(case, arrays)
    np.testing.assert_allclose(mean[2], total[2] * ratio, rtol=1e-14, atol=0)


@pytest.mark.parametrize("case", [c for c in CASE_PARAMS if c.values[0].weighted])
def test_weights_scale_the_second_derivative(case):
    arrays = case.arrays()
    weight = np.random.default_rng(5).uniform(0.0, 2.0, N)
    plain = _hess_call(case, arrays, "none")[2]
    for reduction in ("none", "sum", "mean"):
        hess = case.call(arrays, reduction, weight=weight, return_hess=True)[2]
        ratio = 1.0 if reduction != "mean" else _mean_over_sum(case, arrays, weight)
        np.testing.assert_allclose(hess, plain * weight * ratio, rtol=1e-14, atol=0)


def test_broadcast_weight_of_the_binary_losses():
    rng = np.random.default_rng(6)
    x, t = 2 * rng.standard_normal((5, 3)), (rng.random((5, 3)) < 0.5) * 1.0
    weight = np.array([0.5, 1.0, 2.0])
    hess = fastloss.binary_cross_entropy_with_logits(x, t, weight, return_hess=True)[2]
    plain = fastloss.binary_cross_entropy_with_logits(x, t, reduction="sum", return_hess=True)[2]
    np.testing.assert_allclose(hess, plain * weight / 15, rtol=1e-14)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_float32_dtype_and_shape(case):
    arrays64 = case.arrays(shape=(4, 10))
    arrays32 = {k: v.astype(np.float32) for k, v in arrays64.items()}
    want = _hess_call(case, arrays64, "mean")[2]
    loss, grad, hess = _hess_call(case, arrays32, "mean")[:3]
    assert hess.dtype == np.float32 and hess.shape == (4, 10)
    assert isinstance(hess, np.ndarray)
    np.testing.assert_allclose(hess, want, rtol=2e-4, atol=2e-5 * np.max(np.abs(want)))


@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy_with_logits", "msle_loss"])
def test_float16_gives_float16(name):
    x = np.linspace(0.1, 0.9, 12).astype(np.float16)
    t = np.linspace(0.9, 0.1, 12).astype(np.float16)
    loss, grad, hess = LOSSES[name].function(x, t, return_hess=True)
    assert grad.dtype == hess.dtype == np.float16
    want = LOSSES[name].function(x.astype(np.float32), t.astype(np.float32), return_hess=True)[2]
    np.testing.assert_allclose(hess, want, rtol=2e-3)


def test_rmse_float16_and_broadcast():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(6)
    t = rng.standard_normal((3, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for reduction in ("mean", "sum"):
            root, grad, hess = fastloss.rmse_loss(x, t, reduction=reduction, return_hess=True)
            diag = []
            for i in range(6):
                e = np.zeros(6)
                e[i] = 1e-6
                up = fastloss.rmse_loss(x + e, t, reduction=reduction, return_grad=True)[1]
                down = fastloss.rmse_loss(x - e, t, reduction=reduction, return_grad=True)[1]
                diag.append((up[i] - down[i]) / 2e-6)
            np.testing.assert_allclose(hess, diag, rtol=1e-6)
    x16 = x.astype(np.float16)
    root, grad, hess = fastloss.rmse_loss(x16, np.zeros(6, np.float16), return_hess=True)
    assert grad.dtype == hess.dtype == np.float16
    want = fastloss.rmse_loss(x16.astype(np.float32), np.zeros(6, np.float32), return_hess=True)
    np.testing.assert_allclose(hess, want[2], rtol=2e-3)


def test_broadcast_input_sums_the_second_derivative():
    x = np.array([[0.5, -1.0, 2.0, 0.0]])
    t = np.zeros((3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, grad, hess = fastloss.mse_loss(x, t, return_hess=True)
    assert hess.shape == x.shape
    np.testing.assert_allclose(hess, np.full((1, 4), 3 * 2 / 12))


# --- the loss and the gradient do not change --------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_loss_and_grad_are_the_same_bits(case, dtype):
    arrays = {k: v.astype(dtype) for k, v in case.arrays(shape=(5, 8)).items()}
    for reduction in ("none", "sum", "mean"):
        loss, grad = case.call(arrays, reduction, return_grad=True)
        with_hess = case.call(arrays, reduction, return_hess=True)
        value = case.call(arrays, reduction)
        np.testing.assert_array_equal(with_hess[0], loss)
        np.testing.assert_array_equal(with_hess[0], value)
        grads = grad if isinstance(grad, tuple) else (grad,)
        hess_grads = with_hess[1] if isinstance(with_hess[1], tuple) else (with_hess[1],)
        for a, b in zip(grads, hess_grads, strict=True):
            if a is None:
                assert b is None
            else:
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("case", [c for c in CASE_PARAMS if c.values[0].weighted])
def test_weighted_fortran_loss_and_grad_are_the_same_bits(case):
    arrays = {k: np.asfortranarray(v) for k, v in case.arrays(shape=(5, 8)).items()}
    weight = np.asfortranarray(np.random.default_rng(8).uniform(0.0, 2.0, (5, 8)))
    for reduction in ("none", "mean"):
        loss, grad = case.call(arrays, reduction, weight=weight, return_grad=True)
        result = case.call(arrays, reduction, weight=weight, return_hess=True)
        np.testing.assert_array_equal(result[0], loss)
        np.testing.assert_array_equal(result[1], grad)
        plain = _hess_call(case, {k: np.ascontiguousarray(v) for k, v in arrays.items()}, "none")
        ratio = 1.0 if reduction == "none" else _mean_over_sum(case, arrays, weight)
        np.testing.assert_allclose(result[2], plain[2] * weight * ratio, rtol=1e-14)


@pytest.mark.parametrize("name", ["mse_loss", "log_cosh_loss", "binary_cross_entropy_with_logits"])
def test_parallel_kernels(name):
    """Above the parallel threshold: the same bits as without return_hess, and as the serial
    kernels' second derivatives (their element code is the same)."""
    n = _elementwise.PARALLEL_THRESHOLD + 1000
    rng = np.random.default_rng(9)
    x = rng.standard_normal(n).astype(np.float32)
    t = (rng.random(n) < 0.5).astype(np.float32)
    function = LOSSES[name].function
    for reduction in ("mean", "none"):
        loss, grad = function(x, t, reduction=reduction, return_grad=True)
        result = function(x, t, reduction=reduction, return_hess=True)
        np.testing.assert_array_equal(result[0], loss)
        np.testing.assert_array_equal(result[1], grad)
        head = function(x[:1000], t[:1000], reduction="none", return_hess=True)[2]
        scale = np.float32(1.0 / n) if reduction == "mean" else np.float32(1.0)
        np.testing.assert_array_equal(result[2][:1000], head * scale)


def test_out_keeps_meaning_the_gradient():
    rng = np.random.default_rng(10)
    x, t = rng.standard_normal(30), rng.standard_normal(30)
    out = np.empty(30)
    loss, grad, hess = fastloss.huber_loss(x, t, return_hess=True, out=out)
    assert grad is out
    want = fastloss.huber_loss(x, t, return_hess=True)
    np.testing.assert_array_equal(out, want[1])
    np.testing.assert_array_equal(hess, want[2])
    inplace = x.copy()
    loss, grad, hess = fastloss.huber_loss(inplace, t, return_hess=True, out=inplace)
    assert grad is inplace
    np.testing.assert_array_equal(grad, want[1])
    np.testing.assert_array_equal(hess, want[2])


def test_return_hess_implies_the_gradient():
    x, t = np.array([0.5, 2.0]), np.array([0.0, 0.0])
    with_grad = fastloss.mse_loss(x, t, return_grad=True, return_hess=True)
    alone = fastloss.mse_loss(x, t, return_hess=True)
    assert len(with_grad) == len(alone) == 3
    np.testing.assert_array_equal(alone[2], [1.0, 1.0])


def test_gaussian_nll_returns_both_gradients_and_the_input_hessian():
    rng = np.random.default_rng(11)
    x, t, var = rng.standard_normal(6), rng.standard_normal(6), rng.uniform(0.5, 2.0, 6)
    loss, (grad_input, grad_var), hess = fastloss.gaussian_nll_loss(
        x, t, var, reduction="sum", return_hess=True
    )
    np.testing.assert_allclose(hess, 1 / var, rtol=1e-15)
    want = fastloss.gaussian_nll_loss(x, t, var, reduction="sum", return_grad=True)
    np.testing.assert_array_equal(grad_var, want[1][1])
    # var of the input's shape without its last dimension: its gradient keeps that shape
    x2, t2, v2 = x.reshape(2, 3), t.reshape(2, 3), var[:2]
    loss, (gi, gv), hess = fastloss.gaussian_nll_loss(x2, t2, v2, return_hess=True)
    assert gv.shape == (2,) and hess.shape == (2, 3)
    np.testing.assert_allclose(hess, np.repeat(1 / v2, 3).reshape(2, 3) / 6, rtol=1e-15)
    loss, (gi, gv), hess = fastloss.gaussian_nll_loss(x, t, 0.5, return_hess=True)
    assert gv is None
    np.testing.assert_allclose(hess, np.full(6, 2.0 / 6), rtol=1e-15)


# --- conventions at kinks, clips and zeros ---------------------------------------------------


def _hess_none(name, x, t, **kwargs):
    function = LOSSES[name].function
    return function(np.asarray(x, float), np.asarray(t, float), reduction="none",
                    return_hess=True, **kwargs)[2]  # fmt: skip


def test_l1_is_one_everywhere():
    np.testing.assert_array_equal(_hess_none("l1_loss", [0.0, 1.0, -3.0], [0.0, 0.0, 0.0]), 1.0)
    np.testing.assert_array_equal(
        _hess_none("smooth_l1_loss", [0.0, 1.0], [0.0, 0.0], beta=0.0), 1.0
    )


def test_huber_and_smooth_l1_at_the_kink():
    x = [0.0, 0.5, -0.5, 0.7, -2.0, np.nan]
    t = [0.0] * 6
    np.testing.assert_array_equal(
        _hess_none("huber_loss", x, t, delta=0.5), [1.0, 1.0, 1.0, 0.0, 0.0, np.nan]
    )
    np.testing.assert_array_equal(
        _hess_none("smooth_l1_loss", x, t, beta=0.5), [2.0, 2.0, 2.0, 0.0, 0.0, np.nan]
    )


def test_mape_is_its_slope_everywhere():
    t = np.array([2.0, -4.0, 0.0, 1e-9, 3.0])
    x = np.array([1.0, 1.0, 1.0, 1.0, 3.0])  # the last one on the kink
    eps = fastloss.regression.KERAS_EPSILON
    want = 100.0 / np.maximum(np.abs(t), eps)
    np.testing.assert_allclose(_hess_none("mape_loss", x, t), want, rtol=1e-15)


def test_msle_below_and_at_epsilon():
    eps = fastloss.regression.KERAS_EPSILON
    x = np.array([-1.0, 0.0, eps, 1.0])
    t = np.array([1.0, 1.0, 1.0, 1.0])
    hess = _hess_none("msle_loss", x, t)
    r = math.log1p(eps) - math.log(2.0)
    full = 2 * (1 - r) / (1 + eps) ** 2
    np.testing.assert_allclose(hess, [0.0, 0.0, full / 2, 2 / 4], rtol=1e-14)


def test_poisson_rates():
    hess = _hess_none("poisson_nll_loss", [0.5, 2.0, 0.0], [0.0, 3.0, 1.0], log_input=False)
    np.testing.assert_allclose(hess, [0.0, 3.0 / (2.0 + 1e-8) ** 2, 1.0 / 1e-16], rtol=1e-12)
    np.testing.assert_allclose(_hess_none("poisson_nll_loss", [0.0, 1.0], [5.0, 0.0]),
                               [1.0, math.e], rtol=1e-15)  # fmt: skip


def test_gaussian_below_eps():
    hess = _hess_none("gaussian_nll_loss", [0.0, 1.0], [1.0, 0.0], var=np.array([0.0, 2.0]))
    np.testing.assert_allclose(hess, [1e6, 0.5], rtol=1e-12)


def test_log_cosh_far_out_has_no_cancellation():
    hess = _hess_none("log_cosh_loss", [0.0, 10.0, -20.0, 400.0], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(hess[:3], 1 / np.cosh([0.0, 10.0, 20.0]) ** 2, rtol=1e-13)
    assert hess[3] == 0.0


def test_binary_cross_entropy_at_zero_and_one():
    """torch's gradient (x - t) / max(x (1 - x), 1e-12) has the derivative 1 / 1e-12 where the
    floor holds."""
    floor = float(np.float32(1e-12))
    hess = _hess_none("binary_cross_entropy", [0.0, 1.0, 0.25], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(hess, [1 / floor, 1 / floor, 16.0], rtol=1e-12)


def test_keras_clip_stops_the_second_derivative():
    hess = _hess_none("binary_crossentropy", [[0.0, 1.0, 1e-9, 0.5]], [[1.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(hess, [[0.0, 0.0, 0.0, 4.0 / 4]], rtol=1e-12)
    # the focal loss keeps the focal factor's derivatives outside the clip: as the gradient
    x = np.array([1e-9, 2e-9, 1.0 - 1e-10])
    t = np.array([1.0, 0.3, 0.0])
    case = Case("binary_focal_crossentropy", {"gamma": 3.0}, per_sample=3)
    arrays = {"input": x, "target": t}
    hess = case.call(arrays, "sum", return_hess=True)[2]
    step = 1e-11
    up = case.call({"input": x + step, "target": t}, "sum", return_grad=True)[1]
    down = case.call({"input": x - step, "target": t}, "sum", return_grad=True)[1]
    np.testing.assert_allclose(hess, (up - down) / (2 * step), rtol=1e-4)


def test_saturated_logits_stay_finite():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    t = np.array([0.0, 1.0, 0.5, 0.0, 1.0])
    for name, kwargs in [
        ("binary_cross_entropy_with_logits", {}),
        ("binary_crossentropy", {"from_logits": True}),
        ("binary_focal_crossentropy", {"from_logits": True}),
        ("binary_focal_crossentropy", {"from_logits": True, "gamma": 1.5}),
    ]:
        hess = _hess_none(name, x, t, **kwargs)
        assert np.all(np.isfinite(hess)), name
        assert "focal" in name or np.all(hess >= 0), name  # the focal losses are not convex
    for gamma in (2.0, 1.5, 3.0):
        hess = fastloss.sigmoid_focal_loss(x, t, gamma=gamma, return_hess=True)[2]
        assert np.all(np.isfinite(hess)), gamma
    s, q = 1 / (1 + np.exp(-x[1:4])), 1 / (1 + np.exp(x[1:4]))
    np.testing.assert_allclose(
        _hess_none("binary_cross_entropy_with_logits", x, t)[1:4], s * q, rtol=1e-12
    )


def test_kl_div_is_linear():
    for log_target in (False, True):
        hess = fastloss.kl_div(
            np.log([0.2, 0.8]), [0.5, 0.5], reduction="batchmean", log_target=log_target,
            return_hess=True,
        )[2]  # fmt: skip
        np.testing.assert_array_equal(hess, 0.0)


# --- errors ----------------------------------------------------------------------------------


def test_accumulator_chunk_hess_needs_the_scale_as_the_gradient_does():
    with pytest.raises(TypeError, match="return_hess"):
        fastloss.Accumulator("mse_loss", return_hess=True)
    acc = fastloss.Accumulator("mse_loss")
    with pytest.raises(ValueError, match="total="):
        acc.update(np.ones(3), np.zeros(3), return_hess=True)
    acc.update(np.ones(3), np.zeros(3))
    assert acc.compute() == 1.0
    acc = fastloss.Accumulator("mse_loss", reduction="sum")
    grad, hess = acc.update(np.ones(3), np.zeros(3), return_hess=True)
    assert grad.tolist() == [2.0] * 3 and hess.tolist() == [2.0] * 3


def test_return_hess_must_be_a_bool():
    with pytest.raises((TypeError, ValueError), match="return_hess"):
        fastloss.mse_loss([1.0], [0.0], return_hess="yes")


def test_a_spec_without_second_derivative():
    from numba import njit

    from fastloss.kernels._jit import POINT_OPTIONS
    from fastloss.kernels.elementwise import ElementwiseSpec

    @njit(**POINT_OPTIONS)
    def value_grad(x, t):
        d = x - t
        return d * d, d

    spec = ElementwiseSpec("no_hess_for_test", value_grad)
    x, t = np.array([1.0, 2.0]), np.zeros(2)
    with pytest.raises(NotImplementedError, match="return_hess"):
        _elementwise.run(spec, (x, t), ("input", "target"), return_hess=True)
    with pytest.raises(NotImplementedError, match="return_hess"):
        _elementwise.run_plain(spec, [x, t], (), (), "sum", True, True)
