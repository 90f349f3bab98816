"""What the softmax family's device path needs besides its row kernels: the class-index check,
the layout move of torch's ``(N, C, d1, ..., dk)`` logits and the reduction of a loss with a
z-loss beside it.

The losses themselves are the :class:`~fastloss.kernels.rows.RowSpec` declarations of
:mod:`fastloss.kernels.softmax`, compiled for the device by :mod:`fastloss.kernels.cuda.rows`;
nothing here computes a loss. The kernels:

``check_targets``  one block over the class indices: the first position whose index is out of
                   ``[0, C)`` and not skipped (``ignore_index``; Keras's ``ignore_class`` and
                   -100), that index, the count of rows not skipped, the sum of their classes'
                   weights (a weighted mean's denominator), the sum of the class weights and
                   the count of ``ignore_index`` rows (Keras's masked ones), into one small
                   float64 array (copied to the host once: the call's only synchronisation),
                   and the indices as int64 for the row kernels;
``swap_last``      ``dst[n, a, b] = src[n, b, a]``, cast to ``dst``'s dtype: the class axis of
                   ``(N, C, D)`` moved last (``(N, D, C)``, a row per position) and back;
``finalize``       one block: the sums of the per-row losses and z-losses in a fixed order
                   (thread ``t`` adds rows ``t, t + THREADS, ...``, then a fixed tree), divided
                   by their denominators (host floats), the loss rounded as the CPU's is.

No floating-point atomics: every sum is in an order fixed by the indices and the block size.
The kernels read their block size at run time (shared arrays of :data:`MAX_THREADS`), so each
compiles once per signature and caches on disk. Under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) they run as Python.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from numba import cuda, float64, int64

from fastloss.kernels._cache import enabled

CACHE = enabled()

# Threads per block of these kernels: a power of two (the trees halve it), at most MAX_THREADS,
# the size of the shared arrays.
THREADS_PER_BLOCK = 256
MAX_THREADS = 256

# the entries of check_targets' verdict
BAD, HIGH, LOW, COUNT, TOTAL, WEIGHT_SUM, MASKED = range(7)
VERDICT = 7


@cuda.jit(device=True)
def _sum_tree2(a, b, t, threads):
    """Fixed-shape tree sums of the shared arrays ``a`` and ``b``; entry 0 of each holds its
    total afterwards, visible to every thread."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            a[t] += a[t + h]
            b[t] += b[t + h]
        cuda.syncthreads()
        h //= 2


@cuda.jit(device=True)
def _sum_tree4(a, b, c, d, t, threads):
    """:func:`_sum_tree2` of four shared arrays."""
    cuda.syncthreads()
    h = threads // 2
    while h > 0:
        if t < h:
            a[t] += a[t + h]
            b[t] += b[t + h]
            c[t] += c[t + h]
            d[t] += d[t + h]
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


