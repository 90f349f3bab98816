"""The softmax family declared for the row factory: cross-entropy, NLL, focal loss, and
Keras's probability cross-entropies.

Each loss is a :class:`~fastloss.kernels.rows.RowSpec`: its sweeps over a row's classes (the
maximum ``m``; ``s = sum_c exp(x_c - m)`` and the row's other sums, all taken against ``m`` so
that large logits lose nothing to cancellation), the row's loss from them (float64) and the
gradient sweep. The factory (:mod:`fastloss.kernels.rows`) builds the CPU kernels and
(:mod:`fastloss.kernels.cuda.rows`) the CUDA kernels from the same declarations; every sum is
float64 under the row contract, so a row's bits do not depend on the vector width.

The gradient may be written into the logits themselves: the gradient sweep reads a column
before it writes it, and the row function reads the only logit needed later (the target's)
before the gradient sweep.

Class indices are checked before any row is touched (:func:`check_targets`), so a bad index
raises before the caller's buffer is written.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastloss.kernels import _cache
from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.binary import _pow
from fastloss.kernels.rows import RowSpec, Sweep
from fastloss.kernels.scalar import const
from fastloss.kernels.vmath import exp, exp_nonpos, held, log

CACHE = _cache.enabled()  # before any cached kernel is declared


@njit(**POINT_OPTIONS)
def tanh(u):
    """tanh in ``u``'s precision: an odd series near 0, ``(1 - e)/(1 + e)`` with
    ``e = exp(-2|u|)`` elsewhere (a few ulps)."""
    a = abs(u)
    one = const(u, 1.0)
    e = exp_nonpos(const(u, -2.0) * a)
    big = (one - e) / (one + e)
    a2 = a * a
    # tanh(a) = a - a^3/3 + 2a^5/15 - 17a^7/315 + 62a^9/2835 - ..., |a| < 0.125
    small = a + a * a2 * (
        const(u, -1.0 / 3.0)
        + a2
        * (const(u, 2.0 / 15.0) + a2 * (const(u, -17.0 / 315.0) + a2 * const(u, 62.0 / 2835.0)))
    )
    t = small if a < const(u, 0.125) else big
    return t if u >= 0 else -t


@njit(cache=CACHE)
def check_targets(target, classes, ignore_index, weight, has_weight):
    """First position whose class index is out of ``[0, classes)`` and not ``ignore_index``
    (-1 if none), the count of rows not ignored, and the sum of their classes' weights (the
    weighted mean's denominator, in float64, in row order)."""
    count = 0
    total = 0.0
    for i in range(target.size):
        t = np.int64(target[i])
        if t == ignore_index:
            continue
        if t < 0 or t >= classes:
            return i, count, total
        count += 1
        total += np.float64(weight[t]) if has_weight else 1.0
    return -1, count, total


def exp_shifted(d):
    """``exp(d)`` for ``d = x - max <= 0`` (or NaN), 0 included: the softmax numerators."""
    raise NotImplementedError


def _exp_shifted_f32(d):
    # exp_nonpos is exact in range only down to -80 (it clamps there, never giving 0);
    # exp(d/2)**2 reaches below -104, where float32's exp is 0 (masked -inf logits give 0),
    # for two multiplies instead of the general exp's range handling
    h = exp_nonpos(d * held(np.float32(0.5)))
    return h * h


def _exp_shifted_other(d):
    return exp(d)


@overload(exp_shifted, target="cpu", jit_options=POINT_OPTIONS)
def _exp_shifted_overload(d):
    if d == types.float32:
        return _exp_shifted_f32
    if isinstance(d, types.Float):
        return _exp_shifted_other
    return None


# --- cross-entropy and focal loss against class indices ---------------------------------
# params: ignore_index, weight_sum (the class weights' sum, C without weights), smoothing,
# softcap, z_scale, alpha, gamma; flags: weighted, use_cap, zloss, focal; scales: the
# gradient's (1 / the mean's denominator) and the z-loss's (1 / the rows not ignored).


@njit(**POINT_OPTIONS)
def _capped(x, softcap, use_cap):
    """The logit after the soft cap ``softcap * tanh(x / softcap)`` (``x`` without it)."""
    if use_cap:
        return const(x, softcap) * tanh(x * const(x, 1.0 / softcap))
    return x


