"""Every printed classification value in the source documents (/work/shared/seeds/).

Each case cites its seed file and lines, rebuilds the inputs the seed shows, and asserts three
things: the printed number (to its printed digits), the real library's own value on the same
inputs (torch 2.13, or Keras 3 on its torch backend), and fastloss's value (and gradient).
fastloss takes ``(input, target)`` = ``(y_pred, y_true)``; Keras's losses take
``(y_true, y_pred)``.

The binary losses (``fastloss.binary``) and ``kl_div`` (``fastloss.divergence``) are written
concurrently with this file: their cases skip while the module does not exist (only then: a
module that exists but fails to import is an error).
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import numpy as np
import pytest
from conftest import assert_close, keras, torch

F32 = np.float32


def fastloss_module(name: str):
    """``fastloss.<name>``."""
    return importlib.import_module(f"fastloss.{name}")


def assert_printed(value, printed: str, *, ulps: int = 4) -> None:
    """``value`` shows ``printed``: within half a unit of its last printed digit, plus a few
    float32 ulps (another library's float32 arithmetic may round a last bit differently)."""
    text = printed.strip()
    if "e" in text.lower():
        mantissa, exponent = text.lower().split("e")
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        unit = 10.0 ** (int(exponent) - decimals)
    else:
        decimals = len(text.split(".")[1]) if "." in text else 0
        unit = 10.0**-decimals
    slack = 0.5 * unit + ulps * float(np.spacing(np.float32(abs(float(value)))))
    assert abs(float(value) - float(text)) <= slack, f"{float(value)!r} does not print {text}"


def _t(a, dtype=None, grad=False):
    tensor = torch().tensor(np.asarray(a) if dtype is None else np.asarray(a, dtype))
    if grad:
        tensor.requires_grad_(True)
    return tensor


def torch_value_grad(function, x, *args, **kwargs):
    """A torch loss on float32 ``x`` (the seeds' dtype): its value and ``x.grad``."""
    xt = _t(x, F32, grad=True)
    loss = function(xt, *args, **kwargs)
    loss.backward()
    return float(loss.detach()), xt.grad.numpy()


def F():
    return torch().nn.functional


# --- 000_4427c68b80d30788.txt: PyTorch classification cells ---------------------------------

# lines 140-145: the 4x3 logits; line 149 (and 174): the class indices
LOGITS_000 = np.array([[1.2, 0.5, 2.1], [0.1, 2.0, 1.5], [1.5, 0.2, 0.3], [0.0, 1.0, 1.0]], F32)
TARGETS_000 = np.array([2, 1, 0, 1])
# lines 167-172: probabilities after a softmax
PROBS_000 = np.array([[0.3, 0.4, 0.3], [0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.5, 0.3]], F32)


def test_seed_000_manual_cross_entropy_is_nll_of_log_probs():
    # lines 177-185: -log(probs)[range(4), targets].mean(), printed line 188
    sm = fastloss_module("softmax")
    log_probs = np.log(PROBS_000)
    printed = "0.6192346215248108"
    manual = -torch().log(_t(PROBS_000))[range(4), _t(TARGETS_000)].mean()
    assert_printed(float(manual), printed)
    want, want_grad = torch_value_grad(F().nll_loss, log_probs, _t(TARGETS_000))
    assert_printed(want, printed)
    loss, grad = sm.nll_loss(log_probs, TARGETS_000, return_grad=True)
    assert loss.dtype == F32
    assert_printed(loss, printed)
    assert_close(loss, want, rtol=1e-6)
    assert_close(grad, want_grad, rtol=1e-6)
    assert_close(grad[range(4), TARGETS_000], [-0.25] * 4, rtol=0)


def test_seed_000_cross_entropy_loss_on_logits():
    # lines 140-157: nn.CrossEntropyLoss()(logits, targets). Line 160 prints
    # 0.8826440572738647, which came from another run of the cell (seeds/README.md): torch's
    # answer on the shown inputs, 0.5884542, is the case.
    sm = fastloss_module("softmax")
    want, want_grad = torch_value_grad(F().cross_entropy, LOGITS_000, _t(TARGETS_000))
    assert_printed(want, "0.5884542")
    assert abs(want - 0.8826440572738647) > 0.29  # the printed number is not these inputs'
    loss, grad = sm.cross_entropy(LOGITS_000, TARGETS_000, return_grad=True)
    assert loss.dtype == F32
    assert_printed(loss, "0.5884542")
    assert_close(loss, want, rtol=1e-6)
    assert_close(grad, want_grad, rtol=1e-6, atol=1e-8)  # logits has requires_grad=True


def _seed_000_probabilities():
    """Lines 80-97: make_classification, a LogisticRegression, its test probabilities."""
    datasets = pytest.importorskip("sklearn.datasets")
    linear = pytest.importorskip("sklearn.linear_model")
    selection = pytest.importorskip("sklearn.model_selection")
    X, y = datasets.make_classification(
        n_samples=200,
        n_features=2,
        n_redundant=0,
        n_informative=2,
        n_clusters_per_class=1,
        weights=[0.5, 0.5],
        random_state=42,
    )
    X_train, X_test, y_train, y_test = selection.train_test_split(
        X, y, test_size=0.3, random_state=42
    )
    model = linear.LogisticRegression()
    model.fit(X_train, y_train)
    y_probs = model.predict_proba(X_test)[:, 1]
    return np.asarray(y_probs, F32), np.asarray(y_test, F32)


@pytest.mark.parametrize(
    "function, torch_name, printed",
    [
        # lines 109-115: nn.BCELoss() on the probabilities, "Loss: 0.39712637662887573"
        ("binary_cross_entropy", "binary_cross_entropy", "0.39712637662887573"),
        # lines 121-127: nn.BCEWithLogitsLoss() fed the same probabilities as if logits
        # (seeds/README.md): "Loss: 0.6462437510490417"
        (
            "binary_cross_entropy_with_logits",
            "binary_cross_entropy_with_logits",
            "0.6462437510490417",
        ),
    ],
)
def test_seed_000_binary_cross_entropy(function, torch_name, printed):
    p, y = _seed_000_probabilities()
    want, want_grad = torch_value_grad(getattr(F(), torch_name), p, _t(y))
    assert_printed(want, printed)
    binary = fastloss_module("binary")
    loss = getattr(binary, function)(p, y)
    assert np.asarray(loss).dtype == F32
    assert_printed(loss, printed)
    assert_close(loss, want, rtol=1e-6)
    loss, grad = getattr(binary, function)(p, y, return_grad=True)
    assert_close(grad, want_grad, rtol=1e-5, atol=1e-9)


# --- 001_cb2652d8d2e2361c.txt: the guide's multi-class FocalLoss -----------------------------
# Lines 184-212 define FocalLoss and print "Focal Loss" / "Cross-Entropy Loss" with :.4f on a
# model's outputs for torch.randn inputs; the guide shows no output. The case: the guide's own
# class (copied below) against fastloss.focal_loss on inputs built as lines 205-207 build
# them (100 x 5, 90 targets of class 0 and 10 of classes 1-4), from a fixed generator.


def _seed_001_focal_class():
    nn = torch().nn

    class FocalLoss(nn.Module):  # lines 184-201, as written
        def __init__(self, alpha=1, gamma=2, reduction="mean"):
            super().__init__()
            self.alpha = alpha
            self.gamma = gamma
            self.reduction = reduction

        def forward(self, inputs, targets):
            ce_loss = F().cross_entropy(inputs, targets, reduction="none")
            pt = torch().exp(-ce_loss)
            focal_loss = self.alpha * (1 - pt) ** self.gamma * ce_loss
            if self.reduction == "mean":
                return focal_loss.mean()
            elif self.reduction == "sum":
                return focal_loss.sum()
            else:
                return focal_loss

    return FocalLoss


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"alpha": 0.25, "gamma": 2.0}, {"alpha": 1, "gamma": 0.5}, {"reduction": "sum"}],
    ids=["defaults", "alpha0.25", "gamma0.5", "sum"],
)
def test_seed_001_focal_loss(kwargs):
    sm = fastloss_module("softmax")
    rng = np.random.default_rng(1)
    outputs = (rng.standard_normal((100, 5)) * 1.5).astype(F32)
    targets = np.concatenate([np.zeros(90, np.int64), rng.integers(1, 5, 10)])
    criterion = _seed_001_focal_class()(**kwargs)
    want, want_grad = torch_value_grad(criterion, outputs, _t(targets))
    loss, grad = sm.focal_loss(outputs, targets, **kwargs, return_grad=True)
    assert loss.dtype == F32
    assert f"{float(loss):.4f}" == f"{want:.4f}"  # the guide's print format
    assert_close(loss, want, rtol=2e-6)
    assert_close(grad, want_grad, rtol=2e-5, atol=1e-8)


