"""Point functions of the margin losses on +-1 targets, and their kernel declarations.

Each loss is one function of one element, ``*_value_grad``: the loss, its derivative with
respect to the input and, as its last value, its second derivative, as in
:mod:`fastloss.kernels.regression`. ``x`` is the input (a score or a distance), ``t`` the
target (1 or -1; torch defines the losses for other values too, and so do these). Everything
stays in the precision of the input (``const``), every choice is a select (the element loops
vectorise), and exp/log1p are the vectorisable versions of :mod:`fastloss.kernels.vmath`.
"""

from numba import njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.binary import _sigmoid_pair, _softplus_neg
from fastloss.kernels.elementwise import ElementwiseSpec
from fastloss.kernels.scalar import const


# --- hinge embedding (torch): x where t == 1, max(0, margin - x) where t == -1 ----------------
# torch's composite, term by term: where(t != 1, clamp_min(margin - x, 0), 0) +
# where(t != -1, x, 0). A target that is neither 1 nor -1 (NaN included) takes both terms, as in
# torch. clamp_min keeps NaN and passes its gradient where margin - x >= 0 (at the kink too:
# -1 at x = margin), 0 where that is NaN; the loss is selected, never multiplied by a mask, so
# an infinite input in the unselected term does not make NaN.
# The loss is piecewise linear: its exact second derivative is 0 almost everywhere. As
# scikit-learn's AbsoluteError (sklearn/_loss), the second derivative is 1 everywhere (Newton
# steps of boosting need one > 0).
@njit(**POINT_OPTIONS)
def hinge_embedding_value_grad(x, t, margin):
    zero = const(x, 0.0)
    one = const(x, 1.0)
    h = margin - x
    hinge = zero if h < zero else h
    slope = -one if h >= zero else zero
    margin_term = t != one
    input_term = t != -one
    v = (hinge if margin_term else zero) + (x if input_term else zero)
    g = (slope if margin_term else zero) + (one if input_term else zero)
    return v, g, one


# --- soft margin (torch): log(1 + exp(-t x)) ----------------------------------------------------
# With z = t x: softplus(-z) = log1p(exp(-|z|)) + max(-z, 0), finite for every finite z (torch's
# log1p(exp(-z)) overflows to inf, its gradient to NaN, once -z > 88.7 in float32 or 709.8 in
# float64). Derivative -t sigmoid(-z) (torch's -t e / (1 + e), e = exp(-z)); second derivative
# t**2 sigmoid(z) sigmoid(-z), scikit-learn's HalfBinomialLoss p (1 - p) in z, without
# cancellation for saturated z.
@njit(**POINT_OPTIONS)
def soft_margin_value_grad(x, t):
    z = t * x
    s, q, e = _sigmoid_pair(z)
    return _softplus_neg(z, e), -t * q, (t * t) * (s * q)


HINGE_EMBEDDING = ElementwiseSpec(
    "hinge_embedding", hinge_embedding_value_grad, params=("margin",), hess=True
)
SOFT_MARGIN = ElementwiseSpec("soft_margin", soft_margin_value_grad, stage_segments=4, hess=True)
