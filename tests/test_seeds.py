"""Every printed value of the regression losses in the source documents (/work/shared/seeds/).

Each case cites its seed file and line, rebuilds the inputs the seed shows, asserts fastloss's
value to the printed digits, and asserts it against the real library on the same inputs
(torch 2.13, or Keras 3 on its torch backend). fastloss takes ``(input, target)`` =
``(y_pred, y_true)``; Keras's losses take ``(y_true, y_pred)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close, keras, torch

import fastloss

F32 = np.float32


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


def torch_loss(name: str, x, t, **kwargs) -> float:
    """torch.nn.functional's loss on float32 tensors, as the seeds' notebooks ran it."""
    f = getattr(torch().nn.functional, name)
    return float(f(torch().tensor(x, dtype=torch().float32), torch().tensor(t), **kwargs))


def torch_grad(name: str, x, t, **kwargs) -> np.ndarray:
    xt = torch().tensor(np.asarray(x, F32), requires_grad=True)
    getattr(torch().nn.functional, name)(
        xt, torch().tensor(np.asarray(t, F32)), **kwargs
    ).backward()
    return xt.grad.numpy()


# --- 000_4427c68b80d30788.txt: PyTorch regression losses --------------------------------------

# lines 17-18 (and again 36-37, 53-54): predictions and targets
PRED_000 = np.array([2.5, 3.0, 1.8], F32)
TARGET_000 = np.array([2.0, 3.2, 1.5], F32)


@pytest.mark.parametrize(
    "function, torch_name, printed",
    [
        # line 15 nn.MSELoss(), line 21 print(f"MSE Loss: {loss.item():.4f}"), line 24
        ("mse_loss", "mse_loss", "0.1267"),
        # line 34 nn.L1Loss(), line 43 "MAE Loss: 0.3333"
        ("l1_loss", "l1_loss", "0.3333"),
        # line 51 nn.SmoothL1Loss() (beta=1), line 60 "Huber Loss: 0.0633"
        ("smooth_l1_loss", "smooth_l1_loss", "0.0633"),
    ],
)
def test_seed_000(function, torch_name, printed):
    loss, grad = getattr(fastloss, function)(PRED_000, TARGET_000, return_grad=True)
    assert loss.dtype == F32
    assert f"{float(loss):.4f}" == printed  # the seed's own format
    assert_printed(loss, printed)
    assert_close(loss, torch_loss(torch_name, PRED_000, TARGET_000), rtol=1e-6)
    assert_close(grad, torch_grad(torch_name, PRED_000, TARGET_000), rtol=1e-6)


def test_seed_000_hand_values():
    # The same three numbers by hand from lines 17-18: d = [0.5, -0.2, 0.3].
    d = PRED_000.astype(np.float64) - TARGET_000
    assert_close(fastloss.mse_loss(PRED_000, TARGET_000), np.mean(d * d), rtol=1e-6)
    assert_close(fastloss.l1_loss(PRED_000, TARGET_000), np.mean(np.abs(d)), rtol=1e-6)
    assert_close(fastloss.smooth_l1_loss(PRED_000, TARGET_000), np.mean(d * d / 2), rtol=1e-6)


# --- 001_cb2652d8d2e2361c.txt: guide to PyTorch losses ----------------------------------------
# The guide prints with f"{...:.4f}" but shows no outputs; the values are torch's on the
# inputs it shows, and the hand values of its formulas.

SEED_001 = [
    # lines 43-49: MSE on [2.5, 3.0, 1.8] vs [2.0, 3.2, 1.5]
    ("mse_loss", {}, [2.5, 3.0, 1.8], [2.0, 3.2, 1.5], "0.1267"),
    # lines 73-78: "MSE with outlier" / "MAE with outlier", predictions [2.5, 3.0, 10.0]
    ("mse_loss", {}, [2.5, 3.0, 10.0], [2.0, 3.2, 1.5], "24.1800"),
    ("l1_loss", {}, [2.5, 3.0, 10.0], [2.0, 3.2, 1.5], "3.0667"),
    # lines 161-173: compare_losses on "normal" data [2.1, 2.9, 3.1] vs [2.0, 3.0, 3.0]
    ("mse_loss", {}, [2.1, 2.9, 3.1], [2.0, 3.0, 3.0], "0.0100"),
    ("l1_loss", {}, [2.1, 2.9, 3.1], [2.0, 3.0, 3.0], "0.1000"),
    ("huber_loss", {"delta": 1.0}, [2.1, 2.9, 3.1], [2.0, 3.0, 3.0], "0.0050"),
    # lines 176-179: the same with an outlier, [2.1, 2.9, 10.0]
    ("mse_loss", {}, [2.1, 2.9, 10.0], [2.0, 3.0, 3.0], "16.3400"),
    ("l1_loss", {}, [2.1, 2.9, 10.0], [2.0, 3.0, 3.0], "2.4000"),
    ("huber_loss", {"delta": 1.0}, [2.1, 2.9, 10.0], [2.0, 3.0, 3.0], "2.1700"),
]


@pytest.mark.parametrize("function, kwargs, pred, target, printed", SEED_001)
def test_seed_001(function, kwargs, pred, target, printed):
    x, t = np.array(pred, F32), np.array(target, F32)
    loss, grad = getattr(fastloss, function)(x, t, **kwargs, return_grad=True)
    assert f"{float(loss):.4f}" == printed
    assert_close(loss, torch_loss(function, x, t, **kwargs), rtol=1e-6)
    assert_close(grad, torch_grad(function, x, t, **kwargs), rtol=1e-6)


def test_seed_001_huber_is_mse_and_mae_halves():
    # lines 156-157: Huber "behaves like MSE for small errors and like MAE for large ones":
    # with delta = 1, 0.5 d**2 below 1 and |d| - 0.5 above.
    x = np.array([2.1, 2.9, 10.0], F32)
    t = np.array([2.0, 3.0, 3.0], F32)
    parts = fastloss.huber_loss(x, t, reduction="none")
    half_squares = 0.5 * fastloss.mse_loss(x, t, reduction="none")
    abs_minus_half = fastloss.l1_loss(x, t, reduction="none") - F32(0.5)
    np.testing.assert_allclose(parts[:2], half_squares[:2], rtol=1e-6)
    np.testing.assert_allclose(parts[2], abs_minus_half[2], rtol=1e-6)


# --- 002_8a59776241d39e6d.txt: L1Loss and MSELoss on printed torch.randn inputs ---------------

# lines 105-107 (input) and 109-111 (target) of the L1Loss cell
L1_INPUT_002 = [
    [-1.7635, 0.1556, -0.6223, -0.7268, -1.2946],
    [-1.7378, 0.1661, -1.0814, -1.1439, 0.5920],
    [0.1332, -1.1221, 0.3395, -0.3578, -0.0967],
]
L1_TARGET_002 = [
    [1.8535, -1.1770, -0.1588, -1.2424, 0.9354],
    [-0.0087, -1.8183, 2.1992, -0.3471, -0.7438],
    [-0.1790, -0.8815, -0.2270, -0.3427, -0.4090],
]
# lines 136-138 (input) and 140-142 (target) of the MSELoss cell
MSE_INPUT_002 = [
    [-0.5070, 0.4369, -0.1781, 0.0681, -0.4557],
    [-1.2526, 0.3511, -0.5278, -0.0536, 1.5063],
    [-0.5172, 0.6655, -0.0341, 0.3643, 0.5832],
]
MSE_TARGET_002 = [
    [1.0522, 2.3562, 0.0837, 2.3595, 0.2934],
    [0.2369, -2.0097, -1.2394, -0.2212, 0.4254],
    [1.8768, 0.0744, -1.2391, -0.0936, -1.4914],
]


@pytest.mark.parametrize(
    "function, x, t, printed",
    [
        # line 92 nn.L1Loss(), line 113 "tensor(1.2488, grad_fn=<MeanBackward0>)"
        ("l1_loss", L1_INPUT_002, L1_TARGET_002, 1.2488),
        # line 123 nn.MSELoss(), line 144 "tensor(2.2358, grad_fn=<MseLossBackward0>)"
        ("mse_loss", MSE_INPUT_002, MSE_TARGET_002, 2.2358),
    ],
)
def test_seed_002(function, x, t, printed):
    x, t = np.array(x, F32), np.array(t, F32)
    loss, grad = getattr(fastloss, function)(x, t, return_grad=True)
    # torch on the printed (rounded) inputs, values and backward() gradients
    assert_close(loss, torch_loss(function, x, t), rtol=1e-6)
    assert_close(grad, torch_grad(function, x, t), rtol=1e-6, atol=1e-9)
    # The printed inputs are rounded to 1e-4 (each |d| moves by at most 1e-4, each d**2 by
    # at most 2 |d| 1e-4), so the loss of the unrounded inputs, printed to 4 digits, lies
    # within that bound plus half a printed digit.
    d = np.abs(x.astype(np.float64) - t)
    moved = 1e-4 if function == "l1_loss" else np.mean(2 * d * 1e-4 + 1e-8)
    assert abs(float(loss) - printed) <= moved + 0.5e-4
    # lines 88 and 119: the formulas |y_hat - y| and (y_hat - y)**2, averaged
    formula = np.mean(d) if function == "l1_loss" else np.mean(d * d)
    assert_close(loss, formula, rtol=1e-6)


# --- 003_08df81ffe73fa814.txt: Keras losses on y_true=[1,1,0], y_pred=[0.9,0.75,0.7] ----------

# lines 241-243 (and 279-281, 327-328, 346-348)
Y_TRUE = np.array([1.0, 1.0, 0.0], F32)
Y_PRED = np.array([0.9, 0.75, 0.7], F32)


def keras_value(cls_name: str, **kwargs) -> float:
    return float(getattr(keras().losses, cls_name)(**kwargs)(Y_TRUE, Y_PRED))


def keras_grad(cls_name: str, **kwargs) -> np.ndarray:
    y_pred = torch().tensor(Y_PRED, requires_grad=True)
    getattr(keras().losses, cls_name)(**kwargs)(torch().tensor(Y_TRUE), y_pred).backward()
    return y_pred.grad.numpy()


SEED_003 = [
    # line 258 Huber(delta=0.5); hand value line 253, printed line 262 "0.08708333"
    ("huber_loss", {"delta": 0.5}, "Huber", {"delta": 0.5}, "0.08708333"),
    # line 288 MeanAbsoluteError(); hand value line 283 (0.35), printed line 294 "0.35"
    ("l1_loss", {}, "MeanAbsoluteError", {}, "0.35"),
    # line 316 MeanSquaredError(); hand value line 311, printed line 320 "0.1875"
    ("mse_loss", {}, "MeanSquaredError", {}, "0.1875"),
    # line 335 MeanSquaredLogarithmicError(); printed line 339 "0.10067596" (the hand value
    # 0.10067283 of line 330 used logs rounded to 5 digits)
    ("msle_loss", {}, "MeanSquaredLogarithmicError", {}, "0.10067596"),
    # line 358 Poisson(): mean(y_pred - y_true log(y_pred + 1e-7)); printed line 363
    ("poisson_nll_loss", {"log_input": False, "eps": 1e-7}, "Poisson", {}, "0.9143474"),
    # line 271 LogCosh, no printed value: Keras's answer, seeds/README.md line 20
    ("log_cosh_loss", {}, "LogCosh", {}, "0.08773056"),
    # lines 297-303 MeanAbsolutePercentageError, not computed there ("values get very
    # large"): y_true = 0 meets epsilon 1e-7; Keras's answer, seeds/README.md line 20
    ("mape_loss", {}, "MeanAbsolutePercentageError", {}, "233333344"),
]


@pytest.mark.parametrize(
    "function, kwargs, keras_name, keras_kwargs, printed",
    SEED_003,
    ids=[case[0] for case in SEED_003],
)
def test_seed_003(function, kwargs, keras_name, keras_kwargs, printed):
    loss, grad = getattr(fastloss, function)(Y_PRED, Y_TRUE, **kwargs, return_grad=True)
    assert loss.dtype == F32
    assert_printed(loss, printed)
    assert_close(loss, keras_value(keras_name, **keras_kwargs), rtol=1e-6)
    # Keras on torch in float32 rounds log(2) (LogCosh) and cancels in float32: a few ulps
    # of the gradient's scale
    assert_close(grad, keras_grad(keras_name, **keras_kwargs), rtol=1e-6, atol=1e-7)


def test_seed_003_hand_values():
    # The hand computations of the seed, in float64 from the same float32 inputs.
    p, t = Y_PRED.astype(np.float64), Y_TRUE.astype(np.float64)
    a = t - p  # lines 247-251: a1 = 0.1, a2 = 0.25, a3 = -0.7
    huber = np.where(np.abs(a) <= 0.5, a * a / 2, 0.5 * (np.abs(a) - 0.25))
    assert_close(fastloss.huber_loss(Y_PRED, Y_TRUE, delta=0.5), huber.mean(), rtol=1e-6)
    assert_printed(huber.mean(), "0.08708333")  # line 253
    assert_printed(np.abs(a).mean(), "0.35")  # line 283
    assert_printed((a * a).mean(), "0.1875")  # line 311
    # line 330: (log(1 + y) - log(1 + y_hat))**2, averaged (hand value 0.10067283 from
    # 5-digit logs; Keras's 0.10067596 of line 339 is the exact one)
    msle = np.mean((np.log1p(t) - np.log1p(p)) ** 2)
    assert_close(fastloss.msle_loss(Y_PRED, Y_TRUE), msle, rtol=1e-6)
    assert abs(msle - 0.10067283) < 1e-5
    # line 350: y_hat - y log(y_hat), averaged; the "-1/3 (1.00536 + 1.03768)" of line 354
    # drops the third term 0.7 and the sign; Keras's 0.9143474 (line 363) is the mean
    poisson = np.mean(p - t * np.log(p))
    assert_close(fastloss.poisson_nll_loss(Y_PRED, Y_TRUE, log_input=False), poisson, rtol=1e-6)
    assert abs((1.00536 + 1.03768 + 0.7) / 3 - 0.9143474) < 1e-5
    # LogCosh: log(cosh(y_hat - y)), averaged
    log_cosh = np.mean(np.log(np.cosh(p - t)))
    assert_close(fastloss.log_cosh_loss(Y_PRED, Y_TRUE), log_cosh, rtol=1e-6)
    # MAPE: 100 |y - y_hat| / max(|y|, 1e-7), averaged: y = 0 gives 0.7 / 1e-7 * 100
    mape = np.mean(100 * np.abs(t - p) / np.maximum(np.abs(t), np.float32(1e-7)))
    assert_close(fastloss.mape_loss(Y_PRED, Y_TRUE), mape, rtol=1e-6)


def test_seed_003_float64():
    # The same cells with float64 inputs: fastloss computes in float64, and the digits above
    # hold there too (the printed values are float32 roundings).
    p, t = Y_PRED.astype(np.float64), Y_TRUE.astype(np.float64)
    assert_printed(fastloss.huber_loss(p, t, delta=0.5), "0.08708333")
    assert_printed(fastloss.l1_loss(p, t), "0.35")
    assert_printed(fastloss.mse_loss(p, t), "0.1875")
    assert_printed(fastloss.msle_loss(p, t), "0.10067596")
    assert_printed(fastloss.poisson_nll_loss(p, t, log_input=False, eps=1e-7), "0.9143474")
    assert_printed(fastloss.log_cosh_loss(p, t), "0.08773056")


# --- 004_1edef83619617a31.txt: notes on MSE, RMSE, MAE, Huber, MSLE, hinge ---------------------
# The notes print with f"{loss.item():.6f}" but show no outputs; they call the criterion as
# loss(y_true, y_pred), i.e. with y_true as torch's input, which is what is reproduced here
# (all four are symmetric in their arguments).

SEED_004 = [
    # lines 39-45: MSELoss, y_true [2, 4, 6], y_pred [1, 3, 5]
    ("mse_loss", {}, [2, 4, 6], [1, 3, 5], "1.000000"),
    # lines 116-123: L1Loss, y_true [2, 5, 7], y_pred [1, 3, 5]
    ("l1_loss", {}, [2, 5, 7], [1, 3, 5], "1.666667"),
    # lines 141-148: HuberLoss() (delta 1), y_true [2, 3, 4], y_pred [2.5, 3.2, 3.8]
    ("huber_loss", {}, [2.0, 3.0, 4.0], [2.5, 3.2, 3.8], "0.055000"),
]


@pytest.mark.parametrize("function, kwargs, y_true, y_pred, printed", SEED_004)
def test_seed_004(function, kwargs, y_true, y_pred, printed):
    a, b = np.array(y_true, F32), np.array(y_pred, F32)
    loss = getattr(fastloss, function)(a, b, **kwargs)
    assert f"{float(loss):.6f}" == printed
    assert_close(loss, torch_loss(function, a, b, **kwargs), rtol=1e-6)
    assert loss == getattr(fastloss, function)(b, a, **kwargs)  # symmetric


def test_seed_004_rmse():
    # lines 77-86: torch.sqrt(MSELoss()(y_true, y_pred)) on [2, 4, 6] vs [1, 3, 5]: 1.000000;
    # the formula of line 69, as Keras's RootMeanSquaredError computes it
    y_true = np.array([2, 4, 6], F32)
    y_pred = np.array([1, 3, 5], F32)
    loss, grad = fastloss.rmse_loss(y_pred, y_true, return_grad=True)
    assert f"{float(loss):.6f}" == "1.000000"
    assert_close(loss, math.sqrt(torch_loss("mse_loss", y_true, y_pred)), rtol=1e-6)
    metric = keras().metrics.RootMeanSquaredError()
    metric.update_state(y_true, y_pred)
    assert_close(loss, float(metric.result()), rtol=1e-6)
    # d L / d y_hat_i = (y_hat_i - y_i) / (n L) = -1/3 each
    np.testing.assert_allclose(grad, [-1 / 3] * 3, rtol=1e-6)


def test_seed_004_mse_derivative():
    # line 53 gives the derivative of L with respect to y_hat; per element it is
    # 2 (y_hat_i - y_i) / n, as torch's backward() gives
    y_true = np.array([2, 4, 6], F32)
    y_pred = np.array([1, 3, 5], F32)
    _, grad = fastloss.mse_loss(y_pred, y_true, return_grad=True)
    np.testing.assert_allclose(grad, 2 * (y_pred - y_true) / 3, rtol=1e-6)
    np.testing.assert_allclose(grad, torch_grad("mse_loss", y_pred, y_true), rtol=1e-6)


def test_seed_004_msle():
    # line 156: mean((log(y_i + 1) - log(y_hat_i + 1))**2); the notes give no inputs, so the
    # MSE example's (lines 39-40) are used, against Keras's MeanSquaredLogarithmicError
    y_true = np.array([2, 4, 6], F32)
    y_pred = np.array([1, 3, 5], F32)
    loss = fastloss.msle_loss(y_pred, y_true)
    hand = np.mean((np.log([3.0, 5.0, 7.0]) - np.log([2.0, 4.0, 6.0])) ** 2)
    assert_close(loss, hand, rtol=1e-6)
    want = keras().losses.MeanSquaredLogarithmicError()(y_true, y_pred)
    assert_close(loss, float(want), rtol=1e-6)
    assert f"{float(loss):.6f}" == f"{hand:.6f}"


def test_seed_004_huber_formula():
    # line 131: the Huber formula with delta, d = y - y_hat: 0.5 d**2 where |d| <= delta,
    # delta |d| - 0.5 delta**2 otherwise; on lines 142-143's inputs every |d| < 1, and with
    # delta = 0.25 two of them are beyond it
    y_true = np.array([2.0, 3.0, 4.0])
    y_pred = np.array([2.5, 3.2, 3.8])
    for delta in (1.0, 0.25):
        d = np.abs(y_true - y_pred)
        hand = np.where(d <= delta, 0.5 * d * d, delta * d - 0.5 * delta**2).mean()
        assert_close(fastloss.huber_loss(y_pred, y_true, delta=delta), hand, rtol=1e-12)


def test_seed_004_hinge_embedding():
    # lines 215-226: nn.HingeEmbeddingLoss() (margin 1) on y_pred [0.8, -0.9, 0.7, -0.6] and
    # y_true [1, -1, 1, -1], printed with f"{loss.item():.6f}" (no output shown): torch's answer
    # on those inputs is the case, 1.250000 (x where y = 1, max(0, 1 - x) where y = -1). The
    # formula of line 204 is the SVM hinge mean(max(0, 1 - y y_hat)), 0.25 on these inputs,
    # which is not what HingeEmbeddingLoss computes.
    y_true = np.array([1, -1, 1, -1], F32)
    y_pred = np.array([0.8, -0.9, 0.7, -0.6], F32)
    loss, grad = fastloss.hinge_embedding_loss(y_pred, y_true, return_grad=True)
    assert f"{float(loss):.6f}" == "1.250000"
    assert_close(loss, torch_loss("hinge_embedding_loss", y_pred, y_true), rtol=1e-6)
    np.testing.assert_allclose(grad, torch_grad("hinge_embedding_loss", y_pred, y_true))
    np.testing.assert_allclose(grad, [0.25, -0.25, 0.25, -0.25])
    assert f"{np.mean(np.maximum(0, 1 - y_true * y_pred)):.6f}" == "0.250000"
