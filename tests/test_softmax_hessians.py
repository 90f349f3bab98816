"""Second derivatives of the softmax family: the Hessian's diagonal ``A p_c (1 - p_c)``, and
the focal loss's, the soft cap's, the z-loss's and Keras's clipped probabilities' diagonals.

Against torch's and Keras's own autograd (the diagonal by a second backward per column), against
scikit-learn's ``HalfMultinomialLoss.gradient_hessian`` (its diagonal, with sample
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


def _options(case: dict, weight: np.ndarray) -> dict:
    """A case's keyword arguments, ``"weighted": True`` standing for the class weights."""
    options = dict(case)
    if options.pop("weighted", False):
        options["weight"] = weight
    return options


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
    options = _options(CASES[name], w)

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


def _torch_diagonal(loss_of, x):
    """The Hessian's diagonal of the real library's loss by autograd: the gradient with a graph,
    then each column's derivative of it (rows are independent, so one backward per column)."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    loss = loss_of(xt)
    (grad,) = torch.autograd.grad(loss.sum() if loss.ndim else loss, xt, create_graph=True)
    diag = np.zeros_like(x)
    for c in range(x.shape[-1]):
        (column,) = torch.autograd.grad(grad[..., c].sum(), xt, retain_graph=True)
        diag[..., c] = column[..., c].detach().numpy()
    return diag


def _torch_focal(alpha, gamma, reduction, ignore_index=-100):
    import torch

    def loss_of(logits, t):
        target = torch.tensor(t)
        ce = torch.nn.functional.cross_entropy(
            logits, target, reduction="none", ignore_index=ignore_index
        )
        keep = target != ignore_index
        rows = alpha * (1 - torch.exp(-ce[keep])) ** gamma * ce[keep]
        return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]

    return loss_of


FOCAL = {
    "mean": {},
    "gamma1.5-alpha": {"gamma": 1.5, "alpha": 0.3},
    "gamma0.5-sum": {"gamma": 0.5, "reduction": "sum"},
    "gamma3-ignore-none": {"gamma": 3.0, "ignore_index": 2, "reduction": "none"},
    "gamma0": {"gamma": 0.0},
}


@pytest.mark.parametrize("name", list(FOCAL))
def test_focal_loss_against_torch_autograd(name):
    x, t, _ = _logits(seed=13)
    options = {"alpha": 1.0, "gamma": 2.0, "reduction": "mean", **FOCAL[name]}
    _, grad, hess = fastloss.focal_loss(x, t, return_hess=True, **options)
    torch_options = {k: options[k] for k in ("alpha", "gamma", "reduction")}
    want = _torch_diagonal(
        lambda z: _torch_focal(**torch_options, ignore_index=options.get("ignore_index", -100))(
            z, t
        ),
        x,
    )
    np.testing.assert_allclose(hess, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        hess, _diagonal_by_differences(
            lambda z: fastloss.focal_loss(z, t, return_grad=True, **options), x
        ), rtol=0, atol=1e-8,
    )  # fmt: skip


SOFTCAP_ZLOSS = {
    "softcap": {"softcap": 3.0},
    "softcap-weighted-smoothing": {"softcap": 2.0, "weighted": True, "label_smoothing": 0.1},
    "z-loss": {"z_loss_scale": 0.1},
    "z-loss-weighted-sum": {"z_loss_scale": 0.05, "weighted": True, "reduction": "sum"},
    "z-loss-softcap-none": {"z_loss_scale": 0.1, "softcap": 3.0, "reduction": "none"},
}


@pytest.mark.parametrize("name", list(SOFTCAP_ZLOSS))
def test_softcap_and_z_loss_against_torch_autograd(name):
    import torch

    x, t, w = _logits(seed=17)
    options = _options(SOFTCAP_ZLOSS[name], w)
    _, _, hess = fastloss.cross_entropy(x, t, return_hess=True, **options)
    reduction = options.get("reduction", "mean")
    cap, z_scale = options.get("softcap"), options.get("z_loss_scale", 0.0)

    def loss_of(z):
        logits = z if cap is None else cap * torch.tanh(z / cap)
        weight = None if "weight" not in options else torch.tensor(w)
        ce = torch.nn.functional.cross_entropy(
            logits, torch.tensor(t), weight=weight, reduction=reduction,
            label_smoothing=options.get("label_smoothing", 0.0),
        )  # fmt: skip
        rows = z_scale * torch.logsumexp(logits, 1) ** 2
        return ce + {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]

    np.testing.assert_allclose(hess, _torch_diagonal(loss_of, x), rtol=1e-10, atol=1e-13)


def _keras_diagonal(name, y_pred, y_true, **options):
    from conftest import keras

    loss = getattr(keras().losses, name)
    return _torch_diagonal(lambda z: loss(torch_tensor(y_true), z, **options), y_pred)


def torch_tensor(value):
    import torch

    return torch.tensor(np.asarray(value))


def _predictions(seed):
    rng = np.random.default_rng(seed)
    o = rng.uniform(0.05, 1.0, (ROWS, CLASSES))
    o[0, 0] = 1e-9  # renormalised below the clip: no gradient, no curvature of its own
    y = rng.random((ROWS, CLASSES))
    return o, y / y.sum(1, keepdims=True), rng.integers(0, CLASSES, ROWS)


KERAS = {
    "categorical": ("categorical_crossentropy", "dense", {}),
    "categorical-smoothing": ("categorical_crossentropy", "dense", {"label_smoothing": 0.2}),
    "focal": ("categorical_focal_crossentropy", "dense", {}),
    "focal-gamma1.5": (
        "categorical_focal_crossentropy", "dense",
        {"gamma": 1.5, "alpha": 0.4, "label_smoothing": 0.1},
    ),
    "focal-logits": ("categorical_focal_crossentropy", "logits", {"from_logits": True}),
    "focal-logits-gamma3": (
        "categorical_focal_crossentropy", "logits", {"from_logits": True, "gamma": 3.0}
    ),
    "focal-logits-gamma0.5": (
        "categorical_focal_crossentropy", "logits",
        {"from_logits": True, "gamma": 0.5, "label_smoothing": 0.1},
    ),
    "sparse": ("sparse_categorical_crossentropy", "sparse", {}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(KERAS))
def test_keras_forms_against_keras_autograd(case):
    name, kind, options = KERAS[case]
    o, y, t = _predictions(seed=19)
    if kind == "logits":
        o = _logits(seed=19)[0]
    target = t if kind == "sparse" else y
    _, _, hess = getattr(fastloss, name)(o, target, reduction="sum", return_hess=True, **options)
    want = _keras_diagonal(name, o, target, **options)
    # Keras's focal form raises 1 - q to a float32 gamma: 1.5e-8 apart at gamma 1.5
    np.testing.assert_allclose(hess, want, rtol=1e-7 if "focal" in name else 1e-9, atol=1e-12)
    assert hess[0, 0] != 0 or kind == "logits"  # the clipped class's curvature comes from T


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_keras_and_focal_loss_and_grad_bits_do_not_change_with_hess(dtype):
    o, y, t = _predictions(seed=23)
    x = _logits(dtype, seed=23)[0]
    calls = [
        (fastloss.focal_loss, x, t, {"gamma": 1.5}),
        (fastloss.cross_entropy, x, t, {"softcap": 3.0, "z_loss_scale": 0.01}),
        (fastloss.categorical_crossentropy, o.astype(dtype), y, {}),
        (fastloss.categorical_focal_crossentropy, o.astype(dtype), y, {}),
        (fastloss.categorical_focal_crossentropy, x, y, {"from_logits": True}),
        (fastloss.sparse_categorical_crossentropy, o.astype(dtype), t, {}),
    ]
    for function, a, b, options in calls:
        loss, grad = function(a, b, return_grad=True, **options)
        loss_h, grad_h, hess = function(a, b, return_hess=True, **options)
        assert np.asarray(loss).tobytes() == np.asarray(loss_h).tobytes(), function.__name__
        assert grad.tobytes() == grad_h.tobytes(), function.__name__
        assert hess.dtype == dtype and hess.shape == a.shape


def test_device_arrays_say_so():
    class Device:  # anything with __cuda_array_interface__ takes the device path
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False),
                                    "version": 3}  # fmt: skip

    with pytest.raises(NotImplementedError, match="CPU only"):
        fastloss.focal_loss(Device(), np.zeros(2, np.int64), return_hess=True)


def test_return_hess_is_checked():
    x, t, _ = _logits()
    with pytest.raises((TypeError, ValueError), match="return_hess"):
        fastloss.cross_entropy(x, t, return_hess="yes")


def test_sparse_keras_at_the_upper_clip_bound_float32():
    """A float32 target probability of exactly 1 - 1e-7 lies inside the clip: the sparse
    diagonal is the one-hot dense one (it was a row of zeros), as Keras's autograd gives."""
    x = np.array([[1e-7, 0.9999999, 0.0], [0.2, 0.5, 0.3]], np.float32)
    labels = np.array([1, 0])
    _, grad, hess = fastloss.sparse_categorical_crossentropy(
        x, labels, reduction="sum", return_hess=True
    )
    _, dense_grad, dense_hess = fastloss.categorical_crossentropy(
        x, np.eye(3, dtype=np.float32)[labels], reduction="sum", return_hess=True
    )
    np.testing.assert_allclose(grad, dense_grad, rtol=1e-6)
    np.testing.assert_allclose(hess, dense_hess, rtol=1e-6)
    want = _keras_diagonal("sparse_categorical_crossentropy", x, labels)  # in float32 too
    np.testing.assert_allclose(hess, want, rtol=1e-6, atol=1e-6)  # an ulp of 1 where it cancels


def test_sparse_keras_infinite_prediction_is_nan_as_keras():
    import torch
    from conftest import keras

    x = np.array([[0.2, np.inf, 0.3, 0.5], [0.2, 0.3, 0.1, 0.4]])
    labels = np.array([0, 1])
    loss, grad, hess = fastloss.sparse_categorical_crossentropy(
        x, labels, reduction="none", return_hess=True
    )
    xt = torch.tensor(x, requires_grad=True)
    want = keras().losses.sparse_categorical_crossentropy(torch.tensor(labels), xt)
    want.sum().backward()
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12)
    assert np.isnan(xt.grad[0]).all() and np.isnan(grad[0]).all() and np.isnan(hess[0]).all()
    np.testing.assert_allclose(grad[1], xt.grad[1].numpy(), rtol=1e-12)