@njit(**POINT_OPTIONS)
def index_skip(t, ignore_index, weight_sum, smoothing, softcap, z_scale, alpha, gamma, *flags):
    return t == ignore_index


@njit(**POINT_OPTIONS)
def index_max(x, w, c, t, ignore_index, weight_sum, smoothing, softcap, z_scale, alpha, gamma,
              weighted, use_cap, zloss, focal):  # fmt: skip
    return _capped(x, softcap, use_cap)


@njit(**POINT_OPTIONS)
def index_shifted(x, w, c, t, m, ignore_index, weight_sum, smoothing, softcap, z_scale, alpha,
                  gamma, weighted, use_cap, zloss, focal):  # fmt: skip
    """Label smoothing's ``w_c (m - y_c) >= 0``, leaving out the maxima's zeros (an inf weight
    there would give inf * 0 = NaN where torch's loss is inf)."""
    y = _capped(x, softcap, use_cap)
    d = const(y, m) - y
    if weighted:
        return w * d if d != const(y, 0.0) else const(y, 0.0)
    return d


@njit(**POINT_OPTIONS)
def index_exp(x, w, c, t, m, *rest):
    """``exp(y_c - m)`` of the (capped) logit: the softmax numerator (``rest``: the smoothing
    sum when there is one, the params, the flags)."""
    use_cap = rest[-3]
    softcap = rest[-8]
    y = _capped(x, softcap, use_cap)
    return exp_shifted(y - const(y, m))


@njit(**POINT_OPTIONS)
def _index_row(m, s, shifted, t, x, w, scale, z_grad_scale, ignore_index, weight_sum, smoothing,
               softcap, z_scale, alpha, gamma, weighted, use_cap, zloss, focal):  # fmt: skip
    x_t = np.float64(_capped(x[t], softcap, use_cap))
    log_s = math.log(s)
    lse = m + log_s
    nll = log_s + (m - x_t)
    w_t = np.float64(w[t]) if weighted else 1.0
    # no z-loss term at all without a z-loss: 0 * lse**2 is NaN once lse**2 overflows
    z = z_scale * lse * lse if zloss else 0.0
    e_coef = 0.0
    if focal:
        p_t = math.exp(-nll)
        q = -math.expm1(-nll)  # 1 - p_t without cancellation for confident rows
        mod = q**gamma
        loss = alpha * mod * nll
        k = mod
        if q > 0.0 and gamma != 0.0:
            k = mod + gamma * (mod / q) * p_t * nll
        a = scale * (alpha * k)
        b = a
    else:
        loss = (1.0 - smoothing) * w_t * nll
        a = (1.0 - smoothing) * w_t
        if smoothing != 0.0:
            classes = np.float64(x.size)
            loss += smoothing / classes * (weight_sum * log_s + shifted)
            a += smoothing * weight_sum / classes
            e_coef = scale * smoothing / classes
        a = scale * a
        b = scale * (1.0 - smoothing) * w_t
    loss += z
    if zloss:
        a += z_grad_scale * (z_scale + z_scale) * lse
    return loss, z, (a / s, e_coef, b)


@njit(**POINT_OPTIONS)
def index_row(m, s, t, x, w, scale, z_grad_scale, *params):
    return _index_row(m, s, 0.0, t, x, w, scale, z_grad_scale, *params)


@njit(**POINT_OPTIONS)
def index_row_smoothed(m, shifted, s, t, x, w, scale, z_grad_scale, *params):
    return _index_row(m, s, shifted, t, x, w, scale, z_grad_scale, *params)


@njit(**POINT_OPTIONS)
def index_grad(x, w, c, t, e, r, e_coef, b, ignore_index, weight_sum, smoothing, softcap,
               z_scale, alpha, gamma, weighted, use_cap, zloss, focal):  # fmt: skip
    """``r e_c - e_coef w_c - b [c = t]``, times the cap's derivative ``1 - (y_c / softcap)^2``."""
    g = r * e
    if weighted and e_coef != const(x, 0.0):  # no 0 * (NaN or inf weight) otherwise
        g -= e_coef * w
    else:
        g -= e_coef
    if c == t:
        g -= b
    if use_cap:
        u = _capped(x, softcap, use_cap) * const(x, 1.0 / softcap)
        g *= const(x, 1.0) - u * u
    return g


