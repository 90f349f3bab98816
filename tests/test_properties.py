"""Property tests: every loss on shapes, dtypes, reductions, options and values that hypothesis
draws, against the reference library (values and gradients).

Two families: moderate values with ties, zeros, NaN and infinities, compared with the
reference in the same dtype; and extreme values (the largest finite, the tiny, subnormals,
infinities, NaN, zeros), compared with the reference evaluated in float64 and rounded to the
input's dtype, so that an overflow inside the reference's float32 arithmetic is not taken for
the answer. Reductions of the reference's element losses are taken in float64 (fastloss sums
float32 in float64 by design; torch's float32 sum can overflow where the mean does not).

Regions with known, reported bugs are left out here and kept failing in test_regression.py:
the gradient of the L1-type losses at NaN (torch's sign(NaN) is 0), poisson_nll_loss's
forward-only kernel at input = +inf.
"""

from __future__ import annotations

import math

import numpy as np
from conftest import (
    FLOATS,
    KERAS_LOSSES,
    REDUCTIONS,
    REFERENCES,
    TORCH_LOSSES,
    Result,
    _var_shape,
    assert_close,
    assert_matches,
    check_against_reference,
    compute_dtype,
    run_fastloss,
    run_reference,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SETTINGS = dict(
    deadline=None,
    derandomize=True,  # the same examples every run: a stable, bounded runtime
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Known bugs (see the module docstring): no NaN (nor inf - inf) into the L1-type losses, no
# +inf input into poisson_nll_loss.
SIGN_AT_NAN = {"l1_loss", "mape_loss", "rmse_loss"}
NO_POSITIVE_INF_INPUT = {"poisson_nll_loss"}
# At d = -inf Keras's log-cosh formula gives NaN, fastloss's overflow-free form inf (by design).
NO_INFINITIES = {"log_cosh_loss"}
# Known bug: msle's gradient below epsilon is 0 * NaN = NaN for a NaN target (Keras: 0).
NO_NAN_TARGET = {"msle_loss"}


def _specials(dtype, *, nan: bool, inf: bool, extreme: bool, cap: float) -> list[float]:
    info = np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.0, 0.5]
    if nan:
        values.append(math.nan)
    if inf:
        values += [math.inf, -math.inf]
    if extreme:
        values += [
            float(info.max),
            -float(info.max),
            float(info.max) / 3,
            float(info.tiny),
            -float(info.tiny),
            float(info.smallest_subnormal),
            -float(info.smallest_subnormal) * 3,
            float(np.sqrt(info.max)),  # squares to the edge of the range
        ]
    return [v for v in values if not abs(v) > cap or math.isinf(v)]


def _elements(dtype, *, nan=True, inf=True, extreme=False, nonnegative=False, cap=math.inf):
    width = np.dtype(dtype).itemsize * 8
    specials = _specials(dtype, nan=nan, inf=inf, extreme=extreme, cap=cap)
    if nonnegative:
        specials = [v for v in specials if not v < 0 and math.copysign(1, v) > 0]
    low = 0.0 if nonnegative else -50.0
    ordinary = st.floats(low, 50.0, width=width, allow_subnormal=False)
    parts = [ordinary, st.sampled_from(specials)]
    if extreme:  # anywhere in the range (NaN comes from the specials)
        high = None if math.isinf(cap) else cap
        low = 0.0 if nonnegative else (None if high is None else -high)
        parts.append(
            st.floats(low, high, allow_nan=False, allow_infinity=inf and high is None, width=width)
        )
    return st.one_of(*parts)


@st.composite
def cases(draw, names, *, extreme: bool, dtypes=FLOATS, cap: float = math.inf):
    """``(name, arrays, kwargs, reduction)`` for one loss; finite values at most ``cap``."""
    name = draw(st.sampled_from(names))
    ref = REFERENCES[name]
    option = draw(st.sampled_from(ref.options))
    dtype = draw(st.sampled_from(dtypes))
    reduction = draw(st.sampled_from(REDUCTIONS))
    shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4).filter(option.applies)
    )
    sign_at_nan = name in SIGN_AT_NAN or (name == "smooth_l1_loss" and option.id == "beta0")
    nan = not sign_at_nan
    inf = not sign_at_nan and name not in NO_INFINITIES
    x_elements = _elements(dtype, nan=nan, inf=inf, extreme=extreme, cap=cap)
    if name in NO_POSITIVE_INF_INPUT:
        x_elements = x_elements.filter(lambda v: v != math.inf)
    x = draw(hnp.arrays(dtype, shape, elements=x_elements))
    t_nan = nan and name not in NO_NAN_TARGET
    t_elements = _elements(dtype, nan=t_nan, inf=inf, extreme=extreme, cap=cap)
    # ties: the target takes some of the input's values
    t = draw(hnp.arrays(dtype, shape, elements=t_elements))
    if x.size and draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, shape))
        t = np.where(mask, x, t)
    arrays = {"input": x, "target": t}
    if option.var == "float":
        arrays["var"] = draw(st.floats(0.0, 10.0))
    elif option.var is not None:
        var_elements = _elements(
            dtype, nan=nan, inf=inf, extreme=extreme, nonnegative=True, cap=cap
        )
        arrays["var"] = draw(
            hnp.arrays(dtype, _var_shape(shape, option.var), elements=var_elements)
        )
    kwargs = dict(option.kwargs)
    if option.weight:
        kwargs["weight"] = draw(
            hnp.arrays(
                dtype, shape, elements=st.floats(0.0, 2.0, width=np.dtype(dtype).itemsize * 8)
            )
        )
    return name, arrays, kwargs, reduction


