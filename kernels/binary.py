"""Point functions of the binary classification losses, and their kernel declarations.

Each loss is one function of one element, ``*_value_grad``: the loss, its derivative and, as
its last value, its second derivative with respect to the input, sharing temporaries, as in
:mod:`fastloss.kernels.regression`. ``x`` is the input (a probability or a logit), ``t`` the
target. Everything stays in the precision of the input (``const`` gives literals that
precision), exp/log/log1p are the vectorisable versions of :mod:`fastloss.kernels.vmath`, and
every choice is a select, so the element loops vectorise.

Logit paths never form a probability to take its logarithm: with ``e = exp(-|x|)``,

- ``softplus(-x) = -log(sigmoid(x)) = log1p(e) + max(-x, 0)``, finite for every finite ``x``;
- ``sigmoid(x) = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` below, and ``sigmoid(-x)``
  the other one, so that ``1 - sigmoid(x)`` is never a cancellation.

A scalar named ``scale`` multiplies an element's loss and derivative: the Keras losses take
their mean over ``axis`` that way (``1 / K``), without a second pass over the gradient.
"""

import math

import numpy as np
from numba import njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.elementwise import ElementwiseSpec
from fastloss.kernels.scalar import const
from fastloss.kernels.vmath import exp, log, log1p, log1p_unit

# torch's clamp of the logarithms in binary_cross_entropy, and the floor of the denominator of
# its gradient: EPSILON in aten/src/ATen/native/Loss.cpp is a float 1e-12, so also a float64
# gradient uses float32(1e-12) (measured: 0.3 / that, not 0.3e12, at x = 0, t = 0.3).
LOG_FLOOR = -100.0
GRAD_EPSILON = float(np.float32(1e-12))
NAN = math.nan
INF = math.inf


# --- shared pieces -----------------------------------------------------------------------------
@njit(**POINT_OPTIONS)
def _sigmoid_pair(x):
    """``(sigmoid(x), sigmoid(-x), exp(-|x|))``, each without cancellation; NaN for NaN."""
    one = const(x, 1.0)
    e = exp(-abs(x))
    r = one / (one + e)
    er = e * r
    positive = x >= const(x, 0.0)
    return (r if positive else er), (er if positive else r), e


@njit(**POINT_OPTIONS)
def _softplus_neg(x, e):
    """``softplus(-x) = -log(sigmoid(x))`` given ``e = exp(-|x|)``."""
    return log1p_unit(e) + (-x if x < const(x, 0.0) else const(x, 0.0))


@njit(**POINT_OPTIONS)
def _pow(m, gamma, parity):
    """``(m ** gamma, m ** (gamma - 1))`` as torch's ``pow`` gives them.

    ``parity`` is 1 for an even integer ``gamma``, -1 for an odd one and 0 otherwise: a
    negative ``m`` gives a real power for an integer exponent and NaN for another, as
    ``pow`` does. ``m ** 0`` is 1 (also for NaN ``m``). At ``m = 0`` the second value is the
    limit ``pow`` gives: inf for ``gamma < 1``, 1 for ``gamma = 1``, 0 above.
    """
    zero = const(m, 0.0)
    one = const(m, 1.0)
    f = exp(gamma * log(abs(m)))
    signed = f * parity
    if m < zero:
        f = signed if parity != zero else const(m, NAN)
    if gamma == zero:
        f = one
    below = const(m, INF) if gamma < one else (one if gamma == one else zero)
    g = below if m == zero else f / m
    return f, g


# --- binary cross-entropy on probabilities (torch) ---------------------------------------------
# (t - 1) max(log1p(-x), -100) - t max(log(x), -100), as torch writes it. torch refuses inputs
# and targets outside [0, 1] (NaN included): such an element's loss is NaN here, and the
# Python side, seeing a NaN loss, looks for the culprit and raises.
@njit(**POINT_OPTIONS)
def _bce(x, t):
    floor = const(x, LOG_FLOOR)
    zero = const(x, 0.0)
    one = const(x, 1.0)
    lx = log(x)
    l1 = log1p(-x)
    lx = floor if lx < floor else lx
    l1 = floor if l1 < floor else l1
    v = (t - one) * l1 - t * lx
    inside = (x >= zero) & (x <= one) & (t >= zero) & (t <= one)
    return v if inside else const(x, NAN)