def test_seed_001_focal_loss_is_below_cross_entropy():
    # lines 209-212 print the focal loss next to the cross-entropy: with gamma = 2 it is the
    # smaller (each row's ce is scaled by (1 - p_t)**2 < 1); with gamma = 0 they are equal
    sm = fastloss_module("softmax")
    rng = np.random.default_rng(2)
    outputs = rng.standard_normal((100, 5)).astype(F32)
    targets = np.concatenate([np.zeros(90, np.int64), rng.integers(1, 5, 10)])
    ce = sm.cross_entropy(outputs, targets)
    want_ce = float(F().cross_entropy(_t(outputs), _t(targets)))
    assert_close(ce, want_ce, rtol=1e-6)
    assert sm.focal_loss(outputs, targets) < ce
    assert_close(sm.focal_loss(outputs, targets, gamma=0.0), ce, rtol=1e-6)


# --- 002_8a59776241d39e6d.txt: BCELoss with sigmoid, CrossEntropyLoss, on printed inputs -----
# The printed inputs are torch.randn values rounded to 4 digits: torch on the printed inputs
# is the case, and the printed loss lies within half a printed digit plus the move of the
# loss under a rounding of each input by at most 0.5e-4 (bounded by the gradient's size).

BCE_INPUT_002 = np.array([0.1679, -0.0870, -0.7915], F32)  # line 42
BCE_TARGET_002 = np.array([1.0, 0.0, 0.0], F32)  # line 44
CE_INPUT_002 = np.array(  # lines 76-78
    [
        [0.2775, -1.1323, 0.7124, -2.1484, 0.4200],
        [-1.7906, -0.6312, -0.2453, 0.6484, -1.0162],
        [-0.7919, -0.1500, 0.6598, -1.1956, -0.8249],
    ],
    F32,
)
CE_TARGET_002 = np.array([1, 4, 2])  # line 80