def _reduce64(name: str, terms: np.ndarray, kwargs: dict, reduction: str) -> float:
    """The reduction of the reference's element losses, in float64."""
    terms = np.asarray(terms, np.float64)
    n = terms.size
    with np.errstate(all="ignore"):
        if name == "rmse_loss":  # the elements are |d|: the root of the mean (sum) of squares
            total = np.sum(terms * terms)
            return float(np.sqrt(total / n if reduction == "mean" else total))
        total = np.sum(terms)
        if reduction == "sum":
            return float(total)
        weight = kwargs.get("weight")
        if weight is not None and name in ("mse_loss", "l1_loss"):
            return float(total / np.sum(np.asarray(weight, np.float64)))
        return float(total / np.float64(n))


def _at_overflow_edge(actual, expected, inputs_at_edge: bool = False):
    """``expected`` with its infinities replaced by ``actual``'s values where those are finite,
    of the same sign and within a factor 4 of the largest finite number: at the edge of the
    range the order of two roundings decides between the largest numbers and inf (torch's
    ``2 * d / n`` overflows where ``d * (2 / n)`` does not), and neither is wrong. With
    ``inputs_at_edge`` (an input within a factor 4 of the largest number) a NaN or inf of the
    reference beside a finite value here is taken as the reference's intermediate overflow
    (torch's ``0 * (2 d)`` is NaN where ``2 d`` overflows; the exact product is 0)."""
    if actual is None or expected is None:
        return expected
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape or e.dtype.kind != "f" or a.dtype.kind != "f":
        return expected
    big = float(np.finfo(a.dtype).max) / 4
    with np.errstate(all="ignore"):
        edge = np.isinf(e) & np.isfinite(a) & (np.abs(a) >= big) & (np.sign(a) == np.sign(e))
        if inputs_at_edge:
            edge |= ~np.isfinite(e) & np.isfinite(a)
    if not edge.any():
        return expected
    fixed = np.where(edge, a.astype(e.dtype), e)
    return fixed if fixed.ndim else e.dtype.type(fixed)


def _inputs_at_edge(dtype, arrays, kwargs) -> bool:
    """Whether a finite input lies within a factor 4 of ``dtype``'s largest number."""
    big = float(np.finfo(dtype).max) / 4
    for value in (*arrays.values(), *kwargs.values()):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
            with np.errstate(all="ignore"):
                v = np.abs(value.astype(np.float64))
            if np.any(np.isfinite(v) & (v >= big)):
                return True
    return False


