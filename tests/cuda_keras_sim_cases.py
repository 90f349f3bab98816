"""Keras's cross-entropies on CUDA device arrays under Numba's CUDA simulator (run by
``tests/test_cuda_suites.py`` in a pytest process of its own)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_keras_sim_cases.py

Every device result (loss, gradient) of ``categorical_crossentropy``,
``sparse_categorical_crossentropy`` and ``categorical_focal_crossentropy`` is compared with the
CPU result of the same public call. Threads per block are shrunk to 4, and to 2 threads (2 rows a
block) for rows of up to 8 classes: rows of 6 classes take 2 threads, rows of 11 a block;
inputs stay tiny.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 before Numba is imported", allow_module_level=True)

from numba import cuda  # noqa: E402

import fastloss.kernels.cuda.elementwise as cuda_factory  # noqa: E402
import fastloss.kernels.cuda.rows as cuda_rows  # noqa: E402
import fastloss.kernels.cuda.softmax as cuda_softmax  # noqa: E402
from fastloss import softmax as api  # noqa: E402

cuda_softmax.THREADS_PER_BLOCK = 4
cuda_rows.THREADS_PER_BLOCK = 4
cuda_rows.WARP_THREADS = 2  # rows of up to 8 classes: 2 threads, 2 rows per block
cuda_rows.SHORT_ROW = 8
cuda_factory.THREADS_PER_BLOCK = 4
cuda_factory.ITEMS_PER_THREAD = 2

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# every reduction in float64, float32 with "mean" (the simulator is slow)
CASES = [(np.float64, "mean"), (np.float64, "sum"), (np.float64, "none"), (np.float32, "mean")]
CLASSES = 6


def host(x):
    return np.asarray(x.copy_to_host())


def assert_close(got, want, dtype, what=""):
    want = np.asarray(want, dtype=np.float64)
    got = host(got)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    eps = float(np.finfo(dtype).eps)
    scale = max(float(np.abs(want).max()) if want.size else 1.0, 1.0)
    np.testing.assert_allclose(
        got.astype(np.float64), want, rtol=32 * eps, atol=32 * eps * scale, err_msg=what
    )


def predictions(shape, dtype, from_logits, seed=0):
    rng = np.random.default_rng(seed)
    if from_logits:
        return (3.0 * rng.standard_normal(shape)).astype(dtype)
    p = rng.uniform(0.0, 1.0, shape)
    p[..., 0] = 1e-9  # below the clip range after renormalisation: zero gradient there
    return p.astype(dtype)


def soft_targets(shape, dtype, seed=0):
    y = np.random.default_rng(seed + 1).uniform(0.0, 1.0, shape)
    return (y / y.sum(-1, keepdims=True)).astype(dtype)


def labels(shape, seed=0):
    t = np.random.default_rng(seed + 2).integers(0, CLASSES, shape)
    return t.astype(np.int64)


def compare(fn, x, t, dtype, reduction, out_is_input=False, **kwargs):
    want_loss, want_grad = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
    dx = cuda.to_device(x)
    got_loss, got_grad = fn(
        dx,
        cuda.to_device(t),
        reduction=reduction,
        return_grad=True,
        out=dx if out_is_input else None,
        **kwargs,
    )
    assert_close(got_loss, want_loss, dtype, "loss")
    assert_close(got_grad, want_grad, dtype, "grad")
    if out_is_input:
        assert_close(dx, want_grad, dtype, "grad in place")
    if reduction != "mean":
        return
    # the loss alone
    only = fn(cuda.to_device(x), cuda.to_device(t), reduction=reduction, **kwargs)
    assert_close(only, want_loss, dtype, "loss without grad")


@pytest.mark.parametrize(("dtype", "reduction"), CASES)
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical(dtype, reduction, from_logits):
    shape = (3, CLASSES)
    x = predictions(shape, dtype, from_logits)
    y = soft_targets(shape, dtype)
    compare(api.categorical_crossentropy, x, y, dtype, reduction, from_logits=from_logits)
    compare(
        api.categorical_crossentropy,
        x,
        y,
        dtype,
        reduction,
        from_logits=from_logits,
        label_smoothing=0.2,
    )


@pytest.mark.parametrize(("dtype", "reduction"), CASES)
@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse(dtype, reduction, from_logits):
    x = predictions((4, CLASSES), dtype, from_logits)
    t = labels(4)
    compare(api.sparse_categorical_crossentropy, x, t, dtype, reduction, from_logits=from_logits)
    t[1] = 2
    t[3] = 2
    compare(
        api.sparse_categorical_crossentropy,
        x,
        t,
        dtype,
        reduction,
        from_logits=from_logits,
        ignore_class=2,
    )


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sparse_all_ignored(from_logits, reduction):
    x = predictions((3, CLASSES), np.float64, from_logits)
    t = np.full(3, 1, np.int64)
    compare(
        api.sparse_categorical_crossentropy,
        x,
        t,
        np.float64,
        reduction,
        from_logits=from_logits,
        ignore_class=1,
    )


@pytest.mark.parametrize(("dtype", "reduction"), CASES)
@pytest.mark.parametrize("from_logits", [False, True])
def test_focal(dtype, reduction, from_logits):
    shape = (3, CLASSES)
    x = predictions(shape, dtype, from_logits)
    y = soft_targets(shape, dtype)
    compare(api.categorical_focal_crossentropy, x, y, dtype, reduction, from_logits=from_logits)
    compare(
        api.categorical_focal_crossentropy,
        x,
        y,
        dtype,
        reduction,
        from_logits=from_logits,
        alpha=0.7,
        gamma=1.5,
        label_smoothing=0.1,
    )
    compare(
        api.categorical_focal_crossentropy,
        x,
        y,
        dtype,
        reduction,
        from_logits=from_logits,
        gamma=0.0,
    )


@pytest.mark.parametrize("from_logits", [False, True])
def test_three_dims_and_in_place(from_logits):
    shape = (2, 3, CLASSES)
    x = predictions(shape, np.float32, from_logits)
    y = soft_targets(shape, np.float32)
    t = labels(shape[:-1])
    for reduction, out_is_input in (("none", False), ("mean", True)):
        compare(
            api.categorical_crossentropy,
            x,
            y,
            np.float32,
            reduction,
            out_is_input,
            from_logits=from_logits,
            label_smoothing=0.1,
        )
        compare(
            api.sparse_categorical_crossentropy,
            x,
            t,
            np.float32,
            reduction,
            out_is_input,
            from_logits=from_logits,
            axis=2,
        )
        compare(
            api.categorical_focal_crossentropy,
            x,
            y,
            np.float32,
            reduction,
            out_is_input,
            from_logits=from_logits,
        )


def test_sparse_trailing_label_axis_and_one_dim():
    x = predictions((4, CLASSES), np.float64, False)
    t = labels((4, 1))
    compare(api.sparse_categorical_crossentropy, x, t, np.float64, "none")
    x1 = predictions((CLASSES,), np.float64, False)
    y1 = soft_targets((CLASSES,), np.float64)
    compare(api.categorical_crossentropy, x1, y1, np.float64, "mean")


def test_non_contiguous_three_dims():
    x = predictions((3, 2, CLASSES), np.float64, True).transpose(1, 0, 2)
    y = soft_targets((2, 3, CLASSES), np.float64)
    want_loss, want_grad = api.categorical_focal_crossentropy(
        x, y, from_logits=True, reduction="none", return_grad=True
    )
    dx = cuda.to_device(np.ascontiguousarray(x.transpose(1, 0, 2))).transpose((1, 0, 2))
    got_loss, got_grad = api.categorical_focal_crossentropy(
        dx, cuda.to_device(y), from_logits=True, reduction="none", return_grad=True
    )
    assert_close(got_loss, want_loss, np.float64, "loss")
    assert_close(got_grad, want_grad, np.float64, "grad")


def test_refusals():
    x = cuda.to_device(predictions((3, CLASSES, 2), np.float32, False))
    y = cuda.to_device(soft_targets((3, CLASSES, 2), np.float32))
    for fn in (api.categorical_crossentropy, api.categorical_focal_crossentropy):
        with pytest.raises(ValueError, match="axis"):
            fn(x, y, axis=1)
    with pytest.raises(ValueError, match="axis"):
        api.sparse_categorical_crossentropy(x, cuda.to_device(labels((3, 2))), axis=0)
    bad = labels(4)
    bad[2] = CLASSES
    for from_logits in (False, True):
        with pytest.raises(IndexError, match="out of range"):
            api.sparse_categorical_crossentropy(
                cuda.to_device(predictions((4, CLASSES), np.float32, from_logits)),
                cuda.to_device(bad),
                from_logits=from_logits,
            )


@pytest.mark.parametrize("from_logits", [False, True])
def test_strided_out_and_labels(from_logits):
    """A gradient into a strided ``out`` (a buffer, then a device copy) and ``(N, d, 1)``
    labels that are not contiguous (their trailing axis dropped, then a device copy)."""
    shape = (3, 2, CLASSES)
    x = predictions(shape, np.float32, from_logits)
    y = soft_targets(shape, np.float32)
    t = labels(shape[:-1])
    for fn, target, device_target in (
        (api.categorical_crossentropy, y, cuda.to_device(y)),
        (api.categorical_focal_crossentropy, y, cuda.to_device(y)),
        (
            api.sparse_categorical_crossentropy,
            t,
            cuda.to_device(np.stack([t, t], -1))[:, :, :1],
        ),
    ):
        want_loss, want_grad = fn(
            x, target, from_logits=from_logits, reduction="sum", return_grad=True
        )
        out = cuda.to_device(np.zeros((2, 3, CLASSES), np.float32)).transpose((1, 0, 2))
        got_loss, got_grad = fn(
            cuda.to_device(x),
            device_target,
            from_logits=from_logits,
            reduction="sum",
            return_grad=True,
            out=out,
        )
        assert got_grad is out
        assert_close(got_loss, want_loss, np.float32, f"{fn.__name__} loss")
        assert_close(out, want_grad, np.float32, f"{fn.__name__} grad")


@pytest.mark.parametrize("from_logits", [False, True])
def test_long_rows(from_logits):
    """Rows of 11 classes: a block each (the other tests' rows of 6 take 2 threads)."""
    shape = (3, 11)
    x = predictions(shape, np.float64, from_logits)
    y = soft_targets(shape, np.float64)
    t = np.random.default_rng(3).integers(0, 11, 3)
    for fn, target, kwargs in (
        (api.categorical_crossentropy, y, {"label_smoothing": 0.1}),
        (api.categorical_focal_crossentropy, y, {"gamma": 1.5}),
        (api.sparse_categorical_crossentropy, t, {}),
    ):
        compare(fn, x, target, np.float64, "mean", from_logits=from_logits, **kwargs)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, 2, -100])
def test_sparse_ignore_class_and_minus_100(from_logits, ignore_class):
    """With ignore_class, label -100 still gives 0 (counted in the mean, as Keras's torch
    backend gives it) and ignore_class's rows leave the mean, every one of them included; a
    bad label's error names the labels skipped."""
    x = predictions((5, 4), np.float64, from_logits)
    for labels in ([-100, 0, 2, 1, 2], [-100, -100, 2, 2, 2], [2, 2, 2, 2, 2]):
        t = np.array(labels)
        for reduction in ("mean", "sum", "none"):
            compare(api.sparse_categorical_crossentropy, x, t, np.float64, reduction,
                    from_logits=from_logits, ignore_class=ignore_class)  # fmt: skip
    with pytest.raises(IndexError, match="class index 7") as err:
        api.sparse_categorical_crossentropy(
            cuda.to_device(x), cuda.to_device(np.array([7, 0, 1, 2, 3])),
            from_logits=from_logits, ignore_class=ignore_class,
        )  # fmt: skip
    assert "ignore_index" not in str(err.value)
    if ignore_class is not None:
        assert f"ignore_class ({ignore_class})" in str(err.value)
