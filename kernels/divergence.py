"""Point functions of the Kullback-Leibler divergence, and its kernel declaration.

As :mod:`fastloss.kernels.regression`: ``kl_div_value_grad`` at one element (the loss, its
derivative and its second derivative, 0), ``x`` the input (log-probabilities), ``t`` the
target, in the input's precision, with the vectorisable ``exp``/``log`` of
:mod:`fastloss.kernels.vmath`. ``scale`` multiplies the loss and its derivatives: ``1 / N`` for
torch's ``reduction="batchmean"`` (its sum divided by the batch size), 1 otherwise, so that no
second pass over the gradient is needed.
"""

from numba import njit

from fastloss.kernels._jit import POINT_OPTIONS
from fastloss.kernels.elementwise import ElementwiseSpec
from fastloss.kernels.scalar import const
from fastloss.kernels.vmath import exp, log


# --- KL divergence (torch) ---------------------------------------------------------------------
# t log t - t x (xlogy: 0 where t = 0), derivative -t; log_target: exp(t) (t - x), -exp(t).
# Linear in the input: the second derivative is 0.
@njit(**POINT_OPTIONS)
def kl_div_value_grad(x, t, scale, log_target):
    if log_target:
        et = exp(t)
        v = et * (t - x)
        g = -et
    else:
        zero = const(x, 0.0)
        tl = t * log(t)
        v = (zero if t == zero else tl) - t * x
        g = -t
    return v * scale, g * scale, const(x, 0.0)


KL_DIV = ElementwiseSpec(
    "kl_div",
    kl_div_value_grad,
    stage_segments=4,
    params=("scale",),
    flags=("log_target",),
    hess=True,
)
