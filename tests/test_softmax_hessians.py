"""Second derivatives of the softmax family: the Hessian's diagonal ``A p_c (1 - p_c)``.

Against scikit-learn's ``HalfMultinomialLoss.gradient_hessian`` (its diagonal, with sample
weights standing for torch's class weights) and against central differences of fastloss's own
gradient, column by column (each column's perturbation moves the whole row's softmax, so the
diagonal needs one column at a time).
"""

import numpy as np
import pytest
from sklearn._loss.loss import HalfMultinomialLoss

import fastloss

ROWS, CLASSES = 7, 5


def _logits(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal((ROWS, CLASSES))
    return x.astype(dtype), rng.integers(0, CLASSES, ROWS), rng.uniform(0.2, 2.0, CLASSES)


def _diagonal_by_differences(call, x, eps=1e-6):
    diag = np.zeros_like(x)
    for c in range(x.shape[-1]):
        step = np.zeros_like(x)
        step[..., c] = eps
        up, down = call(x + step)[1], call(x - step)[1]
        diag[..., c] = ((up - down) / (2 * eps))[..., c]
    return diag


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_against_sklearn_half_multinomial(weighted, dtype):
    x, t, w = _logits(dtype)
    options = {"weight": w.astype(dtype)} if weighted else {}
    loss, grad, hess = fastloss.cross_entropy(x, t, reduction="sum", return_hess=True, **options)
    sample_weight = w[t] if weighted else None
    sk_grad, sk_hess = HalfMultinomialLoss(n_classes=CLASSES).gradient_hessian(
        y_true=t.astype(np.float64),
        raw_prediction=x.astype(np.float64),
        sample_weight=sample_weight,
    )
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert hess.dtype == dtype and hess.shape == x.shape
    np.testing.assert_allclose(grad, sk_grad, rtol=0, atol=tol)
    np.testing.assert_allclose(hess, sk_hess, rtol=0, atol=tol)


CASES = {
    "mean": {},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
    "smoothing": {"label_smoothing": 0.2},
    "weighted-smoothing-ignore": {"label_smoothing": 0.3, "ignore_index": 2, "weighted": True},
    "weighted-mean": {"weighted": True},
}


@pytest.mark.parametrize("name", list(CASES))
def test_index_targets_against_differences(name):
    x, t, w = _logits(seed=3)
    options = dict(CASES[name])
    if options.pop("weighted", False):
        options["weight"] = w

    def call(z):
        return fastloss.cross_entropy(z, t, return_grad=True, **options)

    _, _, hess = fastloss.cross_entropy(x, t, return_hess=True, **options)
    np.testing.assert_allclose(hess, _diagonal_by_differences(call, x), rtol=0, atol=1e-8)
    if "ignore_index" in options:
        assert not hess[t == options["ignore_index"]].any()


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_probability_targets_and_keras_from_logits(smoothing):
    x, t, w = _logits(seed=5)
    rng = np.random.default_rng(6)
    y = rng.random(x.shape)
    y /= y.sum(1, keepdims=True)

    def call(z):
        return fastloss.cross_entropy(z, y, weight=w, label_smoothing=smoothing, return_grad=True)

    _, _, hess = fastloss.cross_entropy(x, y, weight=w, label_smoothing=smoothing, return_hess=True)
    np.testing.assert_allclose(hess, _diagonal_by_differences(call, x), rtol=0, atol=1e-8)

    def keras(z):
        return fastloss.categorical_crossentropy(
            z, y, from_logits=True, label_smoothing=smoothing, return_grad=True
        )

    _, _, hess = fastloss.categorical_crossentropy(
        x, y, from_logits=True, label_smoothing=smoothing, return_hess=True
    )
    np.testing.assert_allclose(hess, _diagonal_by_differences(keras, x), rtol=0, atol=1e-8)


def test_sparse_keras_from_logits_and_nll():
    x, t, _ = _logits(seed=7)
    _, grad, hess = fastloss.sparse_categorical_crossentropy(x, t, from_logits=True,
                                                              return_hess=True)  # fmt: skip
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(hess, p * (1 - p) / ROWS, rtol=1e-12, atol=0)
    _, grad, hess = fastloss.nll_loss(x, t, return_hess=True)
    assert hess.shape == x.shape and not hess.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_loss_and_grad_bits_do_not_change_with_hess(dtype):
    x, t, w = _logits(dtype, seed=9)
    for options in ({}, {"weight": w.astype(dtype), "label_smoothing": 0.1}):
        loss, grad = fastloss.cross_entropy(x, t, return_grad=True, **options)
        loss_h, grad_h, _ = fastloss.cross_entropy(x, t, return_hess=True, **options)
        assert np.asarray(loss).tobytes() == np.asarray(loss_h).tobytes()
        assert grad.tobytes() == grad_h.tobytes()


def test_in_place_gradient_with_hess():
    x, t, _ = _logits(seed=11)
    _, grad, hess = fastloss.cross_entropy(x, t, return_hess=True)
    logits = x.copy()
    _, into, hess_in_place = fastloss.cross_entropy(logits, t, return_hess=True, out=logits)
    assert into is logits
    assert into.tobytes() == grad.tobytes() and hess_in_place.tobytes() == hess.tobytes()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, t: fastloss.cross_entropy(x, t, softcap=3.0, return_hess=True), "softcap"),
        (lambda x, t: fastloss.cross_entropy(x, t, z_loss_scale=1e-4, return_hess=True), "z_loss"),
        (
            lambda x, t: fastloss.sparse_categorical_crossentropy(x / 10 + 1, t, return_hess=True),
            "from_logits=False",
        ),
    ],  # fmt: skip
    ids=["softcap", "z-loss", "keras-probabilities"],
)
def test_unsupported_forms_say_so(call, message):
    x, t, _ = _logits()
    with pytest.raises(NotImplementedError, match=message):
        call(x, t)


def test_return_hess_is_checked():
    x, t, _ = _logits()
    with pytest.raises((TypeError, ValueError), match="return_hess"):
        fastloss.cross_entropy(x, t, return_hess="yes")