@njit(**POINT_OPTIONS)
def bce_value_grad(x, t):
    # torch's gradient: (x - t) / max((1 - x) x, 1e-12), not the derivative of the clamped
    # loss (at x = 0 or 1 it is +-t * 1e12, not 0). The second derivative is that gradient's:
    # t / x**2 + (1 - t) / (1 - x)**2 (no cancellation) where (1 - x) x >= 1e-12, 1 / 1e-12
    # where the floor holds.
    one = const(x, 1.0)
    eps = const(x, GRAD_EPSILON)
    q = one - x
    den = q * x
    floored = den < eps
    den = eps if floored else den
    h = t / (x * x) + (one - t) / (q * q)
    return _bce(x, t), (x - t) / den, (one / eps if floored else h)


# --- binary cross-entropy on logits (torch) ----------------------------------------------------
# (1 - t) x + (1 + (pw - 1) t) softplus(-x); derivative ((pw t + 1 - t) sigmoid(x) - pw t);
# second derivative (pw t + 1 - t) sigmoid(x) sigmoid(-x) (HalfBinomialLoss's p (1 - p)).
@njit(**POINT_OPTIONS)
def bce_logits_value_grad(x, t):
    s, q, e = _sigmoid_pair(x)
    return (const(x, 1.0) - t) * x + _softplus_neg(x, e), s - t, s * q


@njit(**POINT_OPTIONS)
def bce_logits_pos_value_grad(x, t, pw):
    one = const(x, 1.0)
    s, q, e = _sigmoid_pair(x)
    v = (one - t) * x + ((pw - one) * t + one) * _softplus_neg(x, e)
    c = pw * t
    k = c + one - t
    return v, k * s - c, k * (s * q)


# --- sigmoid focal loss (torchvision.ops.sigmoid_focal_loss) -----------------------------------
# ce = bce_with_logits(x, t), m = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x) (no cancellation),
# loss = a ce m**gamma with a = a1 t + a0: alpha t + (1 - alpha)(1 - t) when alpha >= 0
# (a1 = 2 alpha - 1, a0 = 1 - alpha), else 1 (a1 = 0, a0 = 1): a runtime weight, not a flag.
# d/dx = a ((sigmoid(x) - t) m**gamma + ce gamma m**gamma s q (1 - 2t) / m), the last factor
# taken as 0 at m = 0 (its limit for gamma > 0). `square` is gamma == 2: m * m, no exp/log.
# Second derivative a (s q f + 2 (s - t) f' + ce f''), with m' = s q (1 - 2t),
# m'' = m' (q - s), f' = gamma f m'/m, f'' = gamma (gamma - 1) f (m'/m)**2 + gamma f m''/m
# (2 m'**2 + 2 m m'' for gamma = 2); the ratios taken as 0 at m = 0, as in the gradient.
@njit(**POINT_OPTIONS)
def _focal(x, t, a1, a0, gamma, parity, square):
    one = const(x, 1.0)
    s, q, e = _sigmoid_pair(x)
    ce = (one - t) * x + _softplus_neg(x, e)
    m = t * q + (one - t) * s
    if square:
        f = m * m
    else:
        f, _ = _pow(m, gamma, parity)
    return s, q, ce, m, f, a1 * t + a0


@njit(**POINT_OPTIONS)
def sigmoid_focal_value_grad(x, t, a1, a0, gamma, parity, square):
    one = const(x, 1.0)
    zero = const(x, 0.0)
    s, q, ce, m, f, a = _focal(x, t, a1, a0, gamma, parity, square)
    sq = s * q
    dm = sq * (one - t - t)  # d m / dx
    d2m = dm * (q - s)  # d2 m / dx2
    if square:
        df = (m + m) * dm
        d2f = const(x, 2.0) * (dm * dm + m * d2m)
    else:
        ratio = zero if m == zero else dm / m
        ratio2 = zero if m == zero else d2m / m
        df = gamma * f * ratio
        d2f = gamma * f * ((gamma - one) * (ratio * ratio) + ratio2)
    g = (s - t) * f + ce * df
    h = sq * f + const(x, 2.0) * ((s - t) * df) + ce * d2f
    return a * (ce * f), a * g, a * h


