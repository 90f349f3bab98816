"""Row kernels of the softmax family: cross-entropy, NLL, focal loss, on the CPU.

A row is one sample's ``C`` logits, contiguous. Each row is done by one thread in a few
sweeps over the row while it sits in cache (one read of the logits from memory, one write of
the gradient):

1. the maximum ``m`` (and, with ``softcap``, the capped logits, written where the gradient
   goes);
2. ``s = sum_c exp(x_c - m)``, writing ``e_c = exp(x_c - m)`` where the gradient goes, and
   the row's other sums (label smoothing, probability targets), all taken against ``m`` so
   that large logits lose nothing to cancellation;
3. the row's loss from ``lse = m + log(s)``, the row coefficients of its gradient, and the
   gradient ``A * e_c / s - E * w_c`` with ``B`` taken off at the target.

The gradient may be written into the logits themselves (``grad`` is ``logits``): every sweep
reads an element before writing it, and sweep 1 reads the only logit needed later (the
target's) before anything is written.

Rows are independent, so the result does not depend on how rows are split among threads; the
per-row losses go to a float64 array that the caller sums in a fixed order.

Class indices are checked before any row is touched (:func:`check_targets`), so a bad index
raises before the caller's buffer is written.

``mode`` of :func:`index_rows`: ``CROSS_ENTROPY`` or ``FOCAL``.
"""

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from fastloss.kernels import _cache
from fastloss.kernels._jit import ROW_KERNEL_OPTIONS as KERNEL_OPTIONS
from fastloss.kernels._jit import ROW_POINT_OPTIONS as POINT_OPTIONS
from fastloss.kernels._jit import serial_and_parallel
from fastloss.kernels.binary import _pow
from fastloss.kernels.scalar import const
from fastloss.kernels.vector_width import full_width
from fastloss.kernels.vmath import _as_float, _as_int, exp, exp_nonpos, log

CACHE = _cache.enabled()  # before any cached kernel is declared

CROSS_ENTROPY = 0
FOCAL = 1

# rows per parallel task: about this many elements, so that small rows are batched
TASK_ELEMENTS = 1 << 15


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


def _order_key(v):
    """An integer whose signed order is ``v``'s order as a float (NaN above +inf)."""
    raise NotImplementedError  # compiled only, see the overload


def _from_key(k):
    """The float whose :func:`_order_key` is ``k``."""
    raise NotImplementedError


_MAGNITUDE_32 = np.int32(0x7FFFFFFF)
_MAGNITUDE_64 = np.int64(0x7FFFFFFFFFFFFFFF)


@overload(_order_key, target="cpu", jit_options=POINT_OPTIONS)
def _order_key_overload(v):
    # A float's bits read as a signed integer order the non-negative floats; flipping the
    # magnitude bits of the negative ones reverses their order. Integer max reductions
    # vectorise, where a float max without ``nnan`` does not.
    if v == types.float32:

        def key32(v):
            b = _as_int(v)
            return np.int32(b ^ np.int32((b >> np.int32(31)) & _MAGNITUDE_32))

        return key32
    if v == types.float64:
        return lambda v: _as_int(v) ^ ((_as_int(v) >> np.int64(63)) & _MAGNITUDE_64)
    return None


@overload(_from_key, target="cpu", jit_options=POINT_OPTIONS)
def _from_key_overload(k):
    if k == types.int32:
        return lambda k: _as_float(np.int32(k ^ np.int32((k >> np.int32(31)) & _MAGNITUDE_32)))
    if k == types.int64:
        return lambda k: _as_float(k ^ ((k >> np.int64(63)) & _MAGNITUDE_64))
    return None


def exp_shifted(d):
    """``exp(d)`` for ``d = x - max <= 0`` (or NaN), 0 included: the softmax numerators."""
    raise NotImplementedError


def _exp_shifted_f32(d):
    # exp_nonpos is exact in range only down to -80 (it clamps there, never giving 0);
    # exp(d/2)**2 reaches below -104, where float32's exp is 0 (masked -inf logits give 0),
    # for two multiplies instead of the general exp's range handling
    h = exp_nonpos(d * np.float32(0.5))
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


