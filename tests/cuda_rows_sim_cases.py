"""The row factory's CUDA target under Numba's CUDA simulator (run by
``tests/test_cuda_suites.py`` in a pytest process of its own)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_rows_sim_cases.py

Every device result of ``cosine_embedding_loss`` and ``triplet_margin_loss`` (loss and
gradients) is compared with the CPU result of the same call of :mod:`fastloss.pairwise` (itself
tested against torch in ``tests/test_pairwise.py``), to a few ulps: the GPU adds a row's columns
in per-thread strides and a tree, the CPU in its 16 lanes. A spec declared here (a max sweep, a
sum sweep that reads the max, a per-row input, one gradient) checks the generated kernels
against the CPU factory's directly. Threads per block are shrunk to 4 and a short row's threads
to 2 for rows of up to 8 columns (the elementwise launch shape, which the final reduction uses,
to 4 x 2), so rows of 1, 3 and 7 columns take 2 threads, 2 rows a block (one left idle by an odd
row count), and a row of 9 a block, in three strides; the simulator runs each CUDA thread as a
Python thread, so inputs stay tiny.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from cuda_softmax_sim_cases import assert_close, host  # noqa: E402
from numba import cuda, njit  # noqa: E402

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
from fastloss import pairwise  # noqa: E402
from fastloss._intake import is_device_array  # noqa: E402
from fastloss.kernels import rows as cpu_rows  # noqa: E402
from fastloss.kernels._jit import POINT_OPTIONS  # noqa: E402

THREADS = 4
cuda_rows.THREADS_PER_BLOCK = THREADS
cuda_rows.WARP_THREADS = 2  # rows of up to 8 columns: 2 threads, 2 rows per block
cuda_rows.SHORT_ROW = 8
cuda_factory.THREADS_PER_BLOCK = THREADS
cuda_factory.ITEMS_PER_THREAD = 2

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")
ULPS = 4

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def dev(values):
    return [cuda.to_device(v) for v in values]


def check(got, want, dtype, what):
    """A device result (loss, or (loss, gradients)) against the CPU's, to ``ULPS`` ulps."""
    if isinstance(want, tuple):
        loss, grads = got
        assert isinstance(grads, tuple) and len(grads) == len(want[1]), what
        assert is_device_array(loss) and all(is_device_array(g) for g in grads), what
        for j, (g, w) in enumerate(zip(grads, want[1], strict=True)):
            assert host(g).dtype == w.dtype, f"{what}: grad {j} dtype"
            assert_close(g, w, w.dtype, w.size, f"{what}: grad {j}", ULPS)
        got, want = loss, want[0]
    assert is_device_array(got), what
    assert_close(got, want, dtype, np.size(want), f"{what}: loss", ULPS)


def embeddings(count, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(count)]


def labels(rows, seed):
    y = np.random.default_rng(seed).choice([-1.0, 1.0], rows)
    if rows > 2:
        y[2] = 0.0  # neither 1 nor -1: no loss
    return y


def cosine_both(x1, x2, y, device_y=None, **kwargs):
    """The CPU and the device result of one call of cosine_embedding_loss."""
    want = pairwise.cosine_embedding_loss(x1, x2, y, **kwargs)
    y_dev = dev([y])[0] if device_y is None else device_y
    return pairwise.cosine_embedding_loss(*dev([x1, x2]), y_dev, **kwargs), want


def triplet_both(arrays, **kwargs):
    want = pairwise.triplet_margin_loss(*arrays, **kwargs)
    return pairwise.triplet_margin_loss(*dev(arrays), **kwargs), want


# --- cosine embedding ------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [1, 3, 7, 9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_cosine(dtype, reduction, columns):
    x1, x2 = embeddings(2, (5, columns), dtype, seed=columns)
    x2[1] = x1[1]  # cos = 1: the hinge of target -1 on its far side
    y = labels(5, seed=columns)
    margin = {1: 0.0, 3: 0.3, 7: -0.5, 9: 0.1}[columns]
    got, want = cosine_both(x1, x2, y, margin=margin, reduction=reduction, return_grad=True)
    check(got, want, dtype, f"cosine {columns} columns")


