"""The CUDA twin of :mod:`fastloss.kernels.softmax`: row kernels of cross-entropy, NLL and focal
loss, one thread block per row.

The logits come as an ``(N, C, D)`` array: torch's ``(N, C, d1, ..., dk)`` with the trailing
dimensions flattened (``D = 1`` for ``(N, C)``), without a copy. Row ``i`` (position
``(i // D, :, i % D)``) is done by block ``i``; thread ``t`` of the block owns the classes
``t, t + THREADS, t + 2 THREADS, ...`` of the row (adjacent threads read adjacent elements when
``D = 1``: coalesced), so a row of any length (a 256k vocabulary) runs with the fixed block size
:data:`THREADS_PER_BLOCK`. The class-index kernel (``index_rows``) reads a row twice:

1. online softmax: each thread keeps a running maximum of the (soft-capped) logits and the
   float64 sum of ``exp(y - maximum)``, rescaled when the maximum grows; the per-thread
   (maximum, sum) pairs combine in a fixed-shape tree (NaN propagates, as on the CPU). With
   label smoothing one more read sums ``w_c (m - y_c)``;
2. the row's loss, z-loss and gradient coefficients ``A, B, E`` (in float64, the CPU kernel's
   formulas), then the gradient ``A e_c / s - E w_c - B [c = t]`` written once per element
   (times ``1 - (y_c / softcap)^2`` with a softcap), ``exp`` and ``tanh`` recomputed.

The probability-target, NLL and Keras kernels take the maximum and the sums in separate reads.

The gradient may be written into the logits themselves: a thread reads an element in every sweep
before it writes it in the last one, and the only element read by other threads (the target's
logit, and the row's first element for its dtype) is read by every thread before the first
barrier, which comes before any write.

Per-row losses go to float64 arrays; :func:`kernels`' ``finalize`` (one block) adds them in a
fixed order (thread ``t`` adds rows ``t, t + THREADS, ...``, then the tree) and divides by the
denominators held in a small float64 device array ``norm`` = ``[loss denominator, z-loss
denominator, sum of the class weights]``, written by ``check_targets`` (one block, a pre-pass
over the integer targets that also finds the first out-of-range class index) or ``set_norm``.
No floating-point atomics: every addition happens in an order fixed by the indices and by
``THREADS``, so results are bitwise reproducible run to run for a given compiled kernel.

Math is libdevice's (``expf``/``exp``, ``logf``, ``tanhf``, ``pow``) without fast math. The
kernels read their block size at run time (shared arrays of :data:`MAX_THREADS`), so each is
compiled once per signature and cached on disk (``cache=True``).
Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) they run as Python.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from numba import cuda, float64, int64

from fastloss.kernels._cache import enabled
from fastloss.kernels.scalar import const

CACHE = enabled()

# Threads per block of every launch: a power of two (the tree reductions halve it), at most
# MAX_THREADS, the size of the shared arrays (the kernels read the block size at run time, so
# one compiled kernel serves every size and can be cached on disk).
THREADS_PER_BLOCK = 256
MAX_THREADS = 256

CROSS_ENTROPY = 0
FOCAL = 1


@cuda.jit(device=True)
def _sum_tree(acc, t, threads):
    """Fixed-shape tree sum of the shared array ``acc``; ``acc[0]`` holds the total after it,
    visible to every thread."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            acc[t] += acc[t + h]
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _sum_tree3(a, b, c, t, threads):
    """:func:`_sum_tree` of three shared arrays at once."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            a[t] += a[t + h]
            b[t] += b[t + h]
            c[t] += c[t + h]
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _max_tree(acc, t, threads):
    """Fixed-shape tree maximum of ``acc`` (NaN wins); ``acc[0]`` holds it afterwards."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            b = acc[t + h]
            if b > acc[t] or b != b:
                acc[t] = b
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _online_tree(acc_max, acc_sum, t, threads):
    """Fixed-shape tree over (running maximum, sum of exp(y - maximum)) pairs: the row's
    maximum in ``acc_max[0]`` (NaN wins) and its exponential sum in ``acc_sum[0]``."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            ma = acc_max[t]
            mb = acc_max[t + h]
            mm = mb if (mb > ma or mb != mb) else ma
            if mm == -math.inf:
                acc_sum[t] = 0.0
            else:
                acc_sum[t] = acc_sum[t] * math.exp(ma - mm) + acc_sum[t + h] * math.exp(mb - mm)
            acc_max[t] = mm
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _min_tree(acc, t, threads):
    """Fixed-shape tree minimum of the integer array ``acc``."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            b = acc[t + h]
            if b < acc[t]:
                acc[t] = b
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _divide(total, denominator):
    """``total / denominator`` with IEEE results for a zero denominator (as torch divides)."""
    if denominator != 0.0:
        return total / denominator
    if total != total or total == 0.0:
        return math.nan
    return math.copysign(math.inf, total)