_INDEX_OPTIONS = {
    "row_inputs": 1,
    "column_inputs": 1,
    "params": ("ignore_index", "weight_sum", "smoothing", "softcap", "z_scale", "alpha", "gamma"),
    "flags": ("weighted", "use_cap", "zloss", "focal"),
    "scales": ("scale", "z_grad_scale"),
    "outputs": 2,
    "skip": index_skip,
    "staged": True,
    "picked": True,
}

CROSS_ENTROPY = RowSpec(
    "cross_entropy", 1, (Sweep(index_max, op="max"), Sweep(index_exp)), index_row, index_grad, 3,
    (0,), **_INDEX_OPTIONS,
)  # fmt: skip
CROSS_ENTROPY_SMOOTHED = RowSpec(
    "cross_entropy_smoothed", 1,
    (Sweep(index_max, op="max"), Sweep(index_shifted), Sweep(index_exp)),
    index_row_smoothed, index_grad, 3, (0,), **_INDEX_OPTIONS,
)  # fmt: skip


# With the second derivative: the diagonal of the row's Hessian beside the gradient. With
# ``p_c = e_c / s`` and ``a`` the gradient's row coefficient (its scale included), a
# cross-entropy's is ``a p_c (1 - p_c)``; the z-loss adds ``zq p_c**2`` (``zq`` its gradient's
# scale times ``2 z_scale``), the focal form ``-bq (p_c - [c = t])**2`` (``bq`` below), and the
# soft cap the chain rule through ``y = softcap tanh(x / softcap)``.


@njit(**POINT_OPTIONS)
def _focal_curvature(nll, gamma):
    """``p_t dA/dp_t`` for the focal gradient's factor ``A = u**gamma + gamma u**(gamma - 1) p_t
    ce`` (``u = 1 - p_t``, ``ce = -log p_t = nll``): ``gamma u**(gamma - 2) p_t (u ce - 2 u -
    (gamma - 1) p_t ce)``; 0 where ``u`` is 0 (every ``(p_c - [c = t])`` is 0 there too)."""
    p_t = math.exp(-nll)
    u = -math.expm1(-nll)
    if u <= 0.0 or gamma == 0.0:
        return 0.0
    return gamma * u ** (gamma - 2.0) * p_t * (u * nll - 2.0 * u - (gamma - 1.0) * p_t * nll)


@njit(**POINT_OPTIONS)
def _index_hess_coefficients(m, s, t, x, scale, z_grad_scale, softcap, z_scale, alpha, gamma,
                             use_cap, zloss, focal):  # fmt: skip
    zq = z_grad_scale * (z_scale + z_scale) if zloss else 0.0
    bq = 0.0
    if focal:
        nll = math.log(s) + (m - np.float64(_capped(x[t], softcap, use_cap)))
        bq = scale * alpha * _focal_curvature(nll, gamma)
    return 1.0 / s, zq, bq


@njit(**POINT_OPTIONS)
def index_row_smoothed_hess(m, shifted, s, t, x, w, scale, z_grad_scale, ignore_index,
                            weight_sum, smoothing, softcap, z_scale, alpha, gamma, weighted,
                            use_cap, zloss, focal):  # fmt: skip
    loss, z, coef = _index_row(m, s, shifted, t, x, w, scale, z_grad_scale, ignore_index,
                               weight_sum, smoothing, softcap, z_scale, alpha, gamma, weighted,
                               use_cap, zloss, focal)  # fmt: skip
    inv_s, zq, bq = _index_hess_coefficients(m, s, t, x, scale, z_grad_scale, softcap, z_scale,
                                             alpha, gamma, use_cap, zloss, focal)  # fmt: skip
    return loss, z, (coef[0], coef[1], coef[2], inv_s, zq, bq)


@njit(**POINT_OPTIONS)
def index_row_hess(m, s, t, x, w, scale, z_grad_scale, *params):
    return index_row_smoothed_hess(m, 0.0, s, t, x, w, scale, z_grad_scale, *params)


@njit(**POINT_OPTIONS)
def _softmax_hess(e, r, p, zq, bq, at_target, zloss, focal):
    """``r e_c (1 - p_c)`` and the z-loss's and the focal form's terms (see above)."""
    h = r * e * (const(e, 1.0) - p)
    if zloss:
        h += zq * p * p
    if focal:
        d = p - const(e, 1.0) if at_target else p
        h -= bq * d * d
    return h