@njit(**POINT_OPTIONS)
def row_max(x):
    """``max(x)`` of a non-empty row; NaN if ``x`` holds a positive-signed NaN."""
    full_width()
    m = _order_key(x[0])
    for c in range(x.size):
        m = max(m, _order_key(x[c]))
    return _from_key(m)


@njit(**POINT_OPTIONS)
def _exp_sum(y, m, g, keep):
    """``sum_c exp(y_c - m)``, writing each term into ``g`` when ``keep``."""
    full_width()
    s = const(m, 0.0)
    if keep and y.ctypes.data == g.ctypes.data:
        # in place: one array in the loop, or LLVM's overlap check sends it to scalar code
        for c in range(g.size):
            e = exp_shifted(g[c] - m)
            g[c] = e
            s += e
    elif keep:
        for c in range(y.size):
            e = exp_shifted(y[c] - m)
            g[c] = e
            s += e
    else:
        for c in range(y.size):
            s += exp_shifted(y[c] - m)
    return s


@njit(**POINT_OPTIONS)
def _index_row(
    x,
    t,
    weight,
    has_weight,
    weight_sum,
    smoothing,
    softcap,
    use_cap,
    z_scale,
    alpha,
    gamma,
    mode,
    grad_scale,
    z_grad_scale,
    want_grad,
    g,
    scratch,
):
    """Loss and z-loss of one row with class index ``t``; the gradient into ``g``."""
    full_width()
    args = (weight, has_weight, weight_sum, smoothing, softcap, use_cap, z_scale, alpha, gamma)
    if use_cap:
        # the capped logits go where the gradient will (or to scratch): read from there on
        y = g if want_grad else scratch
        inv = const(x[0], 1.0) / softcap
        for c in range(x.size):
            y[c] = softcap * tanh(x[c] * inv)
        return _index_row_of(y, t, *args, mode, grad_scale, z_grad_scale, want_grad, g)
    return _index_row_of(x, t, *args, mode, grad_scale, z_grad_scale, want_grad, g)


@njit(**POINT_OPTIONS)
def _index_row_of(
    y,
    t,
    weight,
    has_weight,
    weight_sum,
    smoothing,
    softcap,
    use_cap,
    z_scale,
    alpha,
    gamma,
    mode,
    grad_scale,
    z_grad_scale,
    want_grad,
    g,
):
    """:func:`_index_row` on the (capped) logits ``y``."""
    full_width()
    n = y.size
    zero = const(y[0], 0.0)
    one = const(y[0], 1.0)
    x_t = y[t]
    m = row_max(y)
    # sweep 2: s and, for label smoothing, sum_c w_c (m - y_c) >= 0, leaving out the maxima's
    # zeros (an inf weight there would give inf * 0 = NaN where torch's loss is inf)
    # in float64: a float32 running sum over 10^5 classes loses 5 digits
    shifted = 0.0
    if smoothing != 0:
        if has_weight:
            for c in range(n):
                d = m - y[c]
                shifted += np.float64(weight[c] * d) if d != zero else 0.0
        else:
            for c in range(n):
                shifted += np.float64(m - y[c])
    # last: with the gradient written into the logits, y is gone after this
    s = _exp_sum(y, m, g, want_grad and not use_cap)
    log_s = log(s)
    lse = m + log_s
    w_t = weight[t] if has_weight else one
    nll = log_s + (m - x_t)
    classes = const(m, n)
    # no z-loss term at all without a z-loss: 0 * lse**2 is NaN once lse**2 overflows
    z = z_scale * lse * lse if z_scale != 0 else zero
    if mode == FOCAL:
        p_t = exp(-nll)
        q = -math.expm1(-nll)  # 1 - p_t without cancellation for confident rows (per row)
        mod = q**gamma
        loss = alpha * mod * nll
        k = mod
        if q > zero and gamma != 0:
            k = mod + gamma * (mod / q) * p_t * nll
        k = alpha * k
        a = grad_scale * k
        b = a
        e_coef = zero
    else:
        loss = (one - smoothing) * w_t * nll
        a = (one - smoothing) * w_t
        e_coef = zero
        if smoothing != 0:
            loss += smoothing / classes * (weight_sum * log_s + shifted)
            a += smoothing * weight_sum / classes
            e_coef = grad_scale * smoothing / classes
        a = grad_scale * a
        b = grad_scale * (one - smoothing) * w_t
    loss += z
    if z_scale != 0:
        a += z_grad_scale * (z_scale + z_scale) * lse
    if want_grad:
        r = a / s
        if use_cap:
            inv = one / softcap
            for c in range(n):
                yc = y[c]
                dy = one - (yc * inv) * (yc * inv)
                gc = r * exp(yc - m)
                if has_weight and e_coef != zero:  # no 0 * (NaN or inf weight) otherwise
                    gc -= e_coef * weight[c]
                else:
                    gc -= e_coef
                g[c] = gc * dy
            yt = x_t * inv  # y[t] itself is overwritten by now
            g[t] -= b * (one - yt * yt)
        else:
            if has_weight and e_coef != zero:
                for c in range(n):
                    g[c] = r * g[c] - e_coef * weight[c]
            else:
                for c in range(n):
                    g[c] = r * g[c] - e_coef
            g[t] -= b
    return loss, z