@cuda.jit(device=True)
def _inverse(denominator):
    """The gradient scale ``1 / denominator`` (inf for 0, as the CPU path)."""
    return 1.0 / denominator if denominator != 0.0 else math.inf


@cuda.jit(cache=CACHE)
def check_targets(target, classes, ignore_index, weight, has_weight, mean, mean_over, info, norm):
    """One block. ``info = [first bad position or -1, its class index]``; ``norm`` =
    ``[loss denominator, z-loss denominator, sum of the class weights]``: for a mean, the
    sum of the weights of the targets not ignored (their count without weights) or
    ``mean_over`` when it is >= 0, and their count; 1 and 1 otherwise."""
    count_acc = cuda.shared.array(MAX_THREADS, float64)
    total_acc = cuda.shared.array(MAX_THREADS, float64)
    weight_acc = cuda.shared.array(MAX_THREADS, float64)
    bad_acc = cuda.shared.array(MAX_THREADS, int64)
    t = cuda.threadIdx.x
    n = target.size
    first = n
    count = 0.0
    total = 0.0
    for j in range(t, n, cuda.blockDim.x):
        v = int64(target[j])
        if v == ignore_index:
            continue
        if v < 0 or v >= classes:
            first = j  # the first of this thread's positions: the smallest
            break
        count += 1.0
        if has_weight:
            total += float64(weight[v])
        else:
            total += 1.0
    wsum = 0.0
    if has_weight:
        for c in range(t, classes, cuda.blockDim.x):
            wsum += float64(weight[c])
    count_acc[t] = count
    total_acc[t] = total
    weight_acc[t] = wsum
    bad_acc[t] = first
    _sum_tree3(count_acc, total_acc, weight_acc, t, cuda.blockDim.x)
    _min_tree(bad_acc, t, cuda.blockDim.x)
    if t == 0:
        b = bad_acc[0]
        if b < n:
            info[0] = b
            info[1] = int64(target[b])
        else:
            info[0] = -1
            info[1] = 0
        count = count_acc[0]
        if mean:
            den = total_acc[0] if has_weight else count
            if mean_over >= 0.0:
                den = mean_over
            norm[0] = den
            norm[1] = count
        else:
            norm[0] = 1.0
            norm[1] = 1.0
        norm[2] = weight_acc[0] if has_weight else float64(classes)


@cuda.jit(cache=CACHE)
def set_norm(norm, denominator, z_denominator, weight_sum):
    if cuda.threadIdx.x == 0 and cuda.blockIdx.x == 0:
        norm[0] = denominator
        norm[1] = z_denominator
        norm[2] = weight_sum