@njit(**POINT_OPTIONS)
def index_grad_hess(x, w, c, t, e, r, e_coef, b, inv_s, zq, bq, ignore_index, weight_sum,
                    smoothing, softcap, z_scale, alpha, gamma, weighted, use_cap, zloss,
                    focal):  # fmt: skip
    """The gradient of :func:`index_grad` and the Hessian's diagonal."""
    g = index_grad(x, w, c, t, e, r, e_coef, b, ignore_index, weight_sum, smoothing, softcap,
                   z_scale, alpha, gamma, weighted, False, zloss, focal)  # fmt: skip
    h = _softmax_hess(e, r, e * inv_s, zq, bq, c == t, zloss, focal)
    if use_cap:
        # d2/dx2 of f(y(x)): f'' y'**2 + f' y'', y' = 1 - u**2, y'' = -2 u y' / softcap
        u = _capped(x, softcap, use_cap) * const(x, 1.0 / softcap)
        k = const(x, 1.0) - u * u
        h = k * (h * k - const(x, 2.0) * u * g * const(x, 1.0 / softcap))
        g *= k
    return g, h


CROSS_ENTROPY_HESS = RowSpec(
    "cross_entropy_hess", 1, (Sweep(index_max, op="max"), Sweep(index_exp)), index_row_hess,
    index_grad_hess, 6, (0, 0), **_INDEX_OPTIONS,
)  # fmt: skip
CROSS_ENTROPY_SMOOTHED_HESS = RowSpec(
    "cross_entropy_smoothed_hess", 1,
    (Sweep(index_max, op="max"), Sweep(index_shifted), Sweep(index_exp)),
    index_row_smoothed_hess, index_grad_hess, 6, (0, 0), **_INDEX_OPTIONS,
)  # fmt: skip


# --- cross-entropy against class probabilities ------------------------------------------------
# loss = sum_c w_c y'_c (lse - x_c) + z_scale lse**2, y' = keep y + spread; grad_c = p_c (sum_c
# w_c y'_c + 2 z_scale lse) - w_c y'_c. params: keep, spread, z_scale; flags: weighted, zloss.


@njit(**POINT_OPTIONS)
def _smoothed(y, w, keep, spread, weighted):
    v = const(y, keep) * y + const(y, spread)
    return v * w if weighted else v


@njit(**POINT_OPTIONS)
def probs_max(x, y, w, c, keep, spread, z_scale, weighted, zloss):
    return x


@njit(**POINT_OPTIONS)
def probs_sums(x, y, w, c, m, keep, spread, z_scale, weighted, zloss):
    """The softmax numerator, ``y'_c`` (weighted) and ``y'_c (x_c - m)``, leaving out the
    maxima's zeros (an infinite target or weight there would give inf * 0 = NaN where torch's
    loss is infinite)."""
    v = _smoothed(y, w, keep, spread, weighted)
    d = x - const(x, m)
    return exp_shifted(d), v, (v * d if d != const(x, 0.0) else const(x, 0.0))


@njit(**POINT_OPTIONS)
def probs_row(m, s, s1, s2, x, y, w, scale, z_grad_scale, keep, spread, z_scale, weighted, zloss):
    log_s = math.log(s)
    lse = m + log_s
    z = z_scale * lse * lse if zloss else 0.0
    a = scale * s1
    if zloss:
        a += z_grad_scale * (z_scale + z_scale) * lse
    return (log_s * s1 - s2) + z, z, (a / s, scale)


@njit(**POINT_OPTIONS)
def probs_grad(x, y, w, c, e, v, vd, r, scale, keep, spread, z_scale, weighted, zloss):
    return r * e - scale * v


CROSS_ENTROPY_PROBS = RowSpec(
    "cross_entropy_probs", 2, (Sweep(probs_max, op="max"), Sweep(probs_sums, 3)), probs_row,
    probs_grad, 2, (0,), column_inputs=1, params=("keep", "spread", "z_scale"),
    flags=("weighted", "zloss"), scales=("scale", "z_grad_scale"), outputs=2, staged=True,
)  # fmt: skip


