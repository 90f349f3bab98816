"""Row losses of pairs and triplets of embeddings: cosine embedding and triplet margin.

Declared for the row factory (:mod:`fastloss.kernels.rows`). Column values are computed in the
input's precision, as torch computes them; the row sums are float64 under the row contract, and
the row's loss and gradient coefficients are float64.
"""

import math

from numba import njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.rows import RowSpec, Sweep
from fastloss.kernels.scalar import const, sign

# torch's cosine_embedding_loss adds this to each squared norm (ATen's EPSILON).
COSINE_EPSILON = 1e-12


# --- cosine embedding: 1 - cos (target 1), max(0, cos - margin) (target -1) ------------------
@njit(**POINT_OPTIONS)
def cosine_sweep(x1, x2, c, target, margin):
    return x1 * x2, x1 * x1, x2 * x2


@njit(**POINT_OPTIONS)
def cosine_row(dot, square1, square2, target, x1, x2, scale, margin):
    """``cos = x1.x2 / sqrt((|x1|^2 + e)(|x2|^2 + e))``; ``d cos / d x1 = x2 / den - cos x1 /
    (|x1|^2 + e)``. Rows whose target is neither 1 nor -1 give 0, as in torch."""
    m1 = square1 + COSINE_EPSILON
    m2 = square2 + COSINE_EPSILON
    denom = math.sqrt(m1 * m2)
    cos = dot / denom
    loss = 0.0
    s = 0.0
    if target == 1.0:
        loss = 1.0 - cos
        s = -1.0
    elif target == -1.0:
        excess = cos - margin
        if excess >= 0.0:  # torch's clamp_min passes the gradient where excess >= 0
            loss = excess
            s = 1.0
        elif excess != excess:
            loss = excess  # NaN propagates; clamp_min's gradient there is 0
    return loss, (s / denom * scale, s * cos / m1 * scale, s * cos / m2 * scale)


@njit(**POINT_OPTIONS)
def cosine_grad(x1, x2, c, target, k, k1, k2, margin):
    return k * x2 - k1 * x1, k * x1 - k2 * x2


COSINE_EMBEDDING = RowSpec(
    "cosine_embedding", 2, (Sweep(cosine_sweep, 3),), cosine_row, cosine_grad, 3, (0, 1),
    row_inputs=1, params=("margin",),
)  # fmt: skip


# --- triplet margin: max(0, margin + d(a, p) - d(a, n)), d = ||x1 - x2 + eps||_p -------------
@njit(**POINT_OPTIONS)
def _power(v, p, p1, p2):
    """``|v|^p``, the term of a p-norm."""
    if p2:
        return v * v
    if p1:
        return abs(v)
    return abs(v) ** const(v, p)


@njit(**POINT_OPTIONS)
def _root(total, p, p1, p2):
    if p2:
        return math.sqrt(total)
    if p1:
        return total
    return total ** (1.0 / p)


@njit(**POINT_OPTIONS)
def _norm_coefficient(norm, p, p1, p2):
    """The p-norm's gradient is ``sgn(v) |v|^(p-1) / norm^(p-1)``: this is the
    ``1 / norm^(p-1)``, 0 where the norm is 0 (torch masks it so)."""
    if p1:
        return 1.0
    if norm == 0.0:
        return 0.0
    if p2:
        return 1.0 / norm
    return 1.0 / norm ** (p - 1.0)


@njit(**POINT_OPTIONS)
def _norm_term(v, p, p1, p2):
    """``sgn(v) |v|^(p-1)`` (0 at v = 0), the column's part of the p-norm's gradient."""
    if p2:
        return v
    if p1:
        return sign(v)
    if v == 0:
        return const(v, 0.0)
    return sign(v) * abs(v) ** const(v, p - 1.0)


@njit(**POINT_OPTIONS)
def triplet_sweep(a, positive, negative, c, margin, p, eps, swap, p1, p2):
    e = const(a, eps)
    pos = _power(a - positive + e, p, p1, p2)
    neg = _power(a - negative + e, p, p1, p2)
    between = _power(positive - negative + e, p, p1, p2) if swap else const(a, 0.0)
    return pos, neg, between


@njit(**POINT_OPTIONS)
def triplet_row(
    total_pos,
    total_neg,
    total_swap,
    anchor,
    positive,
    negative,
    scale,
    margin,
    p,
    eps,
    swap,
    p1,
    p2,
):
    """``loss = max(0, margin + d_pos - min(d_neg, d_swap))``; ``min``'s gradient goes to the
    smaller distance, half to each on a tie (torch's ``minimum``)."""
    d_pos = _root(total_pos, p, p1, p2)
    d_neg = _root(total_neg, p, p1, p2)
    w_neg = 1.0
    w_swap = 0.0
    d_swap = 0.0
    nearest = d_neg
    if swap:
        d_swap = _root(total_swap, p, p1, p2)
        if d_swap < d_neg:
            nearest, w_neg, w_swap = d_swap, 0.0, 1.0
        elif d_swap == d_neg:
            w_neg = w_swap = 0.5
        elif d_swap != d_swap:
            nearest, w_swap = d_swap, 1.0  # NaN propagates; both sides keep their gradient
    excess = margin + d_pos - nearest
    active = 0.0
    loss = 0.0
    if excess >= 0.0:
        loss = excess
        active = 1.0
    elif excess != excess:
        loss = excess
    k_pos = active * _norm_coefficient(d_pos, p, p1, p2)
    k_neg = -active * w_neg * _norm_coefficient(d_neg, p, p1, p2)
    k_swap = -active * w_swap * _norm_coefficient(d_swap, p, p1, p2) if swap else 0.0
    return loss, (k_pos * scale, k_neg * scale, k_swap * scale)


@njit(**POINT_OPTIONS)
def triplet_grad(a, positive, negative, c, k_pos, k_neg, k_swap, margin, p, eps, swap, p1, p2):
    e = const(a, eps)
    t_pos = _norm_term(a - positive + e, p, p1, p2)
    t_neg = _norm_term(a - negative + e, p, p1, p2)
    g_a = k_pos * t_pos + k_neg * t_neg
    g_p = -k_pos * t_pos
    g_n = -k_neg * t_neg
    if swap:
        t_swap = _norm_term(positive - negative + e, p, p1, p2)
        g_p += k_swap * t_swap
        g_n -= k_swap * t_swap
    return g_a, g_p, g_n


TRIPLET_MARGIN = RowSpec(
    "triplet_margin", 3, (Sweep(triplet_sweep, 3),), triplet_row, triplet_grad, 3, (0, 1, 2),
    params=("margin", "p", "eps"), flags=("swap", "p1", "p2"),
)  # fmt: skip