@pytest.mark.parametrize("margin", [0.0, 0.5, -0.9])
def test_cosine_forward_only(margin):
    x1, x2 = embeddings(2, (6, 5), np.float32, seed=2)
    y = -np.ones(6, np.int64)  # integer labels, cast to float64 on the device
    got, want = cosine_both(x1, x2, y, margin=margin)
    assert got.shape == ()
    check(got, want, np.float32, "cosine forward")


def test_cosine_single_pair_scalar_targets():
    """1-D inputs: a 0-d per-row result; the target a Python scalar or a 0-d device array."""
    x1, x2 = embeddings(2, (7,), np.float64, seed=3)
    for y, device_y in ((-1.0, -1.0), (1, 1), (np.array(1.0), dev([np.array(1.0)])[0])):
        got, want = cosine_both(x1, x2, y, device_y, reduction="none", return_grad=True)
        assert got[0].shape == () and got[1][0].shape == (7,)
        check(got, want, np.float64, f"cosine single pair, target {y!r}")


# --- triplet margin ----------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True], ids=["plain", "swap"])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_triplet(dtype, reduction, p, swap):
    arrays = embeddings(3, (6, 7), dtype, seed=int(p))
    arrays[2][3] = arrays[1][3]  # d(a, n) = d(a, p): the swap's tie splits the gradient
    margin = 1.0 if p != 1.0 else 4.0
    got, want = triplet_both(
        arrays, margin=margin, p=p, swap=swap, reduction=reduction, return_grad=True
    )
    check(got, want, dtype, f"triplet p={p} swap={swap}")


@pytest.mark.parametrize("columns", [1, 3, 9])
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_triplet_columns_and_margins(dtype, columns):
    arrays = embeddings(3, (5, columns), dtype, seed=10 + columns)
    for margin, eps in ((0.0, 1e-6), (-0.3, 0.0), (2.0, 1e-3)):
        got, want = triplet_both(arrays, margin=margin, eps=eps, p=2.5, swap=True,
                                 reduction="sum", return_grad=True)  # fmt: skip
        check(got, want, dtype, f"triplet {columns} columns margin {margin}")
        got, want = triplet_both(arrays, margin=margin, eps=eps, reduction="none")
        check(got, want, dtype, f"triplet forward {columns} columns margin {margin}")


def test_triplet_edge_rows():
    """Zero distances (the norm's gradient masked), NaN rows, an overflowing square."""
    a, pos, neg = embeddings(3, (4, 5), np.float64, seed=20)
    pos[0] = a[0]  # d(a, p) = ||eps|| (eps = 0 below): a zero norm
    neg[1, 2] = np.nan
    a[2, 0] = 1e200  # the p = 2 squares overflow to inf
    for swap in (False, True):
        got, want = triplet_both([a, pos, neg], eps=0.0, swap=swap, reduction="none",
                                 return_grad=True)  # fmt: skip
        np.testing.assert_array_equal(np.isnan(host(got[0])), np.isnan(want[0]))
        check(got, want, np.float64, f"triplet edge rows swap={swap}")


# --- both: empty batches, shapes, dtypes, out= -------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 4), (3, 0)], ids=["no-rows", "no-columns"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty(reduction, shape):
    x1, x2, x3 = embeddings(3, shape, np.float32, seed=30)
    got, want = cosine_both(x1, x2, labels(shape[0], 30), reduction=reduction, return_grad=True)
    check(got, want, np.float32, f"cosine {shape}")
    got, want = triplet_both([x1, x2, x3], reduction=reduction, return_grad=True)
    check(got, want, np.float32, f"triplet {shape}")
    got, want = triplet_both([x1, x2, x3], reduction=reduction)
    check(got, want, np.float32, f"triplet forward {shape}")


def test_float16_mixed_and_strided_inputs():
    """float16 computes in float32 and gives float16 gradients; a float32 and a float64 input
    compute in float64 with a float32 gradient for the first; F-ordered inputs are copied."""
    a, pos, neg = embeddings(3, (5, 6), np.float32, seed=40)
    half = [x.astype(np.float16) for x in (a, pos, neg)]
    got, want = triplet_both(half, return_grad=True)
    assert want[1][0].dtype == np.float16
    check(got, want, np.float32, "triplet float16")
    mixed = [a, pos.astype(np.float64), neg]
    got, want = triplet_both(mixed, p=3.0, reduction="sum", return_grad=True)
    check(got, want, np.float64, "triplet mixed")
    fortran = [cuda.to_device(np.asfortranarray(x)) for x in (a, pos)]
    y = labels(5, 40)
    got = pairwise.cosine_embedding_loss(*fortran, cuda.to_device(y), return_grad=True)
    check(got, pairwise.cosine_embedding_loss(a, pos, y, return_grad=True), np.float32, "F")


