"""The margin family's specifics: ``hinge_embedding_loss`` and ``soft_margin_loss``.

The differential suite over shapes, dtypes, reductions and options, the array kinds, ``out=``
and the device path come from the registry (``test_elementwise.py``). Here: the kink of the
hinge and torch's rule for targets other than 1 and -1, exact torch values there; the soft
margin's large arguments, where torch's formula overflows and fastloss's does not (checked
against torch in float64 where that is finite, and against the exact limit beyond); the second
derivatives (docs/losses.md, "Second derivatives") against scikit-learn's ``HalfBinomialLoss``
(the soft margin is it, on targets 1 and -1), against finite differences of fastloss's own
gradient, and the hinge's convention.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLOATS, REDUCTIONS, assert_close, check_against_reference, eps, torch

import fastloss

MARGINS = [1.0, 0.5, 0.0, -0.75, 2.0]


# --- hinge_embedding_loss ----------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("margin", MARGINS)
def test_hinge_at_the_kink_and_around_it(margin, dtype, reduction):
    """x = margin exactly (torch's clamp_min passes the gradient there: -1 for y = -1), and
    exact offsets on both sides, for targets 1, -1 and others."""
    offsets = np.array([0.0, 0.25, -0.25, 0.0, 1.5, -1.5, 0.0, 0.0])
    x = (margin + offsets).astype(dtype)
    t = np.array([-1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 0.0, 2.0], dtype)
    check_against_reference("hinge_embedding_loss", {"input": x, "target": t}, {"margin": margin},
                            reduction)  # fmt: skip
    _, grad = fastloss.hinge_embedding_loss(x, t, margin, reduction="none", return_grad=True)
    np.testing.assert_array_equal(grad, [-1, 0, -1, 1, 0, 1, 0, 0])


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_hinge_targets_other_than_plus_minus_one_take_both_terms(dtype):
    """torch's where(t != 1, clamp_min(margin - x, 0), 0) + where(t != -1, x, 0): printed by
    torch 2.13 on these inputs (and checked against it)."""
    nan, inf = np.nan, np.inf
    x = np.array([0.5, 1.0, 2.0, -0.5, 1.0, 0.3, nan, 0.2, 3.0, inf, -inf, inf, 0.4], dtype)
    t = np.array([1, -1, -1, -1, 0, 2, -1, nan, 0.5, -1, 1, inf, -inf], dtype)
    loss, grad = fastloss.hinge_embedding_loss(x, t, reduction="none", return_grad=True)
    want = [0.5, 0.0, 0.0, 1.5, 1.0, 1.0, nan, 1.0, 3.0, 0.0, -inf, inf, 1.0]
    np.testing.assert_array_equal(loss, np.array(want, dtype))
    np.testing.assert_array_equal(grad, np.array([1, -1, 0, -1, 0, 0, 0, 0, 1, 0, 1, 1, 0], dtype))
    for reduction in REDUCTIONS:
        check_against_reference("hinge_embedding_loss", {"input": x, "target": t}, {}, reduction)


def test_hinge_margin_is_a_finite_real():
    x = np.zeros(3)
    for bad, error in [(np.nan, ValueError), (np.inf, ValueError), ("1", TypeError)]:
        with pytest.raises(error, match="^margin: "):
            fastloss.hinge_embedding_loss(x, x, margin=bad)
    # a negative or integer margin is fine, as in torch
    assert fastloss.hinge_embedding_loss(x, -np.ones(3), margin=-2) == 0.0
    assert fastloss.hinge_embedding_loss(x, -np.ones(3), 3) == 3.0


# --- soft_margin_loss ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_soft_margin_where_torch_overflows(dtype):
    """Large -y x: fastloss is torch evaluated in float64 (finite there up to 709.8), then the
    exact limits -y x and -y where float64 overflows too; torch in the input's dtype gives inf
    and a NaN gradient (documented)."""
    z = np.array([-20.0, -50.0, -88.0, -89.0, -100.0, -300.0, -700.0], dtype)
    for y in (1.0, -1.0):
        x, t = (z * y).astype(dtype), np.full(z.shape, y, dtype)
        loss, grad = fastloss.soft_margin_loss(x, t, reduction="none", return_grad=True)
        xt = torch().tensor(x.astype(np.float64), requires_grad=True)
        want = torch().nn.functional.soft_margin_loss(xt, torch().tensor(t, dtype=xt.dtype),
                                                      reduction="none")  # fmt: skip
        want.sum().backward()
        assert_close(loss, want.detach().numpy(), rtol=4 * eps(dtype))
        assert_close(grad, xt.grad.numpy(), rtol=4 * eps(dtype))
    huge = np.array([-1e4, -1e30, -np.inf], dtype)
    loss, grad = fastloss.soft_margin_loss(huge, np.ones(3, dtype), reduction="none",
                                           return_grad=True)  # fmt: skip
    np.testing.assert_array_equal(loss, -huge)
    np.testing.assert_array_equal(grad, -np.ones(3, dtype))
    beyond = torch().nn.functional.soft_margin_loss(
        torch().tensor(np.array([-100.0], np.float32)), torch().tensor([1.0]), reduction="sum"
    )
    assert np.isinf(beyond.item())  # torch's float32 overflow, which fastloss avoids


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_soft_margin_large_margins_are_tiny_not_zero(dtype):
    """Large y x: the loss log1p(e^{-z}), the gradient and the second derivative are about
    e^{-z}: tiny, to the input's precision, never a cancellation to 0."""
    z = np.array([10.0, 30.0, 60.0], dtype)
    loss, grad, hess = fastloss.soft_margin_loss(z, np.ones(3, dtype), reduction="none",
                                                 return_hess=True)  # fmt: skip
    e = np.exp(-z.astype(np.float64))
    assert_close(loss, np.log1p(e), rtol=8 * eps(dtype))
    assert_close(-grad, e / (1 + e), rtol=8 * eps(dtype))
    assert_close(hess, e / (1 + e) ** 2, rtol=8 * eps(dtype))


# --- second derivatives --------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_is_sklearns_half_binomial_loss(reduction):
    """On targets 1 and -1 the soft margin loss of x is HalfBinomialLoss at raw prediction x
    and y01 = (y + 1) / 2: loss, gradient and second derivative (scaled by the reduction)."""
    from sklearn._loss.loss import HalfBinomialLoss

    rng = np.random.default_rng(3)
    x = 3 * rng.standard_normal(200)
    t = np.where(rng.random(200) < 0.5, 1.0, -1.0)
    loss, grad, hess = fastloss.soft_margin_loss(x, t, reduction=reduction, return_hess=True)
    sk = HalfBinomialLoss()
    y01 = (t + 1) / 2
    sk_grad, sk_hess = sk.gradient_hessian(y01, x)
    scale = 1 / x.size if reduction == "mean" else 1.0
    element = sk.loss(y01, x)
    want = {"none": element, "sum": element.sum(), "mean": element.mean()}[reduction]
    assert_close(loss, want, rtol=1e-12)
    assert_close(grad, scale * sk_grad, rtol=1e-12, atol=1e-17)
    assert_close(hess, scale * sk_hess, rtol=1e-12, atol=1e-17)


def test_soft_margin_second_derivative_is_the_gradients_derivative():
    """Central differences of fastloss's own float64 gradient, also for targets other than 1
    and -1 (where the second derivative is y**2 sigmoid(z) sigmoid(-z))."""
    rng = np.random.default_rng(4)
    x = 2 * rng.standard_normal(60)
    t = rng.choice(np.array([1.0, -1.0, 0.5, -2.0, 0.0]), 60)
    h = 1e-6
    _, grad, hess = fastloss.soft_margin_loss(x, t, reduction="none", return_hess=True)
    up = fastloss.soft_margin_loss(x + h, t, reduction="none", return_grad=True)[1]
    down = fastloss.soft_margin_loss(x - h, t, reduction="none", return_grad=True)[1]
    assert_close(hess, (up - down) / (2 * h), rtol=1e-6, atol=1e-9)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_second_derivative_is_one_everywhere(reduction):
    """scikit-learn's AbsoluteError convention for a piecewise-linear loss: 1 on the sloped
    parts, on the flat part and at the kink (times the reduction's scale)."""
    x = np.array([1.0, 2.0, 0.5, -3.0, 1.0, np.nan])
    t = np.array([-1.0, -1.0, -1.0, 1.0, 0.0, 1.0])
    _, _, hess = fastloss.hinge_embedding_loss(x, t, reduction=reduction, return_hess=True)
    scale = 1 / x.size if reduction == "mean" else 1.0
    np.testing.assert_array_equal(hess, np.full(x.shape, scale))