def _within_rounding(loss, grad, printed: float) -> None:
    moved = 0.5e-4 * float(np.abs(grad).sum()) * 1.01
    assert abs(float(loss) - printed) <= 0.5e-4 + moved + 1e-7, (float(loss), printed)


def test_seed_002_bce_with_sigmoid():
    # lines 27-39: nn.BCELoss()(nn.Sigmoid()(input), target); output.backward() gives
    # input.grad through the sigmoid; printed line 46 "tensor(0.5457, ...)"
    xt = _t(BCE_INPUT_002, F32, grad=True)
    out = F().binary_cross_entropy(torch().sigmoid(xt), _t(BCE_TARGET_002))
    out.backward()
    want, want_grad = float(out.detach()), xt.grad.numpy()
    _within_rounding(want, want_grad, 0.5457)
    binary = fastloss_module("binary")
    # BCE on logits is BCE after the sigmoid: same value, and the gradient w.r.t. the input
    loss, grad = binary.binary_cross_entropy_with_logits(
        BCE_INPUT_002, BCE_TARGET_002, return_grad=True
    )
    assert_close(loss, want, rtol=1e-6)
    assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)
    _within_rounding(loss, grad, 0.5457)
    probabilities = (1 / (1 + np.exp(-BCE_INPUT_002.astype(np.float64)))).astype(F32)
    assert_close(binary.binary_cross_entropy(probabilities, BCE_TARGET_002), want, rtol=1e-6)