def _overflow_in(name, arrays, kwargs, reduction):
    """The reference's loss run in the inputs' own dtype when it has a NaN or inf that the
    float64 run on the same values has not, else None."""
    native = run_reference(name, arrays, kwargs, reduction, grad=False)
    wide = run_reference(
        name,
        {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in arrays.items()},
        {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
        reduction,
        grad=False,
    )
    with np.errstate(all="ignore"):
        own = ~np.isfinite(np.asarray(native.loss, np.float64))
        wide_bad = ~np.isfinite(np.asarray(wide.loss, np.float64))
    return np.asarray(native.loss) if np.any(own & ~wide_bad) else None


def check(name, arrays, kwargs, reduction, *, upcast: bool) -> None:
    """fastloss against the reference; with ``upcast`` the reference runs in float64 on the
    same values and its results are rounded to fastloss's dtypes."""
    ref = REFERENCES[name]
    input_dtype = np.asarray(arrays["input"]).dtype
    dtype = compute_dtype(input_dtype)
    result = run_fastloss(name, arrays, kwargs, reduction)
    loss_checked = False
    if upcast and dtype != np.float64:
        native = _overflow_in(name, arrays, kwargs, reduction)
        if native is not None:
            # The reference's own loss, in fastloss's dtype, overflows where float64's does not
            # (a zero weight times a square beyond float32: 0 * inf = NaN): that loss is torch's
            # float32 answer, and the gradients (finite in both) are still float64's.
            assert_close(result.loss, native, rtol=0.0, what="loss (overflowing as torch's)")
            loss_checked = True

    def up(value):
        return value.astype(np.float64) if upcast and isinstance(value, np.ndarray) else value

    ref_arrays = {k: up(v) for k, v in arrays.items()}
    ref_kwargs = {k: up(v) for k, v in kwargs.items()}
    empty = np.broadcast(arrays["input"], arrays["target"]).size == 0
    # rmse's elementwise roots are |d| with l1's subgradient; autograd through sqrt(d**2)
    # gives NaN at d = 0, so "none" is compared with torch's l1_loss
    ref_name = "l1_loss" if name == "rmse_loss" and reduction == "none" else name
    elements = run_reference(ref_name, ref_arrays, ref_kwargs, "none", grad=reduction == "none")
    expected = elements
    if reduction != "none":
        # (Keras reduces an empty batch its own way; the gradients of an empty input are
        # empty whatever the reduction)
        own = "none" if empty else reduction
        expected = run_reference(name, ref_arrays, ref_kwargs, own)
        total = _reduce64(name, elements.loss, ref_kwargs, reduction)
        overflowed = not empty and not np.isfinite(expected.loss)
        if name == "rmse_loss" and np.isfinite(total) and overflowed:
            # The reference's own total overflowed, and with it its gradient d / (n L):
            # compare the values only.
            result = Result(result.loss, {})
            expected = Result(expected.loss, {})
        expected = Result(total, expected.grads)
    with np.errstate(all="ignore"):
        loss = np.asarray(expected.loss, np.float64).astype(dtype)
        grads = {
            key: None if grad is None else np.asarray(grad).astype(result.grads[key].dtype)
            for key, grad in expected.grads.items()
        }
    expected = Result(loss if reduction == "none" else dtype.type(loss), grads)
    if loss_checked:
        result = Result(expected.loss, result.grads)
    at_edge = _inputs_at_edge(dtype, arrays, kwargs)
    expected = Result(
        _at_overflow_edge(result.loss, expected.loss, at_edge),
        {k: _at_overflow_edge(result.grads.get(k), g, at_edge) for k, g in expected.grads.items()},
    )
    assert_matches(
        result,
        expected,
        arrays,
        reduction,
        dtype=dtype,
        terms=np.asarray(elements.loss, np.float64),
        grad_dtype=input_dtype.newbyteorder("="),
        tol_dtype=np.float32 if ref.dialect == "keras" else None,
        strict_shapes=False,  # the var-short grad shape is test_regression.py's business
    )


TORCH = TORCH_LOSSES
KERAS = KERAS_LOSSES


@settings(max_examples=100, **SETTINGS)
@given(cases(TORCH, extreme=False))
def test_torch_losses_on_moderate_values(case):
    name, arrays, kwargs, reduction = case
    check(name, arrays, kwargs, reduction, upcast=False)


@settings(max_examples=60, **SETTINGS)
@given(cases(KERAS, extreme=False))
def test_keras_losses_on_moderate_values(case):
    name, arrays, kwargs, reduction = case
    check(name, arrays, kwargs, reduction, upcast=False)


@settings(max_examples=100, **SETTINGS)
@given(cases(TORCH, extreme=True))
@example(  # found by CI: torch's own float32 loss is 0 * inf = NaN, its float64 loss 0
    case=(
        "mse_loss",
        {"input": np.array(0.0, np.float32), "target": np.array(3.4028235e38, np.float32)},
        {"weight": np.array(0.0, np.float32)},
        "sum",
    )
)
@example(  # found by CI: torch's 2 d / n overflows to -inf, d (2 / n) gives -DBL_MAX
    case=(
        "mse_loss",
        {"input": np.zeros(2), "target": np.full(2, np.finfo(np.float64).max)},
        {"weight": np.ones(2)},
        "mean",
    )
)
@example(  # found by CI: torch's gradient 0 * (2 d) is NaN where 2 d overflows; exact: 0
    case=(
        "mse_loss",
        {"input": np.array(0.0), "target": np.array(np.finfo(np.float64).max)},
        {"weight": np.array(0.0)},
        "sum",
    )
)
def test_torch_losses_on_extreme_values(case):
    name, arrays, kwargs, reduction = case
    check(name, arrays, kwargs, reduction, upcast=True)


# Keras on torch computes in float32 whatever the input (ops.mean, ops.maximum), so its
# answers for values whose squares leave float32's range are float32 overflows: float32
# inputs, magnitudes up to 2**50.
@settings(max_examples=60, **SETTINGS)
@given(cases(KERAS, extreme=True, dtypes=(np.float32,), cap=2.0**50))
def test_keras_losses_on_extreme_values(case):
    name, arrays, kwargs, reduction = case
    check(name, arrays, kwargs, reduction, upcast=True)


@settings(max_examples=60, **SETTINGS)
@given(cases(list(REFERENCES), extreme=False))
def test_fused_reference_suite(case):
    """The same cases through test_regression.py's comparison (the reference's own
    reductions), restricted to finite values."""
    name, arrays, kwargs, reduction = case
    finite = all(np.isfinite(np.asarray(v, np.float64)).all() for v in arrays.values())
    empty = np.broadcast(arrays["input"], arrays["target"]).size == 0
    if name == "rmse_loss" and reduction == "none":
        name = "l1_loss"  # rmse's "none" is |d| (see check)
    if finite and not (empty and REFERENCES[name].dialect == "keras"):
        check_against_reference(name, arrays, kwargs, reduction, strict_shapes=False)


@settings(max_examples=60, **SETTINGS)
@given(cases(list(REFERENCES), extreme=True))
def test_none_sums_to_sum_and_mean(case):
    """Consistency: the ``sum`` and ``mean`` reductions are the float64 sum of the ``none``
    losses (rounded once), and ``none``'s gradient is ``sum``'s."""
    name, arrays, kwargs, _ = case
    if name == "rmse_loss":
        return  # not a sum of element losses
    none = run_fastloss(name, arrays, kwargs, "none")
    total = run_fastloss(name, arrays, kwargs, "sum")
    dtype = none.loss.dtype
    eps = float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        want = dtype.type(np.sum(none.loss.astype(np.float64)))
    atol = (
        4 * eps * max(float(np.max(np.abs(none.loss), where=np.isfinite(none.loss), initial=1)), 1)
    )
    assert_close(total.loss, want, rtol=4 * eps, atol=atol * max(none.loss.size, 1), what="sum")
    for key, grad in none.grads.items():
        if grad is not None:  # the same point function; the compiler may contract differently
            assert_close(total.grads[key], grad, rtol=4 * eps, what=f"grad {key}")