# --- Keras binary crossentropy -----------------------------------------------------------------
# t' = t sa + sb (label smoothing). Probabilities: torch's BCE on clip(x, lo, hi), whose
# gradient is 0 outside [lo, hi] (torch's clamp passes it at the bounds), and so is the second
# derivative t / x**2 + (1 - t) / (1 - x)**2. Logits: as bce_with_logits. Loss and derivatives
# times `scale` (1 / K: Keras's mean over the axis).
@njit(**POINT_OPTIONS)
def _keras_bce_prob(x, t, lo, hi):
    """torch's BCE of clip(x, lo, hi) and its first and second derivatives with respect
    to x."""
    one = const(x, 1.0)
    zero = const(x, 0.0)
    xc = lo if x < lo else (hi if x > hi else x)
    v = (t - one) * log1p(-xc) - t * log(xc)
    qc = one - xc
    g = (xc - t) / (qc * xc)
    h = t / (xc * xc) + (one - t) / (qc * qc)
    inside = (x >= lo) & (x <= hi)
    return v, (g if inside else zero), (h if inside else zero)


@njit(**POINT_OPTIONS)
def keras_bce_value_grad(x, t, lo, hi, sa, sb, scale, from_logits):
    tt = t * sa + sb
    if from_logits:
        v, g, h = bce_logits_value_grad(x, tt)
    else:
        v, g, h = _keras_bce_prob(x, tt, lo, hi)
    return v * scale, g * scale, h * scale


# --- Keras binary focal crossentropy -----------------------------------------------------------
# p = x, or sigmoid(x) from logits (Keras forms the probability, and clips it for the BCE);
# bce = torch's BCE of clip(p, lo, hi); m = 1 - p_t = t' (1 - p) + (1 - t') p;
# loss = w m**gamma bce, w = w1 t' + w0: alpha t' + (1 - alpha)(1 - t') with class balancing
# (w1 = 2 alpha - 1, w0 = 1 - alpha), else 1 (w1 = 0, w0 = 1).
# d/dp = w (m**gamma dbce/dp + bce gamma m**(gamma - 1) (1 - 2t')), with torch's pow gradient
# (0 for gamma = 0, inf at m = 0 for gamma < 1); from logits times dp/dx = p (1 - p).
# From logits, inside the clip range, log p = -softplus(-x), log(1 - p) = -softplus(x) and
# dbce/dx = p - t' (what Keras's formula is, without its cancellations in 1 - p); outside it
# the logarithms of the bounds (lp_lo = log(lo), lq_lo = log1p(-lo), ...) and no gradient.
# Second derivative w (f'' bce + 2 f' bce' + f bce'') with f' = f_m m', f'' = f_mm m'**2 +
# f_m m'' (m'' = 0 on probabilities, (1 - 2t') (p q)(q - p) from logits), bce'' = p q from
# logits and t'/p**2 + (1 - t')/(1 - p)**2 on probabilities inside the clip range, 0 outside it;
# on probabilities f_mm = gamma (gamma - 1) m**(gamma - 2), with pow's limits at m = 0 (0 for
# gamma in {0, 1}); from logits f'' = gamma f ((gamma - 1) (m'/m)**2 + m''/m), the ratios taken
# as 0 at m = 0 (a saturated sigmoid), as in sigmoid_focal_value_grad.
@njit(**POINT_OPTIONS)
def _keras_focal(
    x, t, lo, hi, lp_lo, lq_lo, lp_hi, lq_hi, sa, sb, w1, w0, gamma, parity, from_logits, square
):
    one = const(x, 1.0)
    zero = const(x, 0.0)
    tt = t * sa + sb
    if from_logits:
        p, q, e = _sigmoid_pair(x)
        sp = log1p_unit(e)
        lp = -(sp + (-x if x < zero else zero))
        lq = -(sp + (x if x > zero else zero))
        below = p < lo
        above = p > hi
        lp = lp_lo if below else (lp_hi if above else lp)
        lq = lq_lo if below else (lq_hi if above else lq)
        bce = (tt - one) * lq - tt * lp
        inside = (p >= lo) & (p <= hi)
        dbce = (p - tt) if inside else zero  # d bce / dx
        d2bce = (p * q) if inside else zero  # d2 bce / dx2
    else:
        p = x
        q = one - x
        bce, dbce, d2bce = _keras_bce_prob(p, tt, lo, hi)  # d bce / dp, d2 bce / dp2
    m = tt * q + (one - tt) * p
    if square:
        f = m * m
        fm = m + m  # d f / d m
    else:
        f, pm1 = _pow(m, gamma, parity)
        fm = zero if gamma == zero else gamma * pm1
    dm = one - tt - tt  # d m / dp
    if from_logits:
        dm = dm * (p * q)  # d m / dx
        d2m = dm * (q - p)  # d2 m / dx2
        if square:
            d2f = const(x, 2.0) * (dm * dm + m * d2m)
        else:
            # gamma f ((gamma - 1) (m'/m)**2 + m''/m): m'/m stays bounded as p or q -> 0, and
            # the ratios are taken as 0 at m = 0 (their limit 0 for the product), as in
            # sigmoid_focal_value_grad
            ratio = zero if m == zero else dm / m
            ratio2 = zero if m == zero else d2m / m
            d2f = gamma * f * ((gamma - one) * (ratio * ratio) + ratio2)
    elif square:
        d2f = const(x, 2.0) * (dm * dm)
    else:
        # f_mm m'**2, f_mm = gamma (gamma - 1) m**(gamma - 2) with pow's limit at m = 0 (inf
        # below gamma = 2, 1 at it, 0 above; 0 for gamma in {0, 1})
        two = const(x, 2.0)
        below = const(x, INF) if gamma < two else (one if gamma == two else zero)
        pm2 = below if m == zero else pm1 / m
        fmm = zero if (gamma == zero) | (gamma == one) else gamma * (gamma - one) * pm2
        d2f = fmm * (dm * dm)
    return bce, dbce, d2bce, f, fm, dm, d2f, w1 * tt + w0