@njit(**POINT_OPTIONS)
def probs_row_hess(m, s, s1, s2, x, y, w, scale, z_grad_scale, keep, spread, z_scale, weighted,
                   zloss):  # fmt: skip
    loss, z, coef = probs_row(m, s, s1, s2, x, y, w, scale, z_grad_scale, keep, spread, z_scale,
                              weighted, zloss)  # fmt: skip
    zq = z_grad_scale * (z_scale + z_scale) if zloss else 0.0
    return loss, z, (coef[0], coef[1], 1.0 / s, zq)


@njit(**POINT_OPTIONS)
def probs_grad_hess(x, y, w, c, e, v, vd, r, scale, inv_s, zq, keep, spread, z_scale, weighted,
                    zloss):  # fmt: skip
    """The gradient of :func:`probs_grad` and the Hessian's diagonal (z-loss included)."""
    return r * e - scale * v, _softmax_hess(e, r, e * inv_s, zq, zq, False, zloss, False)


CROSS_ENTROPY_PROBS_HESS = RowSpec(
    "cross_entropy_probs_hess", 2, (Sweep(probs_max, op="max"), Sweep(probs_sums, 3)),
    probs_row_hess, probs_grad_hess, 4, (0, 0), column_inputs=1,
    params=("keep", "spread", "z_scale"), flags=("weighted", "zloss"),
    scales=("scale", "z_grad_scale"), outputs=2, staged=True,
)  # fmt: skip


# --- negative log-likelihood ---------------------------------------------------------------------


@njit(**POINT_OPTIONS)
def nll_skip(t, ignore_index, weighted):
    return t == ignore_index


@njit(**POINT_OPTIONS)
def nll_row(t, x, w, scale, ignore_index, weighted):
    """``-w_t x_t`` (in the input's precision, as torch); the gradient ``-w_t`` at the target."""
    w_t = w[t] if weighted else const(x[t], 1.0)
    return np.float64(-(w_t * x[t])), (scale * np.float64(w_t),)


@njit(**POINT_OPTIONS)
def nll_grad(x, w, c, t, k, ignore_index, weighted):
    return -k if c == t else const(x, 0.0)


NLL = RowSpec(
    "nll", 1, (), nll_row, nll_grad, 1, (0,), row_inputs=1, column_inputs=1,
    params=("ignore_index",), flags=("weighted",), skip=nll_skip, picked=True,
)  # fmt: skip


# --- Keras's probability cross-entropies -------------------------------------------------------
# Keras (categorical, sparse categorical and categorical focal cross-entropy with
# ``from_logits=False``, focal also with logits) renormalises the predictions by their sum,
# clips them to [low, high] and takes their log; the gradient follows the clip (0 outside the
# range), the renormalisation and, for focal with logits, the softmax. params: keep, spread,
# alpha, gamma, low, high; flag: focal.


@njit(**POINT_OPTIONS)
def _clip(q, low, high):
    """``q`` clipped to ``[low, high]``, NaN kept: written as selects, since ``min``/``max``
    become ``fminf``/``fmaxf`` on the GPU, which drop a NaN (a NaN prediction would give a
    finite loss there)."""
    q = const(q, low) if q < const(q, low) else q
    return const(q, high) if q > const(q, high) else q


@njit(**POINT_OPTIONS)
def _clipped(o, total, low, high):
    """A class's renormalised probability ``o / total`` before and after the clip, and whether
    it lies inside the clip."""
    q_raw = o / const(o, total)
    q = _clip(q_raw, low, high)
    return q_raw, q, (q_raw >= const(o, low)) & (q_raw <= const(o, high))


@njit(**POINT_OPTIONS)
def _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal):
    """A class's loss ``-y'_c log q_c`` (focal: times ``alpha (1 - q_c)^gamma``), its derivative
    with respect to the clipped probability (0 outside the clip) and the renormalised
    probability before the clip."""
    q_raw, q, inside = _clipped(o, total, low, high)
    v = const(o, keep) * y + const(o, spread)
    lq = log(q)
    if focal:
        w, w_down = _pow(const(o, 1.0) - q, const(o, gamma), const(o, 0.0))  # 1 - q > 0
        a = const(o, alpha)
        loss = a * w * (-v * lq)
        dq = a * (const(o, gamma) * w_down * v * lq - w * v / q)
    else:
        loss = -v * lq
        dq = -v / q
    return loss, (dq if inside else const(o, 0.0)), q_raw


@njit(**POINT_OPTIONS)
def keras_total(x, y, c, *rest):
    return x


