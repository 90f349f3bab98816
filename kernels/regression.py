"""Point functions of the regression losses, and their kernel declarations.

Each loss is one function of one element, ``*_value_grad``: the loss, its derivative(s) and,
as its last value, its second derivative with respect to the input (array 0), sharing
temporaries. ``d = x - t`` is the residual of the input ``x`` against the target ``t``.
Derivatives at kinks are the subgradients torch uses; second derivatives at kinks follow
scikit-learn's ``sklearn/_loss`` conventions (AbsoluteError's 1, Huber's 1 inside and 0
outside, both at ``|d| = delta`` inside).
Everything stays in the precision of the input (``const`` gives literals that precision);
exp/log are the vectorisable versions of :mod:`fastloss.kernels.vmath`.
"""

import math

from numba import njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.elementwise import ElementwiseSpec
from fastloss.kernels.scalar import const, sign
from fastloss.kernels.vmath import exp, exp2_nonpos, log

# Module constants are compile-time constants for Numba (no runtime log on either target).
LOG_2PI = math.log(2.0 * math.pi)
TWO_PI = 2.0 * math.pi


# --- squared error: d**2, derivative 2 d, second derivative 2 (the 2 applied by the factory) --
@njit(**POINT_OPTIONS)
def mse_value_grad(x, t):
    d = x - t
    return d * d, d, const(d, 1.0)


# --- absolute error: |d|, derivative sign(d) ---------------------------------------------------
# second derivative 1 everywhere: scikit-learn's AbsoluteError (the exact one is 0 almost
# everywhere; Newton steps of boosting need one > 0).
@njit(**POINT_OPTIONS)
def l1_value_grad(x, t):
    d = x - t
    return abs(d), sign(d), const(d, 1.0)


# --- Huber: 0.5 d**2 if |d| < delta else delta (|d| - 0.5 delta) ------------------------------
# derivative g = clamp(d, -delta, delta), written so that NaN propagates. The loss is g (d - g/2):
# 0.5 d**2 inside (d - d/2 is exact), delta (|d| - delta/2) outside, the same roundings as the
# two-branch form, and no |d|, compare and select of its own.
# Second derivative 1 where |d| <= delta, else 0 (scikit-learn's HuberLoss; NaN for NaN d).
@njit(**POINT_OPTIONS)
def huber_value_grad(x, t, delta):
    d = x - t
    g = -delta if d < -delta else (delta if d > delta else d)
    h = const(d, 0.0) if abs(d) > delta else (const(d, 1.0) if d == d else d)
    return g * (d - const(d, 0.5) * g), g, h


# --- smooth L1: 0.5 d**2 / beta if |d| < beta else |d| - 0.5 beta ------------------------------
# derivative clamp(d / beta, -1, 1); beta = 0 is dispatched to l1.
@njit(**POINT_OPTIONS)
def smooth_l1_value_grad(x, t, beta):
    d = x - t
    ad = abs(d)
    half = const(d, 0.5)
    one = const(d, 1.0)
    v = half * d * d / beta if ad < beta else ad - half * beta
    g = -one if d < -beta else (one if d > beta else d / beta)
    # 1 / beta where |d| <= beta, else 0 (Huber's convention at the kink)
    h = const(d, 0.0) if ad > beta else (one / beta if d == d else d)
    return v, g, h


# --- Poisson negative log likelihood -----------------------------------------------------------
# log_input: exp(x) - t x, derivative exp(x) - t, second derivative exp(x) (HalfPoissonLoss)
# else:      x - t log(x + eps), derivative 1 - t / (x + eps), second t / (x + eps)**2
# full adds Stirling's approximation of log(t!) where t > 1: t log t - t + 0.5 log(2 pi t).
@njit(**POINT_OPTIONS)
def _stirling(t):
    return t * log(t) - t + const(t, 0.5) * log(const(t, TWO_PI) * t)


@njit(**POINT_OPTIONS)
def poisson_nll_value_grad(x, t, eps, log_input, full):
    if log_input:
        e = exp(x)
        v = e - t * x
        g = e - t
        h = e
    else:
        xe = x + eps
        v = x - t * log(xe)
        q = t / xe
        g = const(x, 1.0) - q
        h = q / xe
    if full and not t <= const(t, 1.0):
        v = v + _stirling(t)
    return v, g, h


# --- Gaussian negative log likelihood ----------------------------------------------------------
# 0.5 (log(v) + d**2 / v) [+ 0.5 log(2 pi)] with v = max(var, eps). As in torch, the clamp is
# not differentiated: d/dvar = 0.5 (1/v - d**2 / v**2) also where var < eps. A negative var
# gives NaN, not eps: torch raises for it, and the device path, which checks no variance before
# the kernel, finds it through the NaN loss (the host path checks var first).
@njit(**POINT_OPTIONS)
def _clamped_var(var, eps):
    return var if var >= eps else (eps if var >= const(var, 0.0) else const(var, math.nan))