@cuda.jit(cache=CACHE)
def check_targets(target, classes, ignore_index, also, unsigned, weight, has_weight, copy, flat,
                  info):  # fmt: skip
    """One block. ``info``: the verdict (entries :data:`BAD` ... :data:`MASKED`): the first
    bad position (-1 if none) and the high and low 32 bits of its index, the count of the rows
    whose index is neither ``ignore_index`` nor ``also`` (the label skipped beside it, Keras's
    -100; ``ignore_index`` again for none), the sum of their classes' weights (their count
    without weights), the sum of ``weight`` and the count of the rows of ``ignore_index``. A
    ``unsigned`` (uint64) index beyond int64 reads as a negative one and is bad, whatever the
    labels skipped. With ``copy``, ``flat`` receives the indices as int64, ``ignore_index``
    written as ``also`` (the one label the row kernels skip)."""
    count_acc = cuda.shared.array(MAX_THREADS, float64)
    total_acc = cuda.shared.array(MAX_THREADS, float64)
    weight_acc = cuda.shared.array(MAX_THREADS, float64)
    masked_acc = cuda.shared.array(MAX_THREADS, float64)
    bad_acc = cuda.shared.array(MAX_THREADS, int64)
    t = cuda.threadIdx.x
    n = target.size
    first = n
    count = 0.0
    total = 0.0
    masked = 0.0
    for j in range(t, n, cuda.blockDim.x):
        v = int64(target[j])
        beyond = unsigned and v < 0
        if not beyond and v == ignore_index:
            masked += 1.0
            if copy:
                flat[j] = also
            continue
        if copy:
            flat[j] = v
        if not beyond and v == also:
            continue
        if v < 0 or v >= classes:
            first = j  # the first of this thread's positions: the smallest
            break
        count += 1.0
        total += float64(weight[v]) if has_weight else 1.0
    wsum = 0.0
    if has_weight:
        for c in range(t, classes, cuda.blockDim.x):
            wsum += float64(weight[c])
    count_acc[t] = count
    total_acc[t] = total
    weight_acc[t] = wsum
    masked_acc[t] = masked
    bad_acc[t] = first
    _sum_tree4(count_acc, total_acc, weight_acc, masked_acc, t, cuda.blockDim.x)
    _min_tree(bad_acc, t, cuda.blockDim.x)
    if t == 0:
        b = bad_acc[0]
        value = int64(0)
        if b < n:
            value = int64(target[b])
        info[BAD] = float64(b) if b < n else -1.0
        info[HIGH] = float64(value >> 32)
        info[LOW] = float64(value & 0xFFFFFFFF)
        info[COUNT] = count_acc[0]
        info[TOTAL] = total_acc[0]
        info[WEIGHT_SUM] = weight_acc[0] if has_weight else float64(classes)
        info[MASKED] = masked_acc[0]


@cuda.jit(cache=CACHE)
def swap_last(src, dst):
    """``dst[n, a, b] = src[n, b, a]`` in ``dst``'s dtype (a thread per element of ``dst``)."""
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if k < dst.size:
        width = dst.shape[2]
        height = dst.shape[1]
        b = k % width
        q = k // width
        a = q % height
        n = q // height
        dst[n, a, b] = src[n, b, a]


@cuda.jit(cache=CACHE)
def finalize(row_loss, row_z, split, denominator, z_denominator, loss, z):
    """One block: ``z = sum(row_z) / z_denominator``; ``loss = sum(row_loss) / denominator``,
    or with ``split`` (a mean with a z-loss, whose rows already hold their z-loss) the mean
    of ``row_loss - row_z`` and ``z`` each rounded to ``loss``'s dtype, then added in it (as
    the CPU adds them). 0-d results; sums in a fixed order."""
    acc = cuda.shared.array(MAX_THREADS, float64)
    acc_z = cuda.shared.array(MAX_THREADS, float64)
    t = cuda.threadIdx.x
    s = 0.0
    sz = 0.0
    for j in range(t, row_loss.size, cuda.blockDim.x):
        s += row_loss[j] - row_z[j] if split else row_loss[j]
        sz += row_z[j]
    acc[t] = s
    acc_z[t] = sz
    _sum_tree2(acc, acc_z, t, cuda.blockDim.x)
    if t == 0:
        zv = _divide(acc_z[0], z_denominator)
        value = _divide(acc[0], denominator)
        z[()] = zv
        if split:
            loss[()] = loss.dtype.type(value) + loss.dtype.type(zv)
        else:
            loss[()] = value


_KERNEL_NAMES = ("check_targets", "swap_last", "finalize")


def kernels(threads_per_block: int | None = None) -> SimpleNamespace:
    """The kernels (``check_targets``, ``swap_last``, ``finalize``), the entries of the
    verdict (``BAD``, ..., ``VERDICT`` its size) and ``threads``, the block size to launch them
    with (default :data:`THREADS_PER_BLOCK`, read at the call; tests shrink it)."""
    threads = int(THREADS_PER_BLOCK if threads_per_block is None else threads_per_block)
    if threads < 1 or threads > MAX_THREADS or threads & (threads - 1):
        raise ValueError(
            f"threads_per_block: expected a power of two <= {MAX_THREADS}, got {threads}"
        )
    found = {name: globals()[name] for name in _KERNEL_NAMES}
    entries = {"BAD": BAD, "HIGH": HIGH, "LOW": LOW, "COUNT": COUNT, "TOTAL": TOTAL}
    entries.update(WEIGHT_SUM=WEIGHT_SUM, MASKED=MASKED, VERDICT=VERDICT)
    return SimpleNamespace(threads=threads, **found, **entries)