def test_out_in_place_and_tuples():
    a, pos, neg = embeddings(3, (4, 7), np.float64, seed=50)
    want = pairwise.triplet_margin_loss(a, pos, neg, swap=True, return_grad=True)
    ins = dev([a, pos, neg])
    loss, grads = pairwise.triplet_margin_loss(*ins, swap=True, return_grad=True, out=tuple(ins))
    assert all(g is x for g, x in zip(grads, ins, strict=True))
    check((loss, grads), want, np.float64, "triplet in place")
    # one array (the first gradient's), then a tuple with None, and an out of another layout
    x1, x2 = dev([a, pos])
    y = labels(4, 50)
    want = pairwise.cosine_embedding_loss(a, pos, y, reduction="sum", return_grad=True)
    target = cuda.to_device(y)
    got = pairwise.cosine_embedding_loss(x1, x2, target, reduction="sum", return_grad=True,
                                         out=x1)  # fmt: skip
    assert got[1][0] is x1
    check(got, want, np.float64, "cosine out=input1")
    x1 = dev([a])[0]
    fortran = cuda.to_device(np.asfortranarray(np.zeros_like(pos)))
    got = pairwise.cosine_embedding_loss(x1, x2, target, reduction="sum", return_grad=True,
                                         out=(None, fortran))  # fmt: skip
    assert got[1][1] is fortran
    check(got, want, np.float64, "cosine out=(None, F-ordered)")
    # an out that overlaps an input other than exactly: written after the kernel, from a buffer
    both = cuda.to_device(np.concatenate([pos, np.zeros((1, 7))]))
    view = both[1:]
    got = pairwise.cosine_embedding_loss(x1, both[:4], target, reduction="sum", return_grad=True,
                                         out=view)  # fmt: skip
    assert got[1][0] is view
    check(got, want, np.float64, "cosine out overlapping input2")


def test_errors():
    x = dev([np.ones((4, 5))])[0]
    with pytest.raises(TypeError, match="target: expected a device array"):
        pairwise.cosine_embedding_loss(x, x, np.ones(4))
    with pytest.raises(ValueError, match=r"target: expected shape \(4,\)"):
        pairwise.cosine_embedding_loss(x, x, dev([np.ones(3)])[0])
    with pytest.raises(ValueError, match="same shape"):
        pairwise.triplet_margin_loss(x, x, dev([np.ones((4, 3))])[0])
    with pytest.raises(ValueError, match="2-D"):
        pairwise.triplet_margin_loss(x, x, dev([np.ones(5)])[0])
    with pytest.raises(TypeError, match="anchor"):
        pairwise.triplet_margin_loss(dev([np.ones((4, 5), np.int64)])[0], x, x)
    with pytest.raises(ValueError, match=r"out\[0\]: expected shape"):
        pairwise.triplet_margin_loss(x, x, x, return_grad=True, out=dev([np.ones(5)])[0])


def test_deterministic_and_grid_independent():
    """The same bits run after run, and a row's loss and gradient do not depend on how many
    rows (blocks) the launch has."""
    arrays = embeddings(3, (6, 9), np.float32, seed=60)
    first = pairwise.triplet_margin_loss(*dev(arrays), p=3.0, reduction="none", return_grad=True)
    again = pairwise.triplet_margin_loss(*dev(arrays), p=3.0, reduction="none", return_grad=True)
    head = pairwise.triplet_margin_loss(*dev([x[2:4] for x in arrays]), p=3.0, reduction="none",
                                        return_grad=True)  # fmt: skip
    assert host(first[0]).tobytes() == host(again[0]).tobytes()
    assert host(first[0])[2:4].tobytes() == host(head[0]).tobytes()
    for g, g_again, g_head in zip(first[1], again[1], head[1], strict=True):
        assert host(g).tobytes() == host(g_again).tobytes()
        assert host(g)[2:4].tobytes() == host(g_head).tobytes()