@njit(**POINT_OPTIONS)
def _tasks(rows, classes):
    """Rows per parallel task (about ``TASK_ELEMENTS`` elements) and the number of tasks."""
    per_task = max(1, TASK_ELEMENTS // max(classes, 1))
    return per_task, (rows + per_task - 1) // per_task


@njit(**POINT_OPTIONS)
def _zero_row(grad, i, want_grad):
    """The gradient row of an ignored sample: zeros."""
    full_width()
    if want_grad:
        zero = grad.dtype.type(0)
        for c in range(grad.shape[1]):
            grad[i, c] = zero


def _index_rows(
    logits,
    target,
    weight,
    has_weight,
    weight_sum,
    ignore_index,
    smoothing,
    softcap,
    z_scale,
    alpha,
    gamma,
    mode,
    grad_scale,
    z_grad_scale,
    grad,
    row_loss,
    row_z,
):
    full_width()
    rows, classes = logits.shape
    want_grad = grad.shape[0] == rows
    use_cap = softcap > 0
    per_task, tasks = _tasks(rows, classes)
    for k in prange(tasks):
        full_width()
        scratch = np.empty(classes if use_cap and not want_grad else 0, logits.dtype)
        for i in range(k * per_task, min(rows, (k + 1) * per_task)):
            t = np.int64(target[i])
            if t == ignore_index:
                row_loss[i] = 0.0
                row_z[i] = 0.0
                _zero_row(grad, i, want_grad)
                continue
            g = grad[i] if want_grad else grad[0:0].reshape(-1)
            loss, z = _index_row(
                logits[i],
                t,
                weight,
                has_weight,
                weight_sum,
                smoothing,
                softcap,
                use_cap,
                z_scale,
                alpha,
                gamma,
                mode,
                grad_scale,
                z_grad_scale,
                want_grad,
                g,
                scratch,
            )
            row_loss[i] = loss
            row_z[i] = z


index_rows_serial, index_rows_parallel = serial_and_parallel(_index_rows, KERNEL_OPTIONS)


def _prob_rows(
    logits,
    target,
    weight,
    has_weight,
    smoothing,
    spread,
    z_scale,
    grad_scale,
    z_grad_scale,
    grad,
    row_loss,
    row_z,
):
    """Cross-entropy with class probabilities ``target`` (rows like ``logits``):
    ``loss = sum_c w_c y'_c (lse - x_c) + z_scale lse**2``, ``y' = (1 - smoothing) y + spread``
    (``spread`` is ``smoothing / C``, or Keras's count); ``grad_c = p_c (sum_c w_c y'_c +
    2 z_scale lse) - w_c y'_c``."""
    full_width()
    rows, classes = logits.shape
    want_grad = grad.shape[0] == rows
    per_task, tasks = _tasks(rows, classes)
    for k in prange(tasks):
        full_width()
        for i in range(k * per_task, min(rows, (k + 1) * per_task)):
            x = logits[i]
            y = target[i]
            one = const(x[0], 1.0)
            keep = one - smoothing
            m = row_max(x)
            s1 = const(m, 0.0)
            s2 = const(m, 0.0)
            for c in range(classes):
                yc = keep * y[c] + spread
                if has_weight:
                    yc = yc * weight[c]
                s1 += yc
                s2 += yc * (x[c] - m)
            # last: with the gradient written into the logits, x is gone after this
            s = _exp_sum(x, m, grad[i] if want_grad else x, want_grad)
            log_s = log(s)
            lse = m + log_s
            z = z_scale * lse * lse if z_scale != 0 else const(m, 0.0)
            row_loss[i] = (log_s * s1 - s2) + z
            row_z[i] = z
            if want_grad:
                z_grad = z_grad_scale * (z_scale + z_scale) * lse if z_scale != 0 else const(m, 0.0)
                r = (grad_scale * s1 + z_grad) / s
                for c in range(classes):
                    yc = keep * y[c] + spread
                    if has_weight:
                        yc = yc * weight[c]
                    grad[i, c] = r * grad[i, c] - grad_scale * yc


prob_rows_serial, prob_rows_parallel = serial_and_parallel(_prob_rows, KERNEL_OPTIONS)


def _nll_rows(logp, target, weight, has_weight, ignore_index, grad_scale, grad, row_loss):
    """Negative log-likelihood of log-probabilities: ``loss_i = -w_t x_{i,t}``; the gradient
    is ``-grad_scale * w_t`` at the target and 0 elsewhere."""
    full_width()
    rows, classes = logp.shape
    want_grad = grad.shape[0] == rows
    per_task, tasks = _tasks(rows, classes)
    for k in prange(tasks):
        full_width()
        for i in range(k * per_task, min(rows, (k + 1) * per_task)):
            t = np.int64(target[i])
            if t == ignore_index:
                row_loss[i] = 0.0
                _zero_row(grad, i, want_grad)
                continue
            w_t = weight[t] if has_weight else logp.dtype.type(1)
            row_loss[i] = -(w_t * logp[i, t])  # before the row is zeroed: grad may be logp
            _zero_row(grad, i, want_grad)
            if want_grad:
                grad[i, t] = -grad_scale * w_t


nll_rows_serial, nll_rows_parallel = serial_and_parallel(_nll_rows, KERNEL_OPTIONS)


# --- Keras's probability cross-entropies ---------------------------------------------------
# Keras (categorical, sparse categorical and categorical focal cross-entropy with
# ``from_logits=False``, focal also with logits) renormalises the predictions by their sum,
# clips them to [eps, 1 - eps] and takes their log; the gradient follows the clip (0 outside
# the range), the renormalisation and, for focal with logits, the softmax.

KERAS_CROSSENTROPY = 0
KERAS_FOCAL = 1


@njit(**POINT_OPTIONS)
def _keras_row(
    x,
    y,
    t,
    sparse,
    from_logits,
    mode,
    smoothing,
    spread,
    alpha,
    gamma,
    low,
    high,
    scale,
    want_grad,
    g,
    work,
):
    """Loss of one row; the gradient (times ``scale``) into ``g``; ``work`` holds the
    derivative with respect to each clipped probability."""
    full_width()
    n = x.size
    zero = const(x[0], 0.0)
    one = const(x[0], 1.0)
    keep = one - smoothing
    if not from_logits and mode == KERAS_CROSSENTROPY:
        return _keras_crossentropy_row(
            x, y, t, sparse, keep, spread, low, high, scale, want_grad, g, work
        )
    m = zero
    s = one
    if from_logits:
        m = row_max(x)
        s = _exp_sum(x, m, work, False)
    total = zero
    for c in range(n):
        total += (exp_shifted(x[c] - m) / s) if from_logits else x[c]
    loss = zero
    tq = zero
    for c in range(n):
        o = (exp_shifted(x[c] - m) / s) if from_logits else x[c]
        q_raw = o / total
        q = min(max(q_raw, low), high)
        inside = q_raw >= low and q_raw <= high
        if sparse:
            yc = one if c == t else zero
        else:
            yc = keep * y[c] + spread
        lq = log(q)
        if mode == KERAS_FOCAL:
            w, w_down = _pow(one - q, gamma, zero)  # 1 - q >= 1e-7 > 0
            loss += alpha * w * (-yc * lq)
            dq = alpha * (gamma * w_down * yc * lq - w * yc / q)
        else:
            loss -= yc * lq
            dq = -yc / q
        dq = dq if inside else zero
        work[c] = dq
        tq += dq * q_raw
    if want_grad:
        if from_logits:
            u = zero
            for c in range(n):
                u += (work[c] - tq) / total * (exp_shifted(x[c] - m) / s)
            for c in range(n):
                o = exp_shifted(x[c] - m) / s
                g[c] = scale * (o * ((work[c] - tq) / total - u))
        else:
            for c in range(n):
                g[c] = scale * ((work[c] - tq) / total)
    return loss


@njit(**POINT_OPTIONS)
def _keras_crossentropy_row(x, y, t, sparse, keep, spread, low, high, scale, want_grad, g, work):
    """:func:`_keras_row` of the cross-entropies on probabilities, in loops LLVM vectorises
    (no per-element branch); a sparse target needs only the row's sum and its target."""
    full_width()
    n = x.size
    zero = const(x[0], 0.0)
    one = const(x[0], 1.0)
    total = zero
    for c in range(n):
        total += x[c]
    if sparse:
        q_raw = x[t] / total
        q = min(max(q_raw, low), high)
        loss = -log(q)
        dq = -one / q if (q_raw >= low) & (q_raw <= high) else zero
        tq = dq * q_raw
        if want_grad:
            rest = scale * ((zero - tq) / total)
            for c in range(n):
                g[c] = rest
            g[t] = scale * ((dq - tq) / total)
        return loss
    loss = zero
    tq = zero
    for c in range(n):
        q_raw = x[c] / total
        q = min(max(q_raw, low), high)
        yc = keep * y[c] + spread
        loss -= yc * log(q)
        dq = -yc / q
        dq = dq if (q_raw >= low) & (q_raw <= high) else zero
        work[c] = dq
        tq += dq * q_raw
    if want_grad:
        for c in range(n):
            g[c] = scale * ((work[c] - tq) / total)
    return loss


def _keras_rows(
    probs,
    target,
    index,
    sparse,
    from_logits,
    mode,
    smoothing,
    spread,
    alpha,
    gamma,
    low,
    high,
    ignore_class,
    grad_scale,
    grad,
    row_loss,
):
    """Keras's cross-entropies of ``probs`` rows against probability rows ``target`` or, when
    ``sparse``, class indices ``index`` (rows of class ``ignore_class`` give 0)."""
    full_width()
    rows, classes = probs.shape
    want_grad = grad.shape[0] == rows
    per_task, tasks = _tasks(rows, classes)
    for k in prange(tasks):
        full_width()
        work = np.empty(classes, probs.dtype)
        for i in range(k * per_task, min(rows, (k + 1) * per_task)):
            t = np.int64(index[i]) if sparse else np.int64(0)
            if sparse and t == ignore_class:
                row_loss[i] = 0.0
                _zero_row(grad, i, want_grad)
                continue
            g = grad[i] if want_grad else grad[0:0].reshape(-1)
            y = target[0] if sparse else target[i]
            row_loss[i] = _keras_row(
                probs[i],
                y,
                t,
                sparse,
                from_logits,
                mode,
                smoothing,
                spread,
                alpha,
                gamma,
                low,
                high,
                grad_scale,
                want_grad,
                g,
                work,
            )


keras_rows_serial, keras_rows_parallel = serial_and_parallel(_keras_rows, KERNEL_OPTIONS)