@cuda.jit(cache=CACHE)
def index_rows(
    x,
    target,
    weight,
    has_weight,
    ignore_index,
    smoothing,
    softcap,
    z_scale,
    alpha,
    gamma,
    mode,
    norm,
    want_grad,
    grad,
    row_ce,
    row_z,
):
    """Cross-entropy (``mode`` 0) or focal loss (1) of row ``blockIdx.x`` against its class
    index: ``row_ce`` gets the loss without the z-loss, ``row_z`` the z-loss, ``grad`` the
    gradient of ``norm``-scaled losses (when ``want_grad``)."""
    acc = cuda.shared.array(MAX_THREADS, float64)
    acc2 = cuda.shared.array(MAX_THREADS, float64)
    i = cuda.blockIdx.x
    row_n = i // x.shape[2]  # row i is position (row_n, :, row_j) of (N, C, D)
    row_j = i - row_n * x.shape[2]
    t = cuda.threadIdx.x
    n = x.shape[1]
    zero = const(softcap, 0.0)
    one = const(softcap, 1.0)
    tgt = int64(target[i])
    ignored = tgt == ignore_index
    x_t = zero
    if not ignored:
        x_t = x[row_n, tgt, row_j]  # read by every thread before anything is written
    cuda.syncthreads()
    if ignored:
        if want_grad:
            for c in range(t, n, cuda.blockDim.x):
                grad[row_n, c, row_j] = zero
        if t == 0:
            row_ce[i] = 0.0
            row_z[i] = 0.0
        return
    use_cap = softcap > zero
    inv_cap = one / softcap if use_cap else one
    if use_cap:
        x_t = softcap * math.tanh(x_t * inv_cap)
    # sweep 1, online softmax: each thread keeps a running maximum and the sum of
    # exp(y - running maximum), rescaled when the maximum grows; the (max, sum) pairs then
    # combine in a fixed tree. One read of the row for both.
    m = -math.inf
    s = 0.0
    for c in range(t, n, cuda.blockDim.x):
        y = x[row_n, c, row_j]
        if use_cap:
            y = softcap * math.tanh(y * inv_cap)
        v = float64(y)
        if v > m or v != v:
            s = s * math.exp(m - v) + 1.0  # m = -inf: s is 0; v NaN: s is NaN
            m = v
        elif v != -math.inf:  # -inf logits (masks) add 0
            s += float64(math.exp(y - const(softcap, m)))
    acc[t] = m
    acc2[t] = s
    _online_tree(acc, acc2, t, cuda.blockDim.x)
    m = acc[0]
    s = acc2[0]
    cuda.syncthreads()  # everyone has m and s before the arrays are reused
    m_d = const(softcap, m)
    # sweep 2, label smoothing only: sum_c w_c (m - y_c)
    shifted = 0.0
    if smoothing != zero:
        for c in range(t, n, cuda.blockDim.x):
            y = x[row_n, c, row_j]
            if use_cap:
                y = softcap * math.tanh(y * inv_cap)
            if has_weight:  # no inf * 0 at the maxima (as on the CPU)
                if m_d != y:
                    shifted += float64(weight[c] * (m_d - y))
            else:
                shifted += float64(m_d - y)
        acc2[t] = shifted
        _sum_tree(acc2, t, cuda.blockDim.x)
        shifted = acc2[0]
    # the row's loss and gradient coefficients, in float64 (the CPU kernel's formulas)
    grad_scale = _inverse(norm[0])
    z_grad_scale = _inverse(norm[1])
    weight_sum = norm[2]
    log_s = math.log(s)
    lse = m + log_s
    w_t = float64(weight[tgt]) if has_weight else 1.0
    nll = log_s + (m - float64(x_t))
    classes = float64(n)
    zs = float64(z_scale)
    sm = float64(smoothing)
    z = zs * lse * lse if zs != 0.0 else 0.0  # 0 * inf is NaN where lse**2 overflows
    e_coef = 0.0
    if mode == FOCAL:
        p_t = math.exp(-nll)
        q = -math.expm1(-nll)  # 1 - p_t without cancellation for confident rows
        g64 = float64(gamma)
        mod = q**g64
        loss = float64(alpha) * mod * nll
        k = mod
        if q > 0.0 and g64 != 0.0:
            k = mod + g64 * (mod / q) * p_t * nll
        k = float64(alpha) * k
        a = grad_scale * k
        b = a
    else:
        loss = (1.0 - sm) * w_t * nll
        a = (1.0 - sm) * w_t
        if sm != 0.0:
            loss += sm / classes * (weight_sum * log_s + shifted)
            a += sm * weight_sum / classes
            e_coef = grad_scale * sm / classes
        a = grad_scale * a
        b = grad_scale * (1.0 - sm) * w_t
    if zs != 0.0:
        a += z_grad_scale * (zs + zs) * lse
    if t == 0:
        row_ce[i] = loss
        row_z[i] = z
    if want_grad:
        r = const(softcap, a / s)
        e_d = const(softcap, e_coef)
        b_d = const(softcap, b)
        for c in range(t, n, cuda.blockDim.x):
            y = x[row_n, c, row_j]
            if use_cap:
                y = softcap * math.tanh(y * inv_cap)
            gc = r * math.exp(y - m_d)
            if has_weight and e_coef != 0.0:  # no 0 * (NaN or inf weight) otherwise
                gc -= e_d * weight[c]
            else:
                gc -= e_d
            if c == tgt:
                gc -= b_d
            if use_cap:
                u = y * inv_cap
                gc = gc * (one - u * u)
            grad[row_n, c, row_j] = gc