# --- the factory on a spec of its own: max and chained sweeps -----------------------------------


@njit(**POINT_OPTIONS)
def peak_sweep(x, c, weight, temperature):
    return x, abs(x)


@njit(**POINT_OPTIONS)
def exp_sweep(x, c, weight, peak, largest, temperature):
    return math.exp((x - peak) / temperature), x * x


@njit(**POINT_OPTIONS)
def exp_row(peak, largest, total, squares, weight, x, scale, temperature):
    """``peak + T log(sum exp((x - peak) / T)) + w |x|_inf`` and two coefficients (the
    gradient sweep below is the factory's, not this loss's derivative)."""
    loss = peak + temperature * math.log(total) + weight * largest
    return loss, (scale / total, scale * weight / (squares + 1.0))


@njit(**POINT_OPTIONS)
def exp_grad(x, c, weight, k, k_square, temperature):
    return k * x + k_square * x * x


PEAK = cpu_rows.RowSpec(
    "peak_test", 1, (cpu_rows.Sweep(peak_sweep, 2, "max"), cpu_rows.Sweep(exp_sweep, 2)),
    exp_row, exp_grad, 2, (0,), row_inputs=1, params=("temperature",),
)  # fmt: skip


@pytest.mark.parametrize("columns", [1, 3, 7])
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_max_and_chained_sweeps_against_the_cpu_factory(dtype, columns):
    x = embeddings(1, (5, columns), dtype, seed=70 + columns)[0]
    x[1, -1] = np.nan  # NaN wins the max
    x[2] = -np.inf
    w = np.linspace(-1.0, 1.0, 5)
    scale, temperature = 0.25, 1.5
    cpu = cpu_rows.kernels(PEAK)
    want_loss = np.empty(5)
    want_grad = np.empty_like(x)
    cpu.value_grad_rows_serial(x, w, temperature, scale, want_grad, want_loss)
    module = cuda_rows.kernels(PEAK)
    xd, wd = dev([x, w])
    loss, alone = cuda.device_array(5, np.float64), cuda.device_array(5, np.float64)
    grad = cuda.device_array(x.shape, dtype)
    module.value_grad_rows[5, THREADS](xd, wd, np.float64(temperature), np.float64(scale), grad,
                                       loss)  # fmt: skip
    module.value_rows[5, THREADS](xd, wd, np.float64(temperature), alone)
    np.testing.assert_array_equal(np.isnan(host(loss)), np.isnan(want_loss))
    assert host(alone).tobytes() == host(loss).tobytes()
    assert_close(loss, want_loss, np.float64, columns, "row losses", ULPS)
    assert_close(grad, want_grad, dtype, x.size, "gradient", ULPS)
    # the same rows 2 threads each, 2 rows a block (the last block half idle)
    suffix, blocks, threads = cuda_rows.grid(module, 5, columns)
    assert (suffix, blocks, threads) == ("_warp", 3, THREADS)
    module.value_grad_rows_warp[blocks, threads](
        xd, wd, np.float64(temperature), np.float64(scale), grad, loss
    )
    module.value_rows_warp[blocks, threads](xd, wd, np.float64(temperature), alone)
    np.testing.assert_array_equal(np.isnan(host(loss)), np.isnan(want_loss))
    assert host(alone).tobytes() == host(loss).tobytes()
    assert_close(loss, want_loss, np.float64, columns, "row losses, warp", ULPS)
    assert_close(grad, want_grad, dtype, x.size, "gradient, warp", ULPS)


def test_the_row_length_chooses_the_kernel():
    """Rows of up to SHORT_ROW columns take a group of threads, longer ones a block, whatever
    the number of rows; a group no smaller than the block means no group kernels."""
    module = cuda_rows.kernels(PEAK)
    assert cuda_rows.grid(module, 7, 8) == ("_warp", 4, THREADS)
    assert cuda_rows.grid(module, 7, 9) == ("", 7, THREADS)
    assert cuda_rows.grid(module, 1, 0) == ("_warp", 1, THREADS)