@njit(**POINT_OPTIONS)
def gaussian_nll_value_grad(x, t, var, eps, full):
    v = _clamped_var(var, eps)
    d = x - t
    half = const(d, 0.5)
    inv = const(d, 1.0) / v
    r = d * inv
    loss = half * (log(v) + d * r)
    if full:
        loss = loss + const(d, 0.5 * LOG_2PI)
    # the second derivative with respect to the input only: 1 / v
    return loss, r, half * (inv - r * r), inv


# A float var (torch's homoscedastic shorthand) is a runtime parameter, not an array: the same
# point functions, var passed after the arrays, and no derivative for it (torch gives none).
@njit(**POINT_OPTIONS)
def gaussian_nll_input_grad(x, t, var, eps, full):
    loss, r, _, h = gaussian_nll_value_grad(x, t, var, eps, full)
    return loss, r, h


# --- log-cosh (as Keras): log(cosh(d)) = |d| + log((1 + e) / 2), e = exp(-2|d|) --------------
# derivative tanh(d) = sign(d) (1 - e) / (1 + e), second derivative 1 - tanh(d)**2 = e / f**2
# (no cancellation for large |d|). A log-factor loss (ElementwiseSpec.log_factor):
# the point functions return v = |d| and f = (1 + e) / 2 in [1/2, 1], the loss being v + log(f);
# reductions take one log per stage of the product of the f's. f = 1 exactly where d = 0, so a
# perfect prediction costs exactly 0 (|d| - log 2 + log1p(e) leaves float32's rounding of log 2).
# e = 2**(-2|d| log2 e): e only ever enters as 1 +- e, so the relative error |d| 2**-23 of the
# rounded exponent is harmless (absolute error under 2**-26), and exp2_nonpos is cheaper than exp.
NEG_2_LOG2E = -2.0 / math.log(2.0)


@njit(**POINT_OPTIONS)
def log_cosh_value_grad(x, t):
    d = x - t
    a = abs(d)
    e = exp2_nonpos(const(d, NEG_2_LOG2E) * a)
    half = const(d, 0.5)
    f = half + half * e
    th = (half - half * e) / f
    return a, f, (th if d >= 0 else -th), e / (f * f)


# --- squared logarithmic error (as Keras): (log(max(x, eps) + 1) - log(max(t, eps) + 1))**2 ---
# Keras's gradient through maximum(): 1 above eps, 0 below, 1/2 at a tie (torch's maximum).
# The second derivative 2 (1 - r) / (x + 1)**2 above eps, 0 below, half of it at the tie (the
# gradient's split).
@njit(**POINT_OPTIONS)
def msle_value_grad(x, t, eps):
    one = const(x, 1.0)
    xc = eps if x < eps else x
    r = log(xc + one) - log((eps if t < eps else t) + one)
    x1 = xc + one
    g = (r + r) / x1
    h = (const(x, 2.0) * (one - r)) / (x1 * x1)
    # torch's maximum() backward: 0 where x < eps (even where r is NaN), half at a tie, and
    # the full gradient elsewhere, NaN x included.
    zero = const(x, 0.0)
    half = const(x, 0.5)
    return (
        r * r,
        (zero if x < eps else (half * g if x == eps else g)),
        (zero if x < eps else (half * h if x == eps else h)),
    )


# --- absolute percentage error (as Keras): 100 |(t - x) / max(|t|, eps)| -----------------------
# An absolute error of slope c = 100 / m; its second derivative is AbsoluteError's convention
# scaled by that slope: c everywhere (the exact one is 0 almost everywhere).
@njit(**POINT_OPTIONS)
def mape_value_grad(x, t, eps):
    at = abs(t)
    m = eps if at < eps else at
    q = (t - x) / m
    c = const(x, 100.0) / m
    return abs(q) * const(x, 100.0), -sign(q) * c, c


MSE = ElementwiseSpec("mse", mse_value_grad, grad_factor=2.0, hess=True)
L1 = ElementwiseSpec("l1", l1_value_grad, hess=True)
HUBER = ElementwiseSpec("huber", huber_value_grad, params=("delta",), hess=True)
SMOOTH_L1 = ElementwiseSpec("smooth_l1", smooth_l1_value_grad, params=("beta",), hess=True)
POISSON_NLL = ElementwiseSpec(
    "poisson_nll",
    poisson_nll_value_grad,
    params=("eps",),
    flags=("log_input", "full"),
    hess=True,
)
GAUSSIAN_NLL = ElementwiseSpec(
    "gaussian_nll",
    gaussian_nll_value_grad,
    arrays=3,
    grads=(0, 2),
    params=("eps",),
    flags=("full",),
    hess=True,
)
GAUSSIAN_NLL_SCALAR_VAR = ElementwiseSpec(
    "gaussian_nll_scalar_var",
    gaussian_nll_input_grad,
    params=("var", "eps"),
    flags=("full",),
    hess=True,
)
LOG_COSH = ElementwiseSpec("log_cosh", log_cosh_value_grad, log_factor=True, hess=True)
MSLE = ElementwiseSpec("msle", msle_value_grad, params=("eps",), hess=True)
MAPE = ElementwiseSpec("mape", mape_value_grad, params=("eps",), hess=True)