@cuda.jit(cache=CACHE)
def prob_rows(x, target, weight, has_weight, smoothing, norm, want_grad, grad, row_ce):
    """Cross-entropy of row ``blockIdx.x`` against the class probabilities ``target[i]``:
    ``loss = sum_c w_c y'_c (lse - x_c)``, ``y' = (1 - smoothing) y + smoothing / C``,
    ``grad_c = p_c sum_k w_k y'_k - w_c y'_c`` (``grad`` must not overlap ``target``)."""
    acc = cuda.shared.array(MAX_THREADS, float64)
    acc1 = cuda.shared.array(MAX_THREADS, float64)
    acc2 = cuda.shared.array(MAX_THREADS, float64)
    i = cuda.blockIdx.x
    row_n = i // x.shape[2]  # row i is position (row_n, :, row_j) of (N, C, D)
    row_j = i - row_n * x.shape[2]
    t = cuda.threadIdx.x
    n = x.shape[1]
    one = const(smoothing, 1.0)
    keep = one - smoothing
    spread = smoothing / const(smoothing, n)
    m = -math.inf
    for c in range(t, n, cuda.blockDim.x):
        v = float64(x[row_n, c, row_j])
        if v > m or v != v:
            m = v
    acc[t] = m
    _max_tree(acc, t, cuda.blockDim.x)
    m = acc[0]
    cuda.syncthreads()
    m_d = const(smoothing, m)
    s = 0.0
    s1 = 0.0
    s2 = 0.0
    for c in range(t, n, cuda.blockDim.x):
        d = x[row_n, c, row_j] - m_d
        yc = keep * target[row_n, c, row_j] + spread
        if has_weight:
            yc = yc * weight[c]
        s += float64(math.exp(d))
        s1 += float64(yc)
        s2 += float64(yc * d)
    acc[t] = s
    acc1[t] = s1
    acc2[t] = s2
    _sum_tree3(acc, acc1, acc2, t, cuda.blockDim.x)
    s = acc[0]
    s1 = acc1[0]
    s2 = acc2[0]
    if t == 0:
        row_ce[i] = math.log(s) * s1 - s2
    if want_grad:
        grad_scale = _inverse(norm[0])
        r = const(smoothing, grad_scale * s1 / s)
        gs = const(smoothing, grad_scale)
        for c in range(t, n, cuda.blockDim.x):
            yc = keep * target[row_n, c, row_j] + spread
            if has_weight:
                yc = yc * weight[c]
            grad[row_n, c, row_j] = r * math.exp(x[row_n, c, row_j] - m_d) - gs * yc


@cuda.jit(cache=CACHE)
def nll_rows(x, target, weight, has_weight, ignore_index, unit, norm, want_grad, grad, row_ce):
    """NLL of log-probability row ``blockIdx.x``: ``-w_t x_t``; gradient ``-w_t / norm[0]``
    at the target, 0 elsewhere (``unit``: 1 in the dtype of ``x``)."""
    i = cuda.blockIdx.x
    row_n = i // x.shape[2]  # row i is position (row_n, :, row_j) of (N, C, D)
    row_j = i - row_n * x.shape[2]
    t = cuda.threadIdx.x
    n = x.shape[1]
    zero = unit - unit
    tgt = int64(target[i])
    if tgt == ignore_index:
        if want_grad:
            for c in range(t, n, cuda.blockDim.x):
                grad[row_n, c, row_j] = zero
        if t == 0:
            row_ce[i] = 0.0
        return
    w_t = weight[tgt] if has_weight else unit
    if t == tgt % cuda.blockDim.x:  # the thread that owns x_t reads it before writing it
        row_ce[i] = -float64(w_t * x[row_n, tgt, row_j])
    if want_grad:
        gv = -const(unit, _inverse(norm[0])) * w_t
        for c in range(t, n, cuda.blockDim.x):
            grad[row_n, c, row_j] = gv if c == tgt else zero