@njit(**POINT_OPTIONS)
def keras_focal_value_grad(
    x, t, lo, hi, lp_lo, lq_lo, lp_hi, lq_hi, sa, sb, w1, w0, gamma, parity, scale, from_logits,
    square,
):  # fmt: skip
    bce, dbce, d2bce, f, fm, dm, d2f, w = _keras_focal(
        x, t, lo, hi, lp_lo, lq_lo, lp_hi, lq_hi, sa, sb, w1, w0, gamma, parity, from_logits,
        square,
    )  # fmt: skip
    g = f * dbce + bce * (fm * dm)
    h = d2f * bce + const(x, 2.0) * (fm * dm) * dbce + f * d2bce
    return (w * (f * bce)) * scale, (w * g) * scale, (w * h) * scale


BCE = ElementwiseSpec("bce", bce_value_grad, stage_segments=4, hess=True)
BCE_LOGITS = ElementwiseSpec("bce_logits", bce_logits_value_grad, stage_segments=4, hess=True)
BCE_LOGITS_POS = ElementwiseSpec(
    "bce_logits_pos", bce_logits_pos_value_grad, arrays=3, stage_segments=4, hess=True
)
SIGMOID_FOCAL = ElementwiseSpec(
    "sigmoid_focal",
    sigmoid_focal_value_grad,
    stage_segments=4,
    params=("a1", "a0", "gamma", "parity"),
    flags=("square",),
    hess=True,
)
KERAS_BCE = ElementwiseSpec(
    "keras_bce",
    keras_bce_value_grad,
    stage_segments=4,
    params=("lo", "hi", "sa", "sb", "scale"),
    flags=("from_logits",),
    hess=True,
)
KERAS_FOCAL = ElementwiseSpec(
    "keras_focal",
    keras_focal_value_grad,
    params=(
        "lo",
        "hi",
        "lp_lo",
        "lq_lo",
        "lp_hi",
        "lq_hi",
        "sa",
        "sb",
        "w1",
        "w0",
        "gamma",
        "parity",
        "scale",
    ),  # fmt: skip
    flags=("from_logits", "square"),
    hess=True,
)