@njit(**POINT_OPTIONS)
def keras_terms(x, y, c, total, keep, spread, alpha, gamma, low, high, focal):
    loss, dq, q_raw = _keras_terms(x, y, total, keep, spread, alpha, gamma, low, high, focal)
    return loss, dq * q_raw, dq


@njit(**POINT_OPTIONS)
def keras_row(total, loss, tq, unsummed, x, y, scale, *rest):
    return loss, (tq, total, scale)


@njit(**POINT_OPTIONS)
def keras_grad(x, y, c, loss, dq_q, dq, tq, total, scale, *rest):
    """``(G_c - sum_k G_k q~_k) / sum_k o_k``, ``G`` the derivative by the clipped
    probability."""
    return scale * ((dq - tq) / total)


KERAS_PROBS = RowSpec(
    "keras_probs", 2, (Sweep(keras_total), Sweep(keras_terms, 3, summed=2)), keras_row,
    keras_grad, 3, (0,), params=("keep", "spread", "alpha", "gamma", "low", "high"),
    flags=("focal",), staged=True,
)  # fmt: skip


# With the second derivative. With ``G_c``, ``H_c`` the first and second derivatives of a class's
# loss by its clipped probability (0 outside the clip), ``q_c = o_c / T`` before the clip,
# ``tq = sum_k G_k q_k`` and ``S2 = sum_k H_k q_k**2``, the Hessian's diagonal by the predictions
# ``o_c`` is ``(H_c (1 - 2 q_c) - 2 (G_c - tq) + S2) / T**2``.


@njit(**POINT_OPTIONS)
def _keras_curvature(o, y, total, keep, spread, alpha, gamma, low, high, focal):
    """``H_c``: the second derivative of a class's loss by its clipped probability (0 outside
    the clip)."""
    _, q, inside = _clipped(o, total, low, high)
    v = const(o, keep) * y + const(o, spread)
    one = const(o, 1.0)
    if focal:
        u = one - q
        w, w_down = _pow(u, const(o, gamma), const(o, 0.0))
        g = const(o, gamma)
        h = (
            const(o, alpha)
            * v
            * (-g * (g - one) * (w_down / u) * log(q) + (g + g) * w_down / q + w / (q * q))
        )
    else:
        h = v / (q * q)
    return h if inside else const(o, 0.0)


@njit(**POINT_OPTIONS)
def keras_terms_hess(x, y, c, total, keep, spread, alpha, gamma, low, high, focal):
    loss, dq, q_raw = _keras_terms(x, y, total, keep, spread, alpha, gamma, low, high, focal)
    h = _keras_curvature(x, y, total, keep, spread, alpha, gamma, low, high, focal)
    return loss, dq * q_raw, h * q_raw * q_raw, dq, h


@njit(**POINT_OPTIONS)
def keras_row_hess(total, loss, tq, s2, unsummed, unsummed_h, x, y, scale, *rest):
    return loss, (tq, total, scale, s2)


@njit(**POINT_OPTIONS)
def _keras_hess(dq, h, q, tq, s2, total, scale):
    two = const(q, 2.0)
    return scale * ((h * (const(q, 1.0) - two * q) - two * (dq - tq) + s2) / (total * total))


@njit(**POINT_OPTIONS)
def keras_grad_hess(x, y, c, loss, dq_q, h_q2, dq, h, tq, total, scale, s2, *rest):
    g = scale * ((dq - tq) / total)
    return g, _keras_hess(dq, h, x / total, tq, s2, total, scale)


KERAS_PROBS_HESS = RowSpec(
    "keras_probs_hess", 2, (Sweep(keras_total), Sweep(keras_terms_hess, 5, summed=3)),
    keras_row_hess, keras_grad_hess, 4, (0, 0),
    params=("keep", "spread", "alpha", "gamma", "low", "high"), flags=("focal",), staged=True,
)  # fmt: skip


# focal from logits: the probabilities are the softmax's, renormalised and clipped as above


@njit(**POINT_OPTIONS)
def _softmax_of(x, m, s):
    return exp_shifted(x - const(x, m)) / const(x, s)


@njit(**POINT_OPTIONS)
def logits_max(x, y, c, *rest):
    return x


@njit(**POINT_OPTIONS)
def logits_exp(x, y, c, m, *rest):
    return exp_shifted(x - const(x, m))


