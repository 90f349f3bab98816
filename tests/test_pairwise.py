"""cosine_embedding_loss and triplet_margin_loss (the row-kernel factory) against torch:
values and autograd gradients, float32 and float64, every reduction and option, odd shapes,
edge rows (zero vectors, ties, NaN, overflow), and the same bits for any thread count."""

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastloss
from fastloss import pairwise

SHAPES = [(7,), (1, 1), (5, 7), (3, 16), (4, 33), (2, 100)]
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def _close(actual, expected, dtype, scale=1.0):
    """``actual`` against torch's ``expected``: in float64 to 1e-12; a float32 result against
    torch run in float64 on the same float32 values (torch's own float32 sums of a distance are
    less accurate than fastloss's float64 ones), to float32 rounding of terms of size
    ``scale``."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    if dtype == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=2e-6 * scale, equal_nan=True)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14 * scale, equal_nan=True)


def _torch(fn, arrays, upcast=True, **kwargs):
    """torch's loss and the autograd gradients of its sum with respect to the embeddings
    (every array but a cosine target); in float64 unless not ``upcast``."""
    embeddings = 2 if fn is F.cosine_embedding_loss else 3
    tensors = [
        torch.tensor(np.asarray(a, np.float64) if upcast and np.asarray(a).dtype.kind == "f" else a,
                     requires_grad=i < embeddings)
        for i, a in enumerate(arrays)
    ]  # fmt: skip
    loss = fn(*tensors, **kwargs)
    loss.sum().backward()
    return loss.detach().numpy(), [t.grad.numpy() for t in tensors if t.requires_grad]


def _cosine_inputs(rng, shape, dtype):
    x1 = rng.standard_normal(shape).astype(dtype)
    x2 = rng.standard_normal(shape).astype(dtype)
    rows = shape[0] if len(shape) == 2 else None
    y = rng.choice([-1.0, 1.0], rows).astype(np.float32) if rows else np.float32(-1.0)
    if rows and rows > 2:
        x2[1] = x1[1]  # cos = 1: the hinge of target -1 at the margin's far side
        y[2] = 0.0  # neither 1 nor -1: no loss
    return x1, x2, np.asarray(y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
def test_cosine_embedding_matches_torch(dtype, shape, reduction, margin):
    rng = np.random.default_rng(hash((shape, reduction)) % 2**32)
    x1, x2, y = _cosine_inputs(rng, shape, dtype)
    loss, (g1, g2) = fastloss.cosine_embedding_loss(
        x1, x2, y, margin=margin, reduction=reduction, return_grad=True
    )
    expected, (e1, e2) = _torch(
        F.cosine_embedding_loss, [x1, x2, y], margin=margin, reduction=reduction
    )
    assert np.asarray(loss).dtype == dtype and g1.dtype == dtype and g2.dtype == dtype
    _close(loss, expected, dtype)
    # the gradient is a difference of terms of size 1 / |x|, in the input's precision
    scale = 1.0 / min(np.min(np.linalg.norm(x1, axis=-1)), np.min(np.linalg.norm(x2, axis=-1)))
    _close(g1, e1, dtype, max(1.0, scale))
    _close(g2, e2, dtype, max(1.0, scale))
    alone = fastloss.cosine_embedding_loss(x1, x2, y, margin=margin, reduction=reduction)
    np.testing.assert_array_equal(alone, loss)  # the value does not depend on return_grad


def _triplet_inputs(rng, shape, dtype):
    a, p, n = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    if len(shape) == 2 and shape[0] > 2:
        p[0] = a[0]  # d(a, p) = ||eps||, and with swap d(p, n) == d(a, n): a tie
        n[1] = a[1]
    return a, p, n


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("p", "swap"), [(2.0, False), (2.0, True), (1.0, False), (1.0, True),
                                         (3.0, True), (1.5, False), (0.5, False)])  # fmt: skip
def test_triplet_margin_matches_torch(dtype, shape, reduction, p, swap):
    rng = np.random.default_rng(hash((shape, p, swap)) % 2**32)
    a, pos, neg = _triplet_inputs(rng, shape, dtype)
    margin = 0.4 * np.sqrt(shape[-1])  # some rows active, some not
    kwargs = {"margin": margin, "p": p, "swap": swap, "reduction": reduction}
    loss, grads = fastloss.triplet_margin_loss(a, pos, neg, return_grad=True, **kwargs)
    expected, expected_grads = _torch(F.triplet_margin_loss, [a, pos, neg], **kwargs)
    scale = shape[-1] ** (1.0 / min(p, 2.0))  # the size of a distance
    _close(loss, expected, dtype, scale)
    for g, e in zip(grads, expected_grads, strict=True):
        assert g.dtype == dtype
        _close(g, e, dtype, max(1.0, float(np.max(np.abs(e), initial=0.0))))
    alone = fastloss.triplet_margin_loss(a, pos, neg, **kwargs)
    np.testing.assert_array_equal(alone, loss)


@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.5])
def test_triplet_eps_is_added_to_the_difference(eps):
    rng = np.random.default_rng(3)
    a, pos, neg = (rng.standard_normal((6, 9)) for _ in range(3))
    pos[0] = a[0] - eps  # d(a, p) = 0 exactly: torch's norm gradient is masked to 0 there
    loss, grads = fastloss.triplet_margin_loss(a, pos, neg, margin=5.0, eps=eps, return_grad=True)
    expected, expected_grads = _torch(F.triplet_margin_loss, [a, pos, neg], margin=5.0, eps=eps)
    _close(loss, expected, np.float64)
    for g, e in zip(grads, expected_grads, strict=True):
        _close(g, e, np.float64)


def test_edge_rows_match_torch():
    # zero vectors, huge values (squares overflow float32), NaN, a single column
    x1 = np.array([[0, 0, 0], [3e20, 1, 0], [np.nan, 1, 2], [1, 2, 3]], np.float32)
    x2 = np.array([[0, 0, 0], [3e20, 1, 0], [1, 1, 2], [-1, -2, -3]], np.float32)
    for y in ([1, -1, 1, -1], [-1, 1, -1, 1]):
        y = np.array(y, np.float32)
        loss, (g1, g2) = fastloss.cosine_embedding_loss(x1, x2, y, reduction="none",
                                                        return_grad=True)  # fmt: skip
        expected, (e1, e2) = _torch(F.cosine_embedding_loss, [x1, x2, y], upcast=False,
                                    reduction="none")  # fmt: skip
        _close(loss, expected, np.float32)
        _close(g1, e1, np.float32)
        _close(g2, e2, np.float32)
    a = x1.astype(np.float64)
    for swap in (False, True):
        loss, grads = fastloss.triplet_margin_loss(a, a[::-1].copy(), x2.astype(np.float64),
                                                   swap=swap, reduction="none",
                                                   return_grad=True)  # fmt: skip
        expected, expected_grads = _torch(F.triplet_margin_loss,
                                          [a, a[::-1].copy(), x2.astype(np.float64)],
                                          swap=swap, reduction="none")  # fmt: skip
        _close(loss, expected, np.float64)
        for g, e in zip(grads, expected_grads, strict=True):
            _close(g, e, np.float64)


def test_empty_batches_match_torch():
    for rows, columns in [(0, 4), (3, 0)]:
        x = np.zeros((rows, columns), np.float32)
        y = np.ones(rows, np.float32)
        for reduction in REDUCTIONS:
            ours = fastloss.cosine_embedding_loss(x, x, y, reduction=reduction)
            theirs = F.cosine_embedding_loss(torch.tensor(x), torch.tensor(x), torch.tensor(y),
                                             reduction=reduction)  # fmt: skip
            _close(ours, theirs.numpy(), np.float32)
            ours = fastloss.triplet_margin_loss(x, x, x, reduction=reduction)
            theirs = F.triplet_margin_loss(*(torch.tensor(x),) * 3, reduction=reduction)
            _close(ours, theirs.numpy(), np.float32)


def test_strided_and_read_only_inputs():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((12, 42))
    x1 = base[::2, ::3]  # strided
    x2 = np.asfortranarray(base[1::2, 1::3])
    x2.setflags(write=False)
    y = np.where(rng.random(6) < 0.5, -1, 1)
    loss, (g1, g2) = fastloss.cosine_embedding_loss(x1, x2, y, return_grad=True)
    expected, (e1, e2) = _torch(F.cosine_embedding_loss, [x1.copy(), x2.copy(), y])
    _close(loss, expected, np.float64)
    _close(g1, e1, np.float64)
    _close(g2, e2, np.float64)


def _parallel_case():
    rng = np.random.default_rng(11)
    shape = (700, 2001)  # above the parallel threshold; columns not a multiple of 16
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]


def test_bits_do_not_depend_on_threads_or_the_kernel_variant():
    a, pos, neg = _parallel_case()
    y = np.where(a[:, 0] > 0, 1.0, -1.0)
    results = []
    threads = numba.get_num_threads()
    try:
        for count in sorted({1, threads}):
            numba.set_num_threads(count)
            results.append(
                (
                    fastloss.triplet_margin_loss(a, pos, neg, margin=60.0, return_grad=True),
                    fastloss.cosine_embedding_loss(a, pos, y, return_grad=True),
                )
            )
    finally:
        numba.set_num_threads(threads)
    for t, c in results[1:]:
        (t0, c0) = results[0]
        assert t[0].tobytes() == t0[0].tobytes() and c[0].tobytes() == c0[0].tobytes()
        for g, g0 in zip(t[1] + c[1], t0[1] + c0[1], strict=True):
            assert g.tobytes() == g0.tobytes()
    # A row's loss is the same computed alone (serial kernel) or inside the whole batch.
    rows = fastloss.triplet_margin_loss(a, pos, neg, margin=60.0, reduction="none")
    head = fastloss.triplet_margin_loss(a[:3], pos[:3], neg[:3], margin=60.0, reduction="none")
    assert rows[:3].tobytes() == head.tobytes()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: fastloss.cosine_embedding_loss(x, x[:, :3], np.ones(4)), "same shape"),
        (lambda x: fastloss.cosine_embedding_loss(x, x, np.ones(3)), "target: expected shape"),
        (lambda x: fastloss.cosine_embedding_loss(x[None], x[None], np.ones(4)), "2-D"),
        (lambda x: fastloss.cosine_embedding_loss(x, x, np.ones(4), margin="a"), "margin"),
        (lambda x: fastloss.cosine_embedding_loss(x, x, np.ones(4), reduction="avg"), "reduction"),
        (lambda x: fastloss.triplet_margin_loss(x, x, x[0]), "2-D"),
        (lambda x: fastloss.triplet_margin_loss(x, x, x, p=0), "p: expected"),
        (lambda x: fastloss.triplet_margin_loss(x, x, x, p=float("inf")), "p: expected"),
        (lambda x: fastloss.triplet_margin_loss(x, x, x, swap=1), "swap: expected a bool"),
        (lambda x: fastloss.triplet_margin_loss(x, x, x, eps=None), "eps"),
        (lambda x: fastloss.triplet_margin_loss(x.astype(int), x, x), "anchor"),
    ],
)
def test_bad_arguments_name_themselves(call, message):
    x = np.ones((4, 5))
    with pytest.raises((ValueError, TypeError), match=message):
        call(x)


def test_declared_on_the_row_factory():
    from fastloss.kernels import rows

    for spec in (pairwise._kernels().COSINE_EMBEDDING, pairwise._kernels().TRIPLET_MARGIN):
        assert isinstance(spec, rows.RowSpec)


def test_out_receives_the_gradients_and_may_be_the_inputs():
    rng = np.random.default_rng(9)
    a, pos, neg = (rng.standard_normal((8, 21)) for _ in range(3))
    loss, want = fastloss.triplet_margin_loss(a, pos, neg, margin=3.0, return_grad=True)
    buffers = tuple(np.empty_like(a) for _ in range(3))
    value, got = fastloss.triplet_margin_loss(a, pos, neg, margin=3.0, return_grad=True,
                                              out=buffers)  # fmt: skip
    assert value == loss and all(g is b for g, b in zip(got, buffers, strict=True))
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()
    # in place: each gradient into its own input; one into another's; a float32 out refused
    copies = [x.copy() for x in (a, pos, neg)]
    value, got = fastloss.triplet_margin_loss(*copies, margin=3.0, return_grad=True,
                                              out=tuple(copies))  # fmt: skip
    for g, w in zip(got, want, strict=True):
        assert g.tobytes() == w.tobytes()
    x1, x2 = a.copy(), pos.copy()
    y = np.where(a[:, 0] > 0, 1, -1)
    _, want = fastloss.cosine_embedding_loss(x1, x2, y, return_grad=True)
    _, got = fastloss.cosine_embedding_loss(x1, x2, y, return_grad=True, out=(x2, x1))
    assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    with pytest.raises(ValueError, match="out: expected dtype"):
        fastloss.cosine_embedding_loss(a, pos, y, return_grad=True,
                                       out=np.empty(a.shape, np.float32))  # fmt: skip
    shifted = rng.standard_normal(a.size + 21)
    x1 = shifted[21:].reshape(a.shape)  # the out below overlaps it, shifted by a row
    _, want = fastloss.cosine_embedding_loss(x1.copy(), pos, y, return_grad=True)
    _, got = fastloss.cosine_embedding_loss(
        x1, pos, y, return_grad=True, out=(shifted[:-21].reshape(a.shape), None)
    )
    assert got[0].tobytes() == want[0].tobytes()