@cuda.jit(cache=CACHE)
def finalize(row_ce, row_z, has_z, norm, loss, z):
    """One block: ``loss = sum(row_ce) / norm[0] (+ sum(row_z) / norm[1] when has_z)``,
    ``z = sum(row_z) / norm[1]``, 0-d arrays, sums in a fixed order."""
    acc = cuda.shared.array(MAX_THREADS, float64)
    acc2 = cuda.shared.array(MAX_THREADS, float64)
    t = cuda.threadIdx.x
    n = row_ce.size
    s = 0.0
    sz = 0.0
    for j in range(t, n, cuda.blockDim.x):
        s += row_ce[j]
        if has_z:
            sz += row_z[j]
    acc[t] = s
    acc2[t] = sz
    _sum_tree(acc, t, cuda.blockDim.x)
    _sum_tree(acc2, t, cuda.blockDim.x)
    if t == 0:
        value = _divide(acc[0], norm[0])
        zv = _divide(acc2[0], norm[1])
        loss[()] = value + zv if has_z else value
        z[()] = zv


@cuda.jit(cache=CACHE)
def rows_out(row_ce, row_z, has_z, loss, z):
    """``reduction="none"``: ``loss[i] = row_ce[i] + row_z[i]``, ``z[i] = row_z[i]``."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i < row_ce.size:
        zv = row_z[i] if has_z else 0.0
        loss[i] = row_ce[i] + zv
        z[i] = zv


# --- Keras's probability cross-entropies -----------------------------------------------------
# The twin of kernels.softmax._keras_rows: Keras renormalises the predictions (or, for the focal
# loss with logits, their softmax) by their sum, clips them to [low, high] and takes their log;
# the gradient follows the clip (0 outside the range), the renormalisation and the softmax.

KERAS_CROSSENTROPY = 0
KERAS_FOCAL = 1


@cuda.jit(device=True)
def _keras_prob(x, c, row_n, row_j, from_logits, m_d, s_d):
    """The prediction ``o_c``: ``x_c``, or ``softmax(x)_c`` with logits."""
    o = x[row_n, c, row_j]
    if from_logits:
        o = math.exp(o - m_d) / s_d
    return o


@cuda.jit(device=True)
def _keras_term(o, total, yc, mode, alpha, gamma, low, high):
    """``(loss term, dloss/dq (0 outside the clip range), q_raw)`` of one class, in the CPU
    kernel's formulas and dtype."""
    zero = low - low
    one = const(low, 1.0)
    q_raw = o / total
    q = min(max(q_raw, low), high)
    inside = q_raw >= low and q_raw <= high
    lq = math.log(q)
    if mode == KERAS_FOCAL:
        d = one - q  # >= 1e-7 > 0
        w = one
        if gamma != zero:
            w = math.exp(gamma * math.log(d))
        w_down = w / d
        term = alpha * w * (-yc * lq)
        dq = alpha * (gamma * w_down * yc * lq - w * yc / q)
    else:
        term = -yc * lq
        dq = -yc / q
    if not inside:
        dq = zero
    return term, dq, q_raw