@njit(**POINT_OPTIONS)
def logits_total(x, y, c, m, s, *rest):
    return _softmax_of(x, m, s)


@njit(**POINT_OPTIONS)
def logits_terms(x, y, c, m, s, total, keep, spread, alpha, gamma, low, high, focal):
    o = _softmax_of(x, m, s)
    loss, dq, q_raw = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    return loss, dq * q_raw


@njit(**POINT_OPTIONS)
def logits_inner(x, y, c, m, s, total, loss, tq, keep, spread, alpha, gamma, low, high, focal):
    """``(G_c - t) / T * p_c``: the softmax's part of the gradient, summed."""
    o = _softmax_of(x, m, s)
    _, dq, _ = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    return (dq - const(o, tq)) / const(o, total) * o


@njit(**POINT_OPTIONS)
def logits_row(m, s, total, loss, tq, u, x, y, scale, *rest):
    return loss, (m, s, total, tq, u, scale)


@njit(**POINT_OPTIONS)
def logits_grad(x, y, c, m, s, total, tq, u, scale, keep, spread, alpha, gamma, low, high, focal):
    o = exp_shifted(x - m) / s
    _, dq, _ = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    return scale * (o * ((dq - tq) / total - u))


KERAS_FOCAL_LOGITS = RowSpec(
    "keras_focal_logits", 2,
    (Sweep(logits_max, op="max"), Sweep(logits_exp), Sweep(logits_total), Sweep(logits_terms, 2),
     Sweep(logits_inner)),
    logits_row, logits_grad, 6, (0,),
    params=("keep", "spread", "alpha", "gamma", "low", "high"), flags=("focal",),
)  # fmt: skip


# With the second derivative, through the softmax: with ``g_c = (G_c - tq) / T`` the derivative
# by ``p_c``, ``u = sum_k g_k p_k``, ``r_c = H_c q_c + G_c - tq`` and the Hessian by the
# probabilities ``M_jk = (H_j [j = k] - r_j - r_k + S2) / T**2``, the diagonal by the logits is
# ``p_c (1 - 2 p_c) (g_c - u) + p_c**2 (M_cc - 2 (M p)_c + p'M p)``, from the row sums
# ``R = sum_k r_k p_k`` and ``Q = sum_k H_k p_k**2``.