def test_seed_002_cross_entropy():
    # lines 63-73: nn.CrossEntropyLoss()(input, target), backward(); printed line 82 1.9556
    sm = fastloss_module("softmax")
    want, want_grad = torch_value_grad(F().cross_entropy, CE_INPUT_002, _t(CE_TARGET_002))
    _within_rounding(want, want_grad, 1.9556)
    loss, grad = sm.cross_entropy(CE_INPUT_002, CE_TARGET_002, return_grad=True)
    assert loss.dtype == F32
    assert_close(loss, want, rtol=1e-6)
    assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)
    _within_rounding(loss, grad, 1.9556)
    # the formula of lines 52-57: the mean of -log softmax at the target
    x = CE_INPUT_002.astype(np.float64)
    log_softmax = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert_close(loss, -log_softmax[range(3), CE_TARGET_002].mean(), rtol=1e-6)


# --- 003_08df81ffe73fa814.txt: Keras losses on y_true=[1,1,0], y_pred=[0.9,0.75,0.7] ---------
# The document ran TensorFlow's Keras 2; the references here are Keras 3 on torch. Where they
# differ in the last digits the case says why (TF 2 adds epsilon inside the log:
# log(p + 1e-7), Keras 3 clips p to [1e-7, 1 - 1e-7] and takes log(p)).

Y_TRUE = np.array([1.0, 1.0, 0.0], F32)  # lines 8, 70, 112, 159
Y_PRED = np.array([0.9, 0.75, 0.7], F32)  # lines 10, 72, 114, 161