@cuda.jit(cache=CACHE)
def keras_rows(
    x,
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
    norm,
    want_grad,
    grad,
    row_loss,
):
    """Keras's cross-entropy (``mode`` 0) or focal cross-entropy (1) of row ``blockIdx.x``
    against the probabilities ``target[row]`` (smoothed: ``(1 - smoothing) y + spread``) or,
    when ``sparse``, a one-hot at ``index[i]`` (a row of ``ignore_class`` gives 0 and a zero
    gradient); the gradient of the ``norm[0]``-scaled losses into ``grad`` (when
    ``want_grad``; it must not overlap ``target``). Per-element math in ``x``'s dtype, as the
    CPU kernel; sums in float64 trees."""
    acc = cuda.shared.array(MAX_THREADS, float64)
    acc2 = cuda.shared.array(MAX_THREADS, float64)
    i = cuda.blockIdx.x
    row_n = i // x.shape[2]  # row i is position (row_n, :, row_j) of (N, C, D)
    row_j = i - row_n * x.shape[2]
    t = cuda.threadIdx.x
    n = x.shape[1]
    zero = low - low
    one = const(low, 1.0)
    keep = one - smoothing
    tgt = int64(0)
    if sparse:
        tgt = int64(index[i])
        if tgt == ignore_class:
            if want_grad:
                for c in range(t, n, cuda.blockDim.x):
                    grad[row_n, c, row_j] = zero
            if t == 0:
                row_loss[i] = 0.0
            return
    m_d = zero
    s_d = one
    if from_logits:
        m = -math.inf
        for c in range(t, n, cuda.blockDim.x):
            v = float64(x[row_n, c, row_j])
            if v > m or v != v:
                m = v
        acc[t] = m
        _max_tree(acc, t, cuda.blockDim.x)
        m_d = const(low, acc[0])
        cuda.syncthreads()  # everyone has m before acc is reused
        s = 0.0
        for c in range(t, n, cuda.blockDim.x):
            s += float64(math.exp(x[row_n, c, row_j] - m_d))
        acc[t] = s
        _sum_tree(acc, t, cuda.blockDim.x)
        s_d = const(low, acc[0])
        cuda.syncthreads()
    # the row's sum of predictions
    tot = 0.0
    for c in range(t, n, cuda.blockDim.x):
        tot += float64(_keras_prob(x, c, row_n, row_j, from_logits, m_d, s_d))
    acc[t] = tot
    _sum_tree(acc, t, cuda.blockDim.x)
    total = const(low, acc[0])
    cuda.syncthreads()
    # the loss and tq = sum_c dq_c q_raw_c
    loss = 0.0
    tq = 0.0
    for c in range(t, n, cuda.blockDim.x):
        o = _keras_prob(x, c, row_n, row_j, from_logits, m_d, s_d)
        if sparse:
            yc = one if c == tgt else zero
        else:
            yc = keep * target[row_n, c, row_j] + spread
        term, dq, q_raw = _keras_term(o, total, yc, mode, alpha, gamma, low, high)
        loss += float64(term)
        tq += float64(dq * q_raw)
    acc[t] = loss
    acc2[t] = tq
    _sum_tree(acc, t, cuda.blockDim.x)
    _sum_tree(acc2, t, cuda.blockDim.x)
    if t == 0:
        row_loss[i] = acc[0]
    tq_d = const(low, acc2[0])
    if not want_grad:
        return
    cuda.syncthreads()
    u_d = zero
    if from_logits:  # u = sum_c (dq_c - tq) / total * o_c
        u = 0.0
        for c in range(t, n, cuda.blockDim.x):
            o = _keras_prob(x, c, row_n, row_j, from_logits, m_d, s_d)
            if sparse:
                yc = one if c == tgt else zero
            else:
                yc = keep * target[row_n, c, row_j] + spread
            term, dq, q_raw = _keras_term(o, total, yc, mode, alpha, gamma, low, high)
            u += float64((dq - tq_d) / total * o)
        acc[t] = u
        _sum_tree(acc, t, cuda.blockDim.x)
        u_d = const(low, acc[0])
    scale = const(low, _inverse(norm[0]))
    for c in range(t, n, cuda.blockDim.x):
        o = _keras_prob(x, c, row_n, row_j, from_logits, m_d, s_d)
        if sparse:
            yc = one if c == tgt else zero
        else:
            yc = keep * target[row_n, c, row_j] + spread
        term, dq, q_raw = _keras_term(o, total, yc, mode, alpha, gamma, low, high)
        if from_logits:
            gc = scale * (o * ((dq - tq_d) / total - u_d))
        else:
            gc = scale * ((dq - tq_d) / total)
        grad[row_n, c, row_j] = gc


@cuda.jit(cache=CACHE)
def masked_norm(norm):
    """Keras's masked mean: a zero denominator (every row masked) becomes inf, so the mean
    is 0 and the gradient scale 0 (the z-loss's too: Keras has none)."""
    if cuda.threadIdx.x == 0 and cuda.blockIdx.x == 0:
        if norm[0] == 0.0:
            norm[0] = math.inf
        if norm[1] == 0.0:
            norm[1] = math.inf


_KERNEL_NAMES = (
    "check_targets",
    "set_norm",
    "index_rows",
    "prob_rows",
    "nll_rows",
    "finalize",
    "rows_out",
    "keras_rows",
    "masked_norm",
)


def kernels(threads_per_block: int | None = None) -> SimpleNamespace:
    """The kernels (``check_targets``, ``set_norm``, ``index_rows``, ``prob_rows``, ``nll_rows``,
    ``finalize``, ``rows_out``, ``keras_rows``, ``masked_norm``) and ``threads``, the block
    size to launch them with (default :data:`THREADS_PER_BLOCK`, read at the call; tests
    shrink it)."""
    threads = int(THREADS_PER_BLOCK if threads_per_block is None else threads_per_block)
    if threads < 1 or threads > MAX_THREADS or threads & (threads - 1):
        raise ValueError(
            f"threads_per_block: expected a power of two <= {MAX_THREADS}, got {threads}"
        )
    found = {name: globals()[name] for name in _KERNEL_NAMES}
    return SimpleNamespace(threads=threads, **found)