@njit(**POINT_OPTIONS)
def logits_terms_hess(x, y, c, m, s, total, keep, spread, alpha, gamma, low, high, focal):
    o = _softmax_of(x, m, s)
    loss, dq, q_raw = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    h = _keras_curvature(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    return loss, dq * q_raw, h * q_raw * q_raw


@njit(**POINT_OPTIONS)
def logits_inner_hess(x, y, c, m, s, total, loss, tq, s2, keep, spread, alpha, gamma, low, high,
                      focal):  # fmt: skip
    """``g_c p_c``, ``(H_c q_c + G_c) p_c`` and ``H_c p_c**2``, to be summed."""
    o = _softmax_of(x, m, s)
    _, dq, q_raw = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    h = _keras_curvature(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    return (dq - const(o, tq)) / const(o, total) * o, (h * q_raw + dq) * o, h * o * o


@njit(**POINT_OPTIONS)
def logits_row_hess(m, s, total, loss, tq, s2, u, hqg, q2, x, y, scale, *rest):
    r = hqg - tq * total
    return loss, (m, s, total, tq, u, scale, s2, r, q2)


@njit(**POINT_OPTIONS)
def logits_grad_hess(x, y, c, m, s, total, tq, u, scale, s2, r_sum, q2, keep, spread, alpha,
                     gamma, low, high, focal):  # fmt: skip
    o = exp_shifted(x - m) / s
    _, dq, q_raw = _keras_terms(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    h = _keras_curvature(o, y, total, keep, spread, alpha, gamma, low, high, focal)
    g_c = (dq - tq) / total
    two = const(o, 2.0)
    r_c = h * q_raw + dq - tq
    t2 = total * total
    m_cc = (h - two * r_c + s2) / t2
    mp_c = (h * o - r_c * total - r_sum + s2 * total) / t2
    pmp = (q2 - two * r_sum * total + s2 * t2) / t2
    hess = o * (const(o, 1.0) - two * o) * (g_c - u) + o * o * (m_cc - two * mp_c + pmp)
    return scale * (o * (g_c - u)), scale * hess


KERAS_FOCAL_LOGITS_HESS = RowSpec(
    "keras_focal_logits_hess", 2,
    (Sweep(logits_max, op="max"), Sweep(logits_exp), Sweep(logits_total),
     Sweep(logits_terms_hess, 3), Sweep(logits_inner_hess, 3)),
    logits_row_hess, logits_grad_hess, 9, (0, 0),
    params=("keep", "spread", "alpha", "gamma", "low", "high"), flags=("focal",),
)  # fmt: skip


# sparse targets, from probabilities: a row needs only its sum and its target's probability


@njit(**POINT_OPTIONS)
def sparse_skip(t, low, high, ignore_class):
    return t == ignore_class


@njit(**POINT_OPTIONS)
def sparse_total(x, c, t, low, high, ignore_class):
    return x


@njit(**POINT_OPTIONS)
def _sparse_target(total, t, x, low, high):
    """The target's renormalised probability before and after the clip, whether it lies inside
    the clip, the derivative ``dq`` of ``-log q`` by the clipped probability (0 outside) and
    ``tq = dq q~``, in the input's precision; the row's sum in it."""
    x_t = x[t]
    sum_ = const(x_t, total)
    q_raw, q, inside = _clipped(x_t, total, low, high)
    dq = -const(x_t, 1.0) / q if inside else const(x_t, 0.0)
    return sum_, q_raw, q, inside, dq, dq * q_raw


@njit(**POINT_OPTIONS)
def sparse_row(total, t, x, scale, low, high, ignore_class):
    sum_, _, q, _, dq, tq = _sparse_target(total, t, x, low, high)
    rest = (const(sum_, 0.0) - tq) / sum_
    at_target = (dq - tq) / sum_
    if abs(sum_) == const(sum_, math.inf):  # Keras's gradient through o / sum(o) is NaN there
        rest = const(sum_, math.nan)
        at_target = rest
    return np.float64(-log(q)), (scale * np.float64(rest), scale * np.float64(at_target))


@njit(**POINT_OPTIONS)
def sparse_grad(x, c, t, rest, at_target, low, high, ignore_class):
    return at_target if c == t else rest


KERAS_SPARSE = RowSpec(
    "keras_sparse", 1, (Sweep(sparse_total),), sparse_row, sparse_grad, 2, (0,), row_inputs=1,
    params=("low", "high", "ignore_class"), skip=sparse_skip, picked=True,
)  # fmt: skip


# With the second derivative: only the target's class has a loss, so in the diagonal of
# :data:`KERAS_PROBS_HESS` ``tq = G_t q_t``, ``S2 = H_t q_t**2`` with ``G_t = -1 / q_t``,
# ``H_t = 1 / q_t**2`` (0 outside the clip).


@njit(**POINT_OPTIONS)
def sparse_row_hess(total, t, x, scale, low, high, ignore_class):
    """:func:`sparse_row` and the two values of the diagonal, in the input's precision as the
    gradient's (the same clip decision)."""
    loss, (rest, at_target) = sparse_row(total, t, x, scale, low, high, ignore_class)
    sum_, q_raw, q, inside, dq, tq = _sparse_target(total, t, x, low, high)
    one, two, zero = const(sum_, 1.0), const(sum_, 2.0), const(sum_, 0.0)
    h = one / (q * q) if inside else zero
    s2 = h * q_raw * q_raw
    t2 = sum_ * sum_
    h_rest = (two * tq + s2) / t2
    h_target = (h * (one - two * q_raw) - two * (dq - tq) + s2) / t2
    if abs(sum_) == const(sum_, math.inf):
        h_rest = const(sum_, math.nan)
        h_target = h_rest
    return loss, (rest, at_target, scale * np.float64(h_rest), scale * np.float64(h_target))


@njit(**POINT_OPTIONS)
def sparse_grad_hess(x, c, t, rest, at_target, h_rest, h_target, low, high, ignore_class):
    if c == t:
        return at_target, h_target
    return rest, h_rest


KERAS_SPARSE_HESS = RowSpec(
    "keras_sparse_hess", 1, (Sweep(sparse_total),), sparse_row_hess, sparse_grad_hess, 4, (0, 0),
    row_inputs=1, params=("low", "high", "ignore_class"), skip=sparse_skip, picked=True,
)  # fmt: skip