def keras_value_grad(cls_name: str, y_true, y_pred, **kwargs):
    yp = _t(y_pred, F32, grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-class SyntaxWarning of line 150
        value = getattr(keras().losses, cls_name)(**kwargs)(_t(y_true, F32), yp)
    value.backward()
    return float(value.detach()), yp.grad.numpy()


def _check_keras(got, grad, want, want_grad):
    assert np.asarray(got).dtype == F32
    assert_close(got, want, rtol=1e-6, what="loss vs Keras")
    assert_close(grad, want_grad, rtol=1e-5, atol=1e-7, what="grad vs Keras")


def test_seed_003_binary_crossentropy():
    # lines 27-31: BinaryCrossentropy(), printed 0.53233826; hand value line 14: 0.53233846.
    # Keras 3 gives 0.53233844 (the hand value in float32); TF 2's log(p + 1e-7) shifts it
    # by -1.9e-7 to the printed digits: 3 float32 ulps, within 4.
    want, want_grad = keras_value_grad("BinaryCrossentropy", Y_TRUE, Y_PRED)
    hand = -np.mean(np.log([0.9, 0.75, 0.3]))
    assert_printed(hand, "0.53233846")
    assert_printed(want, "0.53233826", ulps=4)
    tf_style = -np.mean(np.log(np.array([0.9, 0.75, 0.3]) + 1e-7))
    assert_printed(tf_style, "0.53233826", ulps=1)
    binary = fastloss_module("binary")
    loss, grad = binary.binary_crossentropy(Y_PRED, Y_TRUE, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "0.53233826", ulps=5)
    assert_close(loss, hand, rtol=1e-6)


def test_seed_003_binary_crossentropy_from_logits():
    # lines 44-57: from_logits=True on [15, 1, 0]; hand value line 48 0.33546972, printed
    # 0.33546963 (TF's float32 rounding; Keras 3 gives the hand value)
    logits = np.array([15.0, 1.0, 0.0], F32)
    want, want_grad = keras_value_grad("BinaryCrossentropy", Y_TRUE, logits, from_logits=True)
    assert_printed(want, "0.33546972")
    assert_printed(want, "0.33546963", ulps=4)
    binary = fastloss_module("binary")
    loss, grad = binary.binary_crossentropy(logits, Y_TRUE, from_logits=True, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "0.33546963", ulps=5)


def test_seed_003_binary_focal_crossentropy():
    # lines 85-89: BinaryFocalCrossentropy(gamma=2), printed 0.20299341; hand value line 78
    # (alpha does not enter without apply_class_balancing, line 76) 0.20299346
    want, want_grad = keras_value_grad("BinaryFocalCrossentropy", Y_TRUE, Y_PRED, gamma=2)
    p = np.array([0.9, 0.75, 0.7])
    hand = -np.mean([0.1**2 * np.log(p[0]), 0.25**2 * np.log(p[1]), 0.7**2 * np.log(0.3)])
    assert_printed(hand, "0.20299346")
    assert_printed(want, "0.20299341", ulps=4)
    binary = fastloss_module("binary")
    loss, grad = binary.binary_focal_crossentropy(Y_PRED, Y_TRUE, gamma=2.0, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "0.20299341", ulps=5)
    assert_close(loss, hand, rtol=1e-6)


def test_seed_003_categorical_crossentropy():
    # lines 114-131: CategoricalCrossentropy(), printed 2.1018732. Keras renormalises y_pred
    # by its sum (line 116; seeds/README.md), not by softmax as the prose says; the hand
    # value 2.10192 of line 120 used logs rounded to 5 digits.
    sm = fastloss_module("softmax")
    want, want_grad = keras_value_grad("CategoricalCrossentropy", Y_TRUE, Y_PRED)
    assert_printed(want, "2.1018732")
    loss, grad = sm.categorical_crossentropy(Y_PRED, Y_TRUE, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "2.1018732")
    q = Y_PRED.astype(np.float64) / Y_PRED.sum(dtype=np.float64)
    assert_close(q, [0.38297, 0.31914, 0.29787], rtol=0, atol=1e-5)  # line 116, truncated
    assert abs(float(loss) - 2.10192) < 1e-4  # line 120
    assert_close(loss, -(np.log(q[0]) + np.log(q[1])), rtol=1e-6)


def test_seed_003_categorical_crossentropy_of_one_class():
    # lines 143-147: CategoricalCrossentropy()([1], [0.9]): y_pred / sum = 1 is clipped to
    # 1 - 1e-7, which is 1 - 2**-23 in float32: -log of it prints 1.192093e-07
    sm = fastloss_module("softmax")
    y_true, y_pred = np.array([1.0], F32), np.array([0.9], F32)
    want, want_grad = keras_value_grad("CategoricalCrossentropy", y_true, y_pred)
    assert_printed(want, "1.192093e-07")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, grad = sm.categorical_crossentropy(y_pred, y_true, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "1.192093e-07")
    assert (grad == 0).all()  # clipped: no gradient


def test_seed_003_categorical_focal_crossentropy():
    # lines 153-167: CategoricalFocalCrossentropy, left unfinished in the document; Keras's
    # answer 0.22370747 (seeds/README.md). Keras: alpha (0.25) * (1 - q)**gamma * -y log q,
    # with q = y_pred / sum (the document's p**gamma factor of line 167 is not Keras's).
    sm = fastloss_module("softmax")
    want, want_grad = keras_value_grad("CategoricalFocalCrossentropy", Y_TRUE, Y_PRED)
    assert_printed(want, "0.22370747")
    loss, grad = sm.categorical_focal_crossentropy(Y_PRED, Y_TRUE, return_grad=True)
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, "0.22370747")
    q = Y_PRED.astype(np.float64) / Y_PRED.sum(dtype=np.float64)
    hand = -0.25 * ((1 - q[0]) ** 2 * np.log(q[0]) + (1 - q[1]) ** 2 * np.log(q[1]))
    assert_close(loss, hand, rtol=1e-6)


@pytest.mark.parametrize(
    "from_logits, printed",
    # seeds/README.md: on 000's logits and labels Keras reads the logits as probabilities
    # (renormalised by their sum) unless from_logits=True, which gives torch's 0.5884542
    [(False, "0.54041994"), (True, "0.5884542")],
)
def test_seed_003_sparse_categorical_crossentropy(from_logits, printed):
    sm = fastloss_module("softmax")
    want, want_grad = keras_value_grad(
        "SparseCategoricalCrossentropy", TARGETS_000, LOGITS_000, from_logits=from_logits
    )
    assert_printed(want, printed)
    loss, grad = sm.sparse_categorical_crossentropy(
        LOGITS_000, TARGETS_000, from_logits=from_logits, return_grad=True
    )
    _check_keras(loss, grad, want, want_grad)
    assert_printed(loss, printed)
    if not from_logits:
        q = LOGITS_000.astype(np.float64)
        q = np.clip(q / q.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
        assert_close(loss, -np.log(q[range(4), TARGETS_000]).mean(), rtol=1e-6)


def test_seed_003_kl_divergence():
    # line 265 KLDivergence, formula line 271, no value computed there: Keras's answer
    # 0.39304110 (seeds/README.md): sum over the last axis of y log(y / y_pred), both clipped
    # to [1e-7, 1] (y_true = 0 contributes 1e-7 log(1e-7 / 0.7)).
    want, want_grad = keras_value_grad("KLDivergence", Y_TRUE, Y_PRED)
    assert_printed(want, "0.39304110")
    y = np.clip(Y_TRUE.astype(np.float64), 1e-7, 1)
    p = np.clip(Y_PRED.astype(np.float64), 1e-7, 1)
    hand = np.sum(y * np.log(y / p))
    assert_printed(hand, "0.39304110")
    # fastloss has no Keras-semantics KL function: torch's kl_div, summed, on Keras's clipped
    # inputs (input = log y_pred) is the same number
    divergence = fastloss_module("divergence")
    log_p = np.log(p).astype(F32)
    loss, grad = divergence.kl_div(log_p, y.astype(F32), reduction="sum", return_grad=True)
    assert_printed(loss, "0.39304110")
    want_kl, want_kl_grad = torch_value_grad(F().kl_div, log_p, _t(y, F32), reduction="sum")
    assert_close(loss, want_kl, rtol=1e-6)
    assert_close(grad, want_kl_grad, rtol=1e-6)
    # d/d y_pred of Keras's value is -y / y_pred = (d/d log_p) / y_pred
    assert_close(grad / p, want_grad, rtol=1e-5, atol=1e-7)


# --- 004_1edef83619617a31.txt: cross-entropy on one-hot targets --------------------------------


def test_seed_004_cross_entropy_with_probability_targets():
    # lines 178-186: nn.CrossEntropyLoss()(y_pred, y_true), y_true one-hot float32 (class
    # probabilities), y_pred probabilities used as logits; printed with :.6f, no output shown
    sm = fastloss_module("softmax")
    y_true = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], F32)
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]], F32)
    want, want_grad = torch_value_grad(F().cross_entropy, y_pred, _t(y_true))
    assert f"{want:.6f}" == "0.799169"
    loss, grad = sm.cross_entropy(y_pred, y_true, return_grad=True)
    assert loss.dtype == F32
    assert f"{float(loss):.6f}" == "0.799169"
    assert_close(loss, want, rtol=1e-6)
    assert_close(grad, want_grad, rtol=1e-5, atol=1e-8)
    # the same as class indices (the one-hot rows' argmax)
    by_index = sm.cross_entropy(y_pred, y_true.argmax(axis=1))
    assert_close(by_index, loss, rtol=1e-6)
    # the formula of line 165, -sum y log softmax(y_pred), averaged over the batch
    x = y_pred.astype(np.float64)
    log_softmax = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert_close(loss, -(y_true * log_softmax).sum(axis=1).mean(), rtol=1e-6)
